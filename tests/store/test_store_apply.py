"""Layer application: fidelity, whiteouts through real overlay mounts, the
Applier over both snapshotters, and hostile layers that try to escape."""
from __future__ import annotations

import gzip
import hashlib
import os
import stat

import pytest

from pallet.core.errors import FailedPrecondition, InvalidArgument
from pallet.core.models import Mount
from pallet.imagestore.apply import Applier, apply_layer
from pallet.imagestore.content import ContentStore
from pallet.distribution.mediatypes import MT_DOCKER_LAYER
from pallet.plugins.store_native.native import NativeSnapshotter
from pallet.plugins.store_overlay.overlay import OverlaySnapshotter
from store_helpers import needs_overlay, needs_root, overlay_available

pytestmark = needs_root


def sha_file(path) -> str:
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def apply_file(path, target, **kw):
    with open(path, "rb") as f:
        return apply_layer(f, str(target), **kw)


def tree(root) -> dict:
    """Everything observable about a tree: type, mode, owner, size, content,
    link target, device, mtime (dirs and files)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            entry = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     st.st_mtime_ns)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    entry += (f.read(),)
            elif stat.S_ISLNK(st.st_mode):
                entry += (os.readlink(p),)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                entry += (st.st_rdev,)
            out[rel] = entry
    return out


# --- fidelity -----------------------------------------------------------------------------


def test_attributes_survive(tmp_path, layer):
    path = (layer()
            .dir("etc", 0o750, uid=5, gid=6, mtime=1_111_111_111)
            .file("etc/suid", b"#!/bin/sh\n", 0o4755, uid=1000, gid=1001, mtime=1_222_222_222)
            .file("etc/xattr", b"x", pax_headers={"SCHILY.xattr.user.color": "blue",
                                                  "SCHILY.xattr.trusted.overlay.redirect": "/x"})
            .symlink("etc/link", "/etc/suid", uid=7, gid=8, mtime=1_333_333_333)
            .hardlink("etc/hard", "etc/suid")
            .device("dev/null", "chr", 1, 3, 0o666)
            .device("dev/loop9", "blk", 7, 9, 0o660)
            .device("dev/fifo", "fifo", 0, 0, 0o640)
            .close())
    target = tmp_path / "target"
    target.mkdir()
    result = apply_file(path, target)
    assert result.digest == sha_file(path) and result.size == os.path.getsize(path)
    st = os.lstat(target / "etc")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 5, 6)
    assert st.st_mtime == 1_111_111_111  # set after the entries written inside
    st = os.lstat(target / "etc/suid")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == \
        (0o4755, 1000, 1001, 1_222_222_222)
    assert os.getxattr(target / "etc/xattr", "user.color") == b"blue"
    assert "trusted.overlay.redirect" not in os.listxattr(target / "etc/xattr")
    st = os.lstat(target / "etc/link")
    assert os.readlink(target / "etc/link") == "/etc/suid"
    assert (st.st_uid, st.st_gid, st.st_mtime) == (7, 8, 1_333_333_333)
    assert os.lstat(target / "etc/hard").st_ino == os.lstat(target / "etc/suid").st_ino
    st = os.lstat(target / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666
    assert stat.S_ISBLK(os.lstat(target / "dev/loop9").st_mode)
    assert stat.S_ISFIFO(os.lstat(target / "dev/fifo").st_mode)


def test_compressed_layer_gives_uncompressed_digest(tmp_path, layer):
    path = layer().file("a", b"hello" * 1000).close()
    gz = tmp_path / "layer.tar.gz"
    with open(path, "rb") as f:
        gz.write_bytes(gzip.compress(f.read()))
    (tmp_path / "t").mkdir()
    assert apply_file(gz, tmp_path / "t").digest == sha_file(path)
    assert (tmp_path / "t" / "a").read_bytes() == b"hello" * 1000


def test_zstd_layer(tmp_path, layer):
    path = layer().file("z", b"zstd").close()
    with open(path, "rb") as f:
        data = f.read()
    (tmp_path / "t").mkdir()
    try:
        import zstandard
    except ImportError:
        blob = tmp_path / "layer.zst"
        blob.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
        with pytest.raises(InvalidArgument, match="zstandard"):
            apply_file(blob, tmp_path / "t")
        return
    blob = tmp_path / "layer.zst"
    blob.write_bytes(zstandard.ZstdCompressor().compress(data))
    assert apply_file(blob, tmp_path / "t").digest == sha_file(path)


def test_replacing_entries(tmp_path, layer):
    target = tmp_path / "t"
    target.mkdir()
    apply_file(layer("one").dir("d").file("d/f", b"1").symlink("l", "d").file("x", b"x")
               .close(), target)
    apply_file(layer("two").file("d", b"now a file").dir("l").symlink("x", "d").close(), target)
    assert (target / "d").read_bytes() == b"now a file"
    assert os.path.isdir(target / "l") and not os.path.islink(target / "l")
    assert os.readlink(target / "x") == "d"


def test_delete_mode_whiteouts(tmp_path, layer):
    target = tmp_path / "t"
    target.mkdir()
    apply_file(layer("base").dir("a").file("a/old1").file("a/old2").file("gone").dir("keep")
               .file("keep/f").close(), target)
    apply_file(layer("top").file("a/new").file("a/.wh..wh..opq").file(".wh.gone")
               .file(".wh.missing").file("nodir/.wh.x").close(), target)
    assert sorted(os.listdir(target)) == ["a", "keep"]
    assert os.listdir(target / "a") == ["new"]  # opaque: what came before is gone


# --- whiteouts through a real overlay mount -------------------------------------------------------


@pytest.fixture
def lower_and_top(layer):
    base = (layer("base").dir("etc", 0o750, uid=3, gid=4, mtime=1_000_000_000)
            .file("etc/keep", b"keep").file("etc/gone", b"gone").dir("opq")
            .file("opq/old", b"old").dir("opq/olddir").file("opq/olddir/f")
            .file("shared", b"shared").close())
    top = (layer("top").file(".wh.shared").file("etc/.wh.gone")
           .file("etc/added", b"added")  # no etc/ entry: the upper etc copies lower's attrs
           .dir("opq").file("opq/.wh..wh..opq").file("opq/new", b"new")
           .hardlink("keep-link", "etc/keep")  # hard link to a file of the lower layer
           .close())
    return base, top


def visible(root) -> dict:
    out = {}
    for rel, entry in tree(root).items():
        out[rel] = entry[-1] if stat.S_ISREG(entry[0]) else stat.filemode(entry[0] | entry[1])
    return out


@pytest.mark.parametrize("kind", ["overlayfs", "native"])
def test_applier_over_snapshotters(tmp_path, mounts, lower_and_top, kind):
    if kind == "overlayfs" and not overlay_available():
        pytest.skip("overlayfs not available")
    base, top = lower_and_top
    content = ContentStore(str(tmp_path / "content"))
    snap = (OverlaySnapshotter if kind == "overlayfs" else NativeSnapshotter)(
        str(tmp_path / kind))
    applier = Applier(content)
    descs = []
    for p in (base, top):
        with open(p, "rb") as f:
            descs.append(content.write_blob(f, media_type=MT_DOCKER_LAYER))
    diff = applier.apply(descs[0], snap.prepare("k1"))
    assert diff.digest == descs[0].digest
    assert diff.media_type == "application/vnd.oci.image.layer.v1.tar"
    snap.commit("l1", "k1")
    m2 = snap.prepare("k2", "l1")
    assert applier.apply(descs[1], m2).digest == descs[1].digest
    if kind == "overlayfs":
        upper = next(o for o in m2[0].options if o.startswith("upperdir="))[9:]
        st = os.lstat(os.path.join(upper, "shared"))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # overlay whiteout
        assert os.getxattr(os.path.join(upper, "opq"), "trusted.overlay.opaque") == b"y"
        st = os.lstat(os.path.join(upper, "etc"))  # made as a parent: lower's attributes
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 3, 4)
    snap.commit("l2", "k2")
    view = mounts.mount(snap.view("v", "l2"), "view")
    seen = visible(view)
    assert seen == {
        "etc": "drwxr-x---", "etc/keep": b"keep", "etc/added": b"added",
        "opq": "drwxr-xr-x", "opq/new": b"new", "keep-link": b"keep",
    }
    st = os.lstat(os.path.join(view, "etc"))
    assert (st.st_uid, st.st_gid) == (3, 4)
    content.close()
    snap.close()


def test_applier_refuses_read_only_targets(tmp_path):
    content = ContentStore(str(tmp_path / "c"))
    d = content.write_blob(b"")
    with pytest.raises(FailedPrecondition):
        Applier(content).apply(d, [Mount("bind", str(tmp_path), ("ro", "rbind"))])
    with pytest.raises(FailedPrecondition):
        Applier(content).apply(d, [Mount("overlay", "overlay", (f"lowerdir={tmp_path}",))])


@needs_overlay
def test_applier_through_a_temporary_mount(tmp_path, layer):
    """A mount list that is neither one overlay nor one bind (here a bind
    without the shortcut: two mounts) is applied through a temporary mount."""
    target = tmp_path / "real"
    target.mkdir()
    content = ContentStore(str(tmp_path / "c"))
    with open(layer().file("via-mount", b"1").close(), "rb") as f:
        d = content.write_blob(f)
    mlist = [Mount("bind", str(target), ("rbind",)), Mount("bind", str(target), ("rbind",))]
    Applier(content).apply(d, mlist)
    assert (target / "via-mount").read_bytes() == b"1"


# --- hostile layers ---------------------------------------------------------------------------


@pytest.fixture
def arena(tmp_path):
    """A target directory and, beside it, an ``outside`` tree that must not change."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret").write_bytes(b"secret")
    (outside / "dir" / "victim").write_bytes(b"victim")
    target = tmp_path / "target"
    target.mkdir()
    before = tree(tmp_path / "outside")
    yield target, outside
    assert tree(tmp_path / "outside") == before, "a layer changed files outside the target"
    assert os.lstat(outside / "secret").st_nlink == 1


