"""End to end: load the built-in busybox archive, unpack it into each
snapshotter, mount a container rootfs on top and run the shell in it."""
from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from pallet.core.errors import InvalidArgument
from pallet.core.models import Descriptor
from pallet.distribution.mediatypes import MT_DOCKER_CONFIG, MT_DOCKER_MANIFEST
from pallet.distribution.archive import docker_manifest, manifest_bytes
from store_helpers import needs_root, overlay_available

pytestmark = needs_root


@pytest.mark.parametrize("kind", ["overlayfs", "native"])
def test_busybox_runs_from_an_unpacked_snapshot(store, busybox_tar, mounts, kind):
    if kind == "overlayfs" and not overlay_available():
        pytest.skip("overlayfs not available")
    (rec,) = store.import_archive(busybox_tar, "moby")
    top = store.unpack(rec.target, kind, namespace="moby")
    resolved = store.resolve(rec.target)
    assert top == resolved.chain_ids[-1]
    assert store.unpack(rec.target, kind, namespace="moby") == top  # already there
    snap = store.snapshotter(kind).namespaced("moby")
    assert [i.name for i in snap.list("kind==committed")] == [top]
    labels = store.content.info(resolved.config_desc.digest).labels
    assert labels[f"containerd.io/gc.ref.snapshot.{kind}"] == top

    rootfs = mounts.mount(snap.prepare("ctr-1", top), "rootfs")
    st = os.lstat(os.path.join(rootfs, "tmp"))
    assert stat.S_IMODE(st.st_mode) == 0o1777
    proc = subprocess.run(
        ["chroot", rootfs, "/bin/sh", "-c",
         "echo written > /tmp/out && id -un && ls /bin/sh && cat /tmp/out"],
        capture_output=True, text=True, timeout=30,
        env={"PATH": resolved.config["config"]["Env"][0][5:]})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["root", "/bin/sh", "written"]
    mounts.unmount(rootfs)
    # the container's writes stay in its own snapshot
    view = mounts.mount(snap.view("check", top), "view")
    assert not os.path.exists(os.path.join(view, "tmp", "out"))


def test_diff_id_mismatch_leaves_no_snapshot(store, busybox_tar):
    (rec,) = store.import_archive(busybox_tar, "default")
    resolved = store.resolve(rec.target)
    config = dict(resolved.config, rootfs={"type": "layers", "diff_ids": ["sha256:" + "0" * 64]})
    cdesc = store.content.write_blob(json.dumps(config).encode(), media_type=MT_DOCKER_CONFIG)
    cdesc = Descriptor(MT_DOCKER_CONFIG, cdesc.digest, cdesc.size)
    manifest = manifest_bytes(docker_manifest(cdesc, resolved.layers))
    mdesc = store.content.write_blob(manifest, media_type=MT_DOCKER_MANIFEST)
    mdesc = Descriptor(MT_DOCKER_MANIFEST, mdesc.digest, mdesc.size)
    with pytest.raises(InvalidArgument, match="does not match diff ID"):
        store.unpack(mdesc, "native")
    assert store.snapshotter("native").list() == []
