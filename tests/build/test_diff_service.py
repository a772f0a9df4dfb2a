"""containerd's Diff.Diff through the gRPC API, on pallet-containerd and on
Debian's containerd 1.6 alike: the layer blob of a snapshot's changes holds
what was added, changed and deleted (whiteouts), and applied onto the parent
it gives back the changed tree; an unchanged snapshot gives the empty tar."""
from __future__ import annotations

import os
import tempfile

import pytest

from build_helpers import make_tar, start_containerd, tar_entries, tree

from pallet.containerd.client import SyncContainerd
from pallet.linux.mounts import mount_all, unmount_all

TAR = "application/vnd.oci.image.layer.v1.tar"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"

BASE = [("keep", "f", b"same", 0o644, 0), ("mod", "f", b"before", 0o644, 0),
        ("gone", "f", b"x", 0o644, 0), ("chmod", "f", b"c", 0o644, 0),
        ("dir", "d", None, 0o755, 0), ("dir/a", "f", b"a", 0o600, 5),
        ("opq", "d", None, 0o750, 0), ("opq/old", "f", b"old", 0o644, 0),
        ("sub", "d", None, 0o755, 0), ("sub/deep", "d", None, 0o700, 7),
        ("sub/deep/f", "f", b"deep", 0o644, 0), ("link", "l", "keep", 0o777, 0),
        ("hard1", "f", b"h", 0o644, 0), ("hard2", "h", "hard1", 0o644, 0)]


def _mutate(root: str) -> None:
    with open(os.path.join(root, "mod"), "wb") as f:
        f.write(b"after, longer")
    os.unlink(os.path.join(root, "gone"))
    os.chmod(os.path.join(root, "chmod"), 0o755)
    import shutil
    shutil.rmtree(os.path.join(root, "dir"))
    shutil.rmtree(os.path.join(root, "opq"))
    os.mkdir(os.path.join(root, "opq"), 0o750)
    with open(os.path.join(root, "opq", "new"), "wb") as f:
        f.write(b"new")
    os.makedirs(os.path.join(root, "new", "nested"))
    with open(os.path.join(root, "new", "nested", "f"), "wb") as f:
        f.write(b"n" * 3000)
    os.chown(os.path.join(root, "new", "nested", "f"), 1000, 1001)
    os.symlink("/etc/passwd", os.path.join(root, "abs-link"))
    with open(os.path.join(root, "sub", "deep", "g"), "wb") as f:
        f.write(b"g")
    os.link(os.path.join(root, "new", "nested", "f"), os.path.join(root, "new", "f-link"))
    os.mkfifo(os.path.join(root, "fifo"))


def _snap(c, sn: str, key: str, parent: str, layer: bytes | None = None):
    mounts = c.snapshot_prepare(key, parent, snapshotter=sn)
    if layer is not None:
        desc = c.content_write_blob(layer, media_type=TAR)
        c.diff_apply(desc, mounts)
    return mounts


def _mounted(mounts, fn):
    d = tempfile.mkdtemp(prefix="pb-m-", dir="/tmp")
    try:
        mount_all([m for m in mounts], d)
        try:
            return fn(d)
        finally:
            unmount_all(d)
    finally:
        os.rmdir(d)


def _client(containerd) -> SyncContainerd:
    """A client whose snapshots and blobs a lease keeps (containerd collects
    unreferenced ones after every removal)."""
    plain = SyncContainerd(containerd.address, "default")
    try:
        lease = plain.lease_create(expire=600)
    finally:
        plain.close()
    return SyncContainerd(containerd.address, "default", lease=lease)


@pytest.mark.parametrize("sn", ["overlayfs", "native"])
def test_diff_of_changes_applies_back(containerd, sn):
    own = None
    if containerd.kind == "pallet" and sn == "native":
        # pallet's native snapshots are store_native's, a role chosen in the config
        containerd = own = start_containerd("pallet", "store_native")
    c = _client(containerd)
    try:
        _snap(c, sn, f"base-{sn}-a", "", make_tar(BASE))
        c.snapshot_commit(f"base-{sn}", f"base-{sn}-a", snapshotter=sn)
        work = _snap(c, sn, f"work-{sn}", f"base-{sn}")
        _mounted(work, _mutate)
        want = _mounted(work, tree)
        view = c.snapshot_view(f"view-{sn}", f"base-{sn}", snapshotter=sn)
        desc = c.diff_compare(view, work, media_type=TAR)
        assert desc.media_type == TAR
        data = c.content_read(desc.digest)
        assert desc.size == len(data) and len(data) % 512 == 0
        names = {e[0]: e for e in tar_entries(data)}
        assert "keep" not in names and "link" not in names and "sub/deep/f" not in names
        assert names[".wh.gone"][1] == b"0" and names[".wh.gone"][2] == 0
        assert ".wh.dir" in names and "dir/a" not in names
        assert names["mod"][7] == b"after, longer"
        assert names["chmod"][2] == 0o755
        assert names["new/nested/f"][3:5] == (1000, 1001)
        assert names["abs-link"][6] == "/etc/passwd"
        assert "sub" in names and "sub/deep" in names and names["sub/deep"][3] == 7
        assert {names["new/f-link"][1], names["new/nested/f"][1]} == {b"0", b"1"}
        assert names["fifo"][1] == b"6"
        # applied onto the parent, the layer gives back the changed tree
        again = _snap(c, sn, f"again-{sn}", f"base-{sn}")
        c.diff_apply({"mediaType": TAR, "digest": desc.digest, "size": desc.size}, again)
        assert _mounted(again, tree) == want
        # a snapshot with no change is the empty tar
        same = _snap(c, sn, f"same-{sn}", f"base-{sn}")
        assert c.diff_compare(view, same, media_type=TAR).digest == EMPTY
    finally:
        c.close()
        if own is not None:
            own.stop()


def test_diff_gzip_labels_the_uncompressed_digest(containerd):
    c = _client(containerd)
    try:
        _snap(c, "overlayfs", "gz-a", "", make_tar(BASE[:2]))
        c.snapshot_commit("gz", "gz-a")
        work = _snap(c, "overlayfs", "gz-work", "gz")
        _mounted(work, lambda d: open(os.path.join(d, "x"), "w").write("x"))
        view = c.snapshot_view("gz-view", "gz")
        desc = c.diff_compare(view, work)  # containerd's default media type
        assert desc.media_type == GZIP
        import gzip
        import hashlib
        raw = gzip.decompress(c.content_read(desc.digest))
        info = c.content_info(desc.digest)
        assert info.labels["containerd.io/uncompressed"] == \
            "sha256:" + hashlib.sha256(raw).hexdigest()
        assert [e[0] for e in tar_entries(raw)] == ["x"]
        with pytest.raises(Exception) as e:
            c.diff_compare(view, work, media_type="application/x-nope")
        assert "unsupported diff media type" in str(e.value)
    finally:
        c.close()