@pytest.mark.parametrize("whiteouts", ["delete", "overlay"])
def test_tar_slip_and_absolute_names(arena, layer, whiteouts):
    target, outside = arena
    rel = os.path.relpath(outside, target)  # ../outside
    path = (layer().file(f"{rel}/secret", b"pwned").file(f"../../../../../{outside}/dir/victim",
                                                           b"pwned")
            .file(str(outside / "secret"), b"pwned-abs").file(f"./a/../../{rel}/new", b"x")
            .file(f"{rel}/.wh.new").file(f"/{outside}/dir/.wh..wh..opq").close())
    apply_file(path, target, whiteouts=whiteouts)
    # every name landed inside the target, taken relative to it
    assert (target / "outside" / "secret").read_bytes() == b"pwned"
    assert (target / str(outside).lstrip("/") / "secret").read_bytes() == b"pwned-abs"


@pytest.mark.parametrize("whiteouts", ["delete", "overlay"])
def test_symlinked_parents_stay_inside(arena, layer, whiteouts):
    target, outside = arena
    path = (layer()
            .symlink("abs", str(outside))
            .file("abs/secret", b"pwned")           # through an absolute symlink
            .symlink("rel", "../../../../../../..")
            .file("rel/" + str(outside).lstrip("/") + "/dir/victim", b"pwned")
            .symlink("deep", "rel/" + str(outside).lstrip("/") + "/dir")
            .file("deep/victim", b"pwned")          # a chain of symlinks
            .file("deep/.wh.victim")                 # a whiteout through symlinks
            .symlink("abs2", str(outside))
            .dir("abs2/dir")                         # a directory through a symlink
            .close())
    apply_file(path, target, whiteouts=whiteouts)
    assert os.path.islink(target / "abs")
    inside = target / str(outside).lstrip("/")
    assert (inside / "secret").read_bytes() == b"pwned"


