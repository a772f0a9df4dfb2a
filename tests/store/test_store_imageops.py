"""history, import (with -c changes), export, and GC of what dead pulls
leave (expired and orphaned leases, extract snapshots, ingests)."""
from __future__ import annotations

import asyncio
import gzip
import io
import os
import subprocess
import tarfile

import pytest

from pallet.core.errors import InvalidArgument
from pallet.imagestore import imageops
from pallet.imagestore.gc import lease_ended
from pallet.imagestore.containers import ContainerRecord, TypedValue
from pallet.imagestore.metadata import LeaseResource
from pallet.distribution.mediatypes import LABEL_GC_EXPIRE
from pallet.distribution.targets import LABEL_LEASE_OWNER, owner_label
from store_helpers import needs_overlay, needs_root


def test_history_newest_first():
    config = {"history": [
        {"created": "2020-01-01T00:00:00.123456789Z", "created_by": "ADD rootfs"},
        {"created": "2020-01-02T00:00:00Z", "created_by": "ENV A=1", "empty_layer": True},
        {"created": "2020-01-03T00:00:00Z", "created_by": "RUN x", "comment": "c"}]}
    h = imageops.history(config, "sha256:abc", [100, 7], ["busybox:latest"])
    assert [e["CreatedBy"] for e in h] == ["RUN x", "ENV A=1", "ADD rootfs"]
    assert [e["Size"] for e in h] == [7, 0, 100]
    assert h[0]["Id"] == "sha256:abc" and h[0]["Tags"] == ["busybox:latest"]
    assert h[1]["Id"] == "<missing>" and h[1]["Tags"] is None
    assert h[2]["Created"] == 1577836800 and h[0]["Comment"] == "c"
    assert imageops.history({}, "sha256:x", [5])[0]["Size"] == 5


