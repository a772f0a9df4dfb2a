"""Snapshotters: the contract both overlayfs and native pass, with real mounts."""
from __future__ import annotations

import errno
import os

import pytest

from pallet.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pallet.plugins.store_native.native import NativeSnapshotter
from pallet.plugins.store_overlay.overlay import OverlaySnapshotter
from store_helpers import needs_overlay, needs_root, overlay_available

KINDS = {"overlayfs": OverlaySnapshotter, "native": NativeSnapshotter}


@pytest.fixture(params=sorted(KINDS))
def snap(request, tmp_path):
    s = KINDS[request.param](str(tmp_path / f"io.containerd.snapshotter.v1.{request.param}"))
    yield s
    s.close()


def write(root, rel, data="x"):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def read(root, rel):
    with open(os.path.join(root, rel)) as f:
        return f.read()


def test_first_prepare_is_a_bind_mount(snap):
    (m,) = snap.prepare("k1")
    assert m.type == "bind" and m.options == ("rw", "rbind")
    assert os.path.isdir(m.source)
    info = snap.stat("k1")
    assert (info.kind, info.name, info.parent) == ("active", "k1", "")


def test_overlay_mount_shapes(tmp_path):
    s = OverlaySnapshotter(str(tmp_path / "ov"))
    s.prepare("a-key")
    s.commit("a", "a-key")
    s.prepare("b-key", "a")
    s.commit("b", "b-key")
    (m,) = s.prepare("c", "b")
    assert m.type == "overlay" and m.source == "overlay"
    opts = dict(o.partition("=")[::2] for o in m.options)
    root = str(tmp_path / "ov" / "snapshots")
    assert opts["lowerdir"] == f"{root}/2/fs:{root}/1/fs"  # nearest parent first
    assert opts["upperdir"] == f"{root}/3/fs" and opts["workdir"] == f"{root}/3/work"
    (v1,) = s.view("v1", "a")
    assert (v1.type, v1.source, v1.options) == ("bind", f"{root}/1/fs", ("ro", "rbind"))
    (v2,) = s.view("v2", "b")
    assert v2.type == "overlay" and not any(o.startswith(("upperdir", "workdir"))
                                            for o in v2.options)
    assert s.mounts("c") == [m]


def test_errors(snap):
    snap.prepare("active")
    with pytest.raises(AlreadyExists):
        snap.prepare("active")
    with pytest.raises(NotFound):
        snap.prepare("x", "missing-parent")
    with pytest.raises(InvalidArgument, match="not a committed"):
        snap.prepare("x", "active")
    snap.commit("c", "active")
    with pytest.raises(FailedPrecondition, match="committed"):
        snap.mounts("c")
    snap.view("v")
    with pytest.raises(FailedPrecondition):
        snap.commit("v2", "v")
    snap.prepare("other")
    with pytest.raises(AlreadyExists):
        snap.commit("c", "other")
    for call in (snap.stat, snap.remove, snap.mounts, snap.usage):
        with pytest.raises(NotFound):
            call("nothing")
    with pytest.raises(InvalidArgument):
        snap.prepare("")


def test_remove_refuses_parents_with_children(snap):
    snap.prepare("base-key")
    snap.commit("base", "base-key")
    snap.prepare("child", "base")
    with pytest.raises(FailedPrecondition, match="child"):
        snap.remove("base")
    snap.remove("child")
    snap.remove("base")
    assert snap.list() == []
    assert os.listdir(os.path.join(snap.root, "snapshots")) == []


def test_stat_list_update_usage(snap):
    (m,) = snap.prepare("k", labels={"a": "1"})
    write(m.source, "file", "x" * 10000)
    assert snap.usage("k").size >= 10000 and snap.usage("k").inodes == 2
    snap.commit("done", "k", labels={"b": "2"})
    snap.prepare("child", "done")
    info = snap.stat("done")
    assert (info.kind, info.labels) == ("committed", {"b": "2"})
    assert snap.usage("done").inodes == 2
    assert snap.update("done", {"c": "3"}, ["labels.c"]).labels == {"b": "2", "c": "3"}
    assert [i.name for i in snap.list()] == ["child", "done"]
    assert [i.name for i in snap.list("kind==committed")] == ["done"]
    assert [i.name for i in snap.list("parent==done")] == ["child"]
    assert [i.name for i in snap.list("labels.c==3")] == ["done"]