def test_final_symlink_is_replaced_not_followed(arena, layer):
    target, outside = arena
    path = (layer().symlink("s", str(outside / "secret")).file("s", b"pwned")
            .symlink("d", str(outside / "dir")).dir("d", 0o777).close())
    apply_file(path, target)
    assert (target / "s").read_bytes() == b"pwned" and not os.path.islink(target / "s")
    assert os.path.isdir(target / "d") and not os.path.islink(target / "d")


def test_hardlinks_cannot_reach_outside(arena, layer):
    target, outside = arena
    rel = os.path.relpath(outside, target)
    for i, linkname in enumerate([f"{rel}/secret", str(outside / "secret"),
                                  f"../../../../{outside}/secret"]):
        with pytest.raises(InvalidArgument, match="not found"):
            apply_file(layer(f"h{i}").hardlink(f"h{i}", linkname).close(), target)
    # through a symlinked parent: resolved inside, so the target is missing
    with pytest.raises(InvalidArgument, match="not found"):
        apply_file(layer("hs").symlink("o", str(outside)).hardlink("h", "o/secret").close(),
                   target)
    # to a symlink that points outside: the link is to the symlink itself
    apply_file(layer("hl").symlink("s", str(outside / "secret")).hardlink("h", "s")
               .file("h", b"replaced").close(), target)
    assert os.path.islink(target / "s") and (target / "h").read_bytes() == b"replaced"


def test_malformed_layers_are_refused(arena, layer):
    target, _ = arena
    cases = {
        "loop": layer("loop").symlink("loop", "loop").file("loop/x"),
        "file-parent": layer("fp").file("f").file("f/x"),
        "bad-whiteout": layer("bw").file(".wh.."),
        "link-to-root": layer("lr").hardlink("x", "/"),
    }
    for name, builder in cases.items():
        with pytest.raises(InvalidArgument):
            apply_file(builder.close(), target)
    (target.parent / "trunc.tar").write_bytes(open(layer("ok").file("a", b"x" * 5000).close(),
                                                   "rb").read()[:1000])
    with pytest.raises(InvalidArgument):
        apply_file(target.parent / "trunc.tar", target)