def test_parse_changes():
    cfg = imageops.parse_changes([
        'CMD ["/bin/sh", "-c", "echo hi"]', "ENTRYPOINT /init --flag", "ENV A=1 B=\"two words\"",
        "ENV LEGACY some value", "EXPOSE 80 53/udp", "LABEL a=b c=d", "USER nobody",
        "WORKDIR /srv", "VOLUME /data", "STOPSIGNAL SIGINT", "onbuild RUN x"],
        base={"Env": ["A=0", "PATH=/bin"]})
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/init --flag"]
    assert cfg["Env"] == ["PATH=/bin", "A=1", "B=two words", "LEGACY=some value"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Labels"] == {"a": "b", "c": "d"}
    assert (cfg["User"], cfg["WorkingDir"], cfg["StopSignal"]) == ("nobody", "/srv", "SIGINT")
    assert cfg["Volumes"] == {"/data": {}} and cfg["OnBuild"] == ["RUN x"]
    with pytest.raises(InvalidArgument, match="RUN is not a valid change command"):
        imageops.parse_changes(["RUN echo"])
    with pytest.raises(InvalidArgument, match="invalid containerPort"):
        imageops.parse_changes(["EXPOSE http"])


def _rootfs_tar(compress: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        with open("/bin/busybox", "rb") as f:
            data = f.read()
        for name, mode in (("bin", 0o755), ("etc", 0o755)):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = tarfile.DIRTYPE, mode
            tf.addfile(ti)
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = len(data), 0o755
        tf.addfile(ti, io.BytesIO(data))
        ti = tarfile.TarInfo("bin/sh")
        ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
        tf.addfile(ti)
        ti = tarfile.TarInfo("etc/hostname")
        ti.size = 4
        tf.addfile(ti, io.BytesIO(b"box\n"))
    raw = buf.getvalue()
    return gzip.compress(raw) if compress else raw


@needs_root
@pytest.mark.parametrize("compressed", [False, True])
def test_import_rootfs_runs(store, compressed):
    raw = _rootfs_tar(compressed)

    async def body():  # an HTTP body arrives in pieces
        for i in range(0, len(raw), 300_000):
            yield raw[i:i + 300_000]
    source = body() if compressed else io.BytesIO(raw)
    result = asyncio.run(imageops.import_rootfs(
        store.target("default", "native"), source, changes=["CMD sh", "ENV X=1"],
        message="from a test", name="docker.io/library/imported:v1", snapshotter="native"))
    rec = store.metadata.get_image("default", "docker.io/library/imported:v1")
    assert rec.target == result.manifest
    img = store.resolve(rec.target)
    assert img.image_id == result.image_id
    assert img.config["config"]["Cmd"] == ["/bin/sh", "-c", "sh"]
    assert img.config["config"]["Env"] == ["X=1"]
    assert img.config["comment"] == "from a test"
    assert img.diff_ids == (result.layer.digest,)
    snap = store.snapshotter("native").namespaced("default")
    (m,) = snap.view("look", result.chain_id)
    out = subprocess.run(["chroot", m.source, "/bin/sh", "-c", "busybox cat /etc/hostname"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "box\n"
    snap.remove("look")
    assert store.gc().content == ()  # everything is referenced by the image
    assert store.metadata.list_leases("default") == []


@needs_overlay
def test_export_a_containers_rootfs(store, busybox_tar, mounts):
    (rec,) = store.import_archive(busybox_tar, "default")
    top = store.unpack(rec.target, "overlayfs", namespace="default")
    snap = store.snapshotter("overlayfs").namespaced("default")
    ctr_mounts = snap.prepare("ctr-export", top)
    rootfs = mounts.mount(ctr_mounts, "ctr")  # the running container's view
    with open(os.path.join(rootfs, "new-file"), "w") as f:
        f.write("written by the container\n")
    os.unlink(os.path.join(rootfs, "etc", "group"))
    out = io.BytesIO()
    imageops.export_rootfs(ctr_mounts, out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tf:
        names = tf.getnames()
        assert tf.extractfile("new-file").read() == b"written by the container\n"
        assert "etc/passwd" in names and "etc/group" not in names
        bb = tf.getmember("bin/busybox")  # hard links to one busybox: the first is the file
        assert bb.isreg() or (bb.islnk() and tf.getmember(bb.linkname).isreg())
        assert not any(n.startswith(("/", "./")) for n in names)
    mounts.unmount(rootfs)
    snap.remove("ctr-export")


def test_lease_end_rules():
    assert lease_ended({LABEL_GC_EXPIRE: "2000-01-01T00:00:00Z"})
    assert not lease_ended({LABEL_GC_EXPIRE: "2999-01-01T00:00:00Z"})
    assert not lease_ended({LABEL_LEASE_OWNER: owner_label()})
    assert lease_ended({LABEL_LEASE_OWNER: "999999999:1"})
    assert lease_ended({LABEL_LEASE_OWNER: f"{os.getpid()}:0"})  # pid reused
    assert not lease_ended({})


@needs_root
def test_gc_collects_what_a_dead_pull_left(store, busybox_tar):
    (rec,) = store.import_archive(busybox_tar, "default")
    store.metadata.delete_image("default", rec.name)
    layer = store.resolve(rec.target).layers[0]
    snap = store.snapshotter("native").namespaced("moby")
    # a pull that died: its lease (owner gone), a half-applied extract
    # snapshot, an ingest and the blobs it had committed
    store.metadata.create_lease("moby", "dead", {LABEL_LEASE_OWNER: "999999999:1"})
    key = "extract-1-abcd sha256:" + "0" * 64
    snap.prepare(key)
    for ident, kind in ((layer.digest, "content"), (key, "snapshots/native"),
                        ("layer-x", "ingests")):
        store.metadata.add_lease_resource("moby", "dead", LeaseResource(ident, kind))
    with store.content.writer("layer-x") as w:
        w.write(b"partial")
    # and a live pull of this process, whose ingest is open
    store.metadata.create_lease("moby", "live", {LABEL_LEASE_OWNER: owner_label()})
    live_writer = store.content.writer("layer-live")
    live_writer.write(b"in flight")
    try:
        dry = store.gc(dry_run=True)
        assert dry.leases == ("moby/dead",)
        assert store.metadata.list_leases("moby") != []
        result = store.gc()
        assert result.leases == ("moby/dead",)
        assert [lease.id for lease in store.metadata.list_leases("moby")] == ["live"]
        assert ("native", f"moby/{key}") in result.snapshots
        assert result.ingests == ("layer-x",)
        assert [i.ref for i in store.content.ingests()] == ["layer-live"]
        assert store.content.list() == []
    finally:
        live_writer.close()
    # a container's active snapshot stays: its record, or a root label
    # (what palletd puts on it), holds it
    snap.prepare("container-rootfs")
    snap.prepare("labelled-rootfs", labels={"containerd.io/gc.root": "now"})
    store.metadata.create_container("moby", ContainerRecord(
        "c", runtime="io.containerd.runc.v2", spec=TypedValue("spec", b"{}"),
        snapshotter="native", snapshot_key="container-rootfs"))
    assert store.gc().snapshots == ()
