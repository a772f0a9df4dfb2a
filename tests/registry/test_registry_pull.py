"""Pull from a real registry (Debian's docker-registry on 127.0.0.1, no auth)
into a private store: formats, platforms, digests, verification, sharing,
resuming, mirrors; images put there by skopeo, the independent client."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import shutil
import threading

import pytest

from pallet.core.errors import InvalidArgument, NotFound
from pallet.distribution.auth import Denied
from pallet.distribution.pull import pull
from pallet.distribution.registry import RegistryOptions, TransientError
from registry_helpers import (Proxy, needs_registry, needs_root, needs_skopeo, oci_image,
                              oci_layout, skopeo_copy)

pytestmark = [needs_registry, needs_skopeo, *needs_root]


def run_pull(store, ref, ns="default", **kw):
    msgs = []
    result = asyncio.run(pull(ref, store.target(ns), progress=msgs.append, **kw))
    return result, msgs


def rootfs(store, chain_id, ns="default", name=None):
    """The directory of a committed native snapshot (its files, to look at or chroot into)."""
    snap = store.snapshotter("native").namespaced(ns)
    key = name or f"view-{os.urandom(4).hex()}"
    mounts = snap.view(key, chain_id)
    return mounts[0].source


def push_layout(base, registry, name, layers, tag="latest", **kw):
    layout = os.path.join(base, f"layout-{os.urandom(3).hex()}")
    desc = oci_image(layout, layers, **kw)
    oci_layout(layout, [desc], tag)
    skopeo_copy(f"oci:{layout}:{tag}", f"docker://{registry.host}/{name}:{tag}")
    return desc


def test_pull_busybox_pushed_by_skopeo_and_run_it(store, registry, busybox_tar):
    skopeo_copy(f"docker-archive:{busybox_tar}", f"docker://{registry.host}/lib/busybox:1.0")
    ref = f"{registry.host}/lib/busybox:1.0"
    result, msgs = run_pull(store, ref)
    assert result.name == ref
    assert [m["status"] for m in msgs][0] == "Pulling from lib/busybox"
    statuses = [m["status"] for m in msgs]
    assert "Pull complete" in statuses and "Downloading" in statuses
    assert statuses[-2] == f"Digest: {result.target.digest}"
    assert statuses[-1] == f"Status: Downloaded newer image for {ref}"
    assert store.metadata.get_image("default", ref).target == result.target
    # the image runs: busybox from the unpacked snapshot
    root = rootfs(store, result.chain_id)
    out = subprocess.run(["chroot", root, "/bin/sh", "-c", "echo hello from $(uname -s)"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "hello from Linux\n"
    # again: nothing to download
    again, msgs = run_pull(store, ref)
    assert not again.updated
    assert [m["status"] for m in msgs][-1] == f"Status: Image is up to date for {ref}"
    assert "Already exists" in [m["status"] for m in msgs]
    # by digest
    d = result.target.digest
    by_digest, _ = run_pull(store, f"{registry.host}/lib/busybox@{d}")
    assert by_digest.name == f"{registry.host}/lib/busybox@{d}"
    # the store's leases are gone and GC keeps everything
    assert store.metadata.list_leases("default") == []
    gc = store.gc()
    assert gc.content == () and gc.ingests == ()


def test_gzip_zstd_and_plain_layers_in_parallel(store, registry, base):
    layers = [{f"d{i}/file": os.urandom(200_000) + bytes([i])} for i in range(3)]
    for compression in ("gzip", "zstd", None):
        desc = push_layout(base, registry, f"fmt/{compression or 'plain'}", layers,
                           compression=compression)
        result, msgs = run_pull(store, f"{registry.host}/fmt/{compression or 'plain'}",
                                options=RegistryOptions(max_concurrent_downloads=2))
        assert result.manifest.digest == desc["digest"]
        assert len(result.layers) == 3
        root = rootfs(store, result.chain_id)
        for i, files in enumerate(layers):
            with open(os.path.join(root, f"d{i}/file"), "rb") as f:
                assert f.read() == files[f"d{i}/file"]
        # with 2 downloads at once, the third layer waits its turn
        if compression == "gzip":
            assert "Waiting" in [m["status"] for m in msgs]


def test_index_selects_this_platform(store, registry, base):
    layout = os.path.join(base, "multi")
    amd = oci_image(layout, [{"arch": b"amd64"}], arch="amd64")
    arm = oci_image(layout, [{"arch": b"arm64"}], arch="arm64", variant="v8")
    oci_layout(layout, [arm, amd], "multi", index=True)
    skopeo_copy(f"oci:{layout}:multi", f"docker://{registry.host}/multi:multi", "--all")
    ref = f"{registry.host}/multi:multi"
    result, _ = run_pull(store, ref, platform="linux/amd64")
    assert result.target.media_type == "application/vnd.oci.image.index.v1+json"
    assert result.manifest.digest == amd["digest"]
    with open(os.path.join(rootfs(store, result.chain_id), "arch"), "rb") as f:
        assert f.read() == b"amd64"
    result, _ = run_pull(store, ref, platform="linux/arm64")
    assert result.manifest.digest == arm["digest"]
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        run_pull(store, ref, platform="linux/s390x")
    # the index and both... only the chosen manifests are stored, and the image
    # resolves for this machine through the store's own reader
    assert store.resolve(result.target).manifest_desc.digest == amd["digest"]


def test_missing_image_and_tag_messages(store, registry, busybox_tar):
    with pytest.raises(NotFound, match=r"manifest for .*/nope:latest not found: "):
        run_pull(store, f"{registry.host}/nope")
    skopeo_copy(f"docker-archive:{busybox_tar}", f"docker://{registry.host}/bb:1")
    with pytest.raises(NotFound, match=r"manifest for .*/bb:2 not found: manifest unknown"):
        run_pull(store, f"{registry.host}/bb:2")
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        run_pull(store, f"{registry.host}/BAD")
    with pytest.raises(TransientError, match="connection refused"):
        run_pull(store, "127.0.0.1:1/x", options=RegistryOptions(retries=0))
    assert store.metadata.list_images("default") == []


def test_corrupt_blob_fails_and_stores_nothing(store, registry, base):
    layers = [{"a": os.urandom(50_000)}, {"b": os.urandom(300_000)}]
    desc = push_layout(base, registry, "bad/img", layers)
    layout_manifest = json.load(open(os.path.join(
        base, [d for d in os.listdir(base) if d.startswith("layout-")][0], "blobs", "sha256",
        desc["digest"][7:])))
    victim = layout_manifest["layers"][1]
    path = registry.blob_path("bad/img", victim["digest"])
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # same size, wrong content
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(InvalidArgument) as exc:
        run_pull(store, f"{registry.host}/bad/img")
    assert f"filesystem layer verification failed for digest {victim['digest']}" in str(exc.value)
    assert store.metadata.list_images("default") == []
    assert not store.content.exists(victim["digest"])
    assert store.content.ingests() == []
    assert store.metadata.list_leases("default") == []
    store.gc()
    assert store.content.list() == []
    assert store.snapshotter("native").list() == []


def test_concurrent_pulls_share_downloads(store, registry, base):
    layers = [{f"f{i}": os.urandom(2_000_000)} for i in range(3)]
    push_layout(base, registry, "shared/img", layers)
    ref = f"{registry.host}/shared/img"

    async def both():
        a, b = [], []
        ra, rb = await asyncio.gather(pull(ref, store.target("default"), progress=a.append),
                                      pull(ref, store.target("default"), progress=b.append))
        return ra, rb, a, b
    ra, rb, a, b = asyncio.run(both())
    assert ra.target == rb.target and ra.chain_id == rb.chain_id
    downloading = [sum(1 for m in msgs if m["status"] == "Verifying Checksum")
                   for msgs in (a, b)]
    assert sorted(downloading) == [0, 3]  # one pull downloaded, the other waited for it


def test_concurrent_pulls_from_two_threads(store, registry, base):
    layers = [{f"g{i}": os.urandom(1_000_000)} for i in range(3)]
    push_layout(base, registry, "threads/img", layers)
    ref = f"{registry.host}/threads/img"
    results, errors = [], []

    def one():
        try:
            results.append(store.pull(ref, "default"))
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 2 and results[0].chain_id == results[1].chain_id
    assert store.content.ingests() == []


def test_interrupted_download_resumes_with_range(store, registry, base):
    layers = [{"big": os.urandom(3_000_000)}]
    push_layout(base, registry, "resume/img", layers, compression=None)
    proxy = Proxy(registry.port, cut_after=1_000_000).start()
    try:
        result, msgs = run_pull(store, f"{proxy.host}/resume/img")
    finally:
        proxy.stop()
    assert proxy.cut_count == 1
    with open(os.path.join(rootfs(store, result.chain_id), "big"), "rb") as f:
        assert f.read() == layers[0]["big"]
    # the second request started where the first stopped
    currents = [m["progressDetail"]["current"] for m in msgs if m["status"] == "Downloading"]
    assert any(c > 0 for c in currents)


def test_mirror_serves_docker_io(store, registry, busybox_tar):
    skopeo_copy(f"docker-archive:{busybox_tar}",
                f"docker://{registry.host}/library/busybox:latest")
    opts = RegistryOptions(mirrors=(f"http://{registry.host}",), retries=0)
    result, msgs = run_pull(store, "busybox", options=opts)
    assert result.name == "docker.io/library/busybox:latest"
    assert msgs[-1]["status"] == "Status: Downloaded newer image for busybox:latest"


def test_schema1_is_refused(store, base):
    """A registry answering with a schema 1 manifest (served by a tiny HTTP server)."""
    import http.server

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = json.dumps({"schemaVersion": 1, "name": "old", "tag": "latest",
                               "fsLayers": [], "history": []}).encode()
            if self.path == "/v2/":
                body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type",
                             "application/vnd.docker.distribution.manifest.v1+prettyjws")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with pytest.raises(InvalidArgument, match="schema 1 is not supported"):
            run_pull(store, f"127.0.0.1:{srv.server_address[1]}/old")
    finally:
        srv.shutdown()
        srv.server_close()
    assert store.content.list() == []


def test_denied_without_credentials(store, basic_registry):
    with pytest.raises(Denied, match="pull access denied for .*may require 'docker login'"):
        run_pull(store, f"{basic_registry.host}/private/img")


def test_tls_registry_with_a_self_signed_certificate(store, base, busybox_tar):
    """127.0.0.0/8 is an insecure registry by default: HTTPS without verification
    is tried first (and works); a CA in certs.d is used for verified hosts."""
    from registry_helpers import RegistryServer
    reg = RegistryServer(os.path.join(base, "tls"), tls=True)
    os.makedirs(reg.base)
    reg.start()
    try:
        skopeo_copy(f"docker-archive:{busybox_tar}", f"docker://{reg.host}/tls/bb:1")
        result, _ = run_pull(store, f"{reg.host}/tls/bb:1")
        assert result.chain_id
        # the certs.d CA of a host is loaded into the verifying context
        from pallet.distribution.registry import Registry
        certs = os.path.join(base, "certs.d")
        os.makedirs(os.path.join(certs, "myreg.example:443"))
        shutil.copy(reg.cert, os.path.join(certs, "myreg.example:443", "ca.crt"))
        r = Registry(RegistryOptions(certs_dirs=(certs,)))
        ctx = r._verify_context("myreg.example:443")
        assert any("127.0.0.1" in str(c.get("subject")) for c in ctx.get_ca_certs())
        (ep,) = r.endpoints("myreg.example:443")
        assert ep.base == "https://myreg.example:443" and ep.ssl is ctx
    finally:
        reg.stop()


def test_tags_list(registry, busybox_tar):
    from pallet.distribution.registry import Registry
    for tag in ("1", "2", "latest"):
        skopeo_copy(f"docker-archive:{busybox_tar}", f"docker://{registry.host}/tags/bb:{tag}")

    async def go():
        async with Registry() as r:
            return await r.tags(registry.host, "tags/bb")
    assert sorted(asyncio.run(go())) == ["1", "2", "latest"]