def test_namespaced_views_are_isolated(snap):
    a, b = snap.namespaced("moby"), snap.namespaced("default")
    a.prepare("k")
    a.commit("layer", "k")
    a.prepare("c", "layer")
    b.prepare("k")
    assert [(i.name, i.parent) for i in a.list()] == [("c", "layer"), ("layer", "")]
    assert [i.name for i in b.list()] == ["k"]
    with pytest.raises(NotFound):
        b.prepare("c2", "layer")
    assert a.stat("c").parent == "layer"
    assert {i.name for i in snap.list()} == {"moby/c", "moby/layer", "default/k"}


def test_cleanup_removes_strays(snap):
    snap.prepare("keep")
    top = os.path.join(snap.root, "snapshots")
    os.makedirs(os.path.join(top, "new-crashed", "fs"))
    os.makedirs(os.path.join(top, "rm-7"))
    os.makedirs(os.path.join(top, "99"))
    assert snap.cleanup() == ["99", "new-crashed", "rm-7"]
    assert snap.stat("keep").kind == "active"
    assert len(os.listdir(top)) == 1


@needs_root
def test_chain_through_real_mounts(snap, mounts):
    if snap.name == "overlayfs" and not overlay_available():
        pytest.skip("overlayfs not available")
    m1 = snap.prepare("l1-key")
    t = mounts.mount(m1, "l1")
    write(t, "etc/keep", "1")
    write(t, "etc/gone", "1")
    write(t, "data/file", "1")
    mounts.unmount(t)
    snap.commit("l1", "l1-key")

    m2 = snap.prepare("l2-key", "l1")
    t = mounts.mount(m2, "l2")
    assert read(t, "etc/keep") == "1"
    os.unlink(os.path.join(t, "etc/gone"))
    write(t, "etc/keep", "2")
    write(t, "new", "2")
    mounts.unmount(t)
    snap.commit("l2", "l2-key")

    v = mounts.mount(snap.view("view", "l2"), "view")
    assert read(v, "etc/keep") == "2" and read(v, "new") == "2"
    assert read(v, "data/file") == "1"
    assert not os.path.exists(os.path.join(v, "etc/gone"))
    with pytest.raises(OSError) as e:
        write(v, "nope")
    assert e.value.errno == errno.EROFS

    c = mounts.mount(snap.prepare("container", "l2"), "container")
    write(c, "etc/keep", "container")
    assert read(v, "etc/keep") == "2"  # the committed layers do not change
    mounts.unmount(c)
    mounts.unmount(v)
    # the first layer still holds its own files
    v1 = mounts.mount(snap.view("view1", "l1"), "view1")
    assert read(v1, "etc/gone") == "1" and read(v1, "etc/keep") == "1"


@needs_overlay
def test_overlay_lowerdir_longer_than_a_page(tmp_path, mounts):
    # long root + many layers: the mount data passes 4 KiB and goes through
    # the chdir-in-a-child path, as containerd does
    root = tmp_path / ("long-" + "x" * 100) / "io.containerd.snapshotter.v1.overlayfs"
    s = OverlaySnapshotter(str(root))
    parent = None
    for i in range(40):
        (m,) = s.prepare(f"k{i}", parent)
        src = m.source if m.type == "bind" else \
            next(o for o in m.options if o.startswith("upperdir="))[9:]
        write(src, f"f{i}", str(i))
        s.commit(f"l{i}", f"k{i}")
        parent = f"l{i}"
    (m,) = s.prepare("top", parent)
    assert len(",".join(m.options)) > os.sysconf("SC_PAGESIZE")
    t = mounts.mount([m], "top")
    assert read(t, "f0") == "0" and read(t, "f39") == "39"
    s.close()
