"""The build context: indexing (plain and compressed tars, a lone
Dockerfile), dockerd's checksums, hostile names, and resolution that never
leaves the context; the copy into a workspace confined to it."""
from __future__ import annotations

import asyncio
import gzip
import io
import lzma
import bz2
import os
import tarfile

import pytest

from pallet.core.errors import InvalidArgument
from pallet.plugins.builder_dockerfile.context import Context, clean


def _tar(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            name, kind = e[0], e[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            ti.mode = e[3] if len(e) > 3 else (0o755 if kind == "d" else 0o644)
            if kind == "d":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, e[2]
                tf.addfile(ti)
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, e[2]
                tf.addfile(ti)
            else:
                ti.size = len(e[2])
                tf.addfile(ti, io.BytesIO(e[2]))
    return buf.getvalue()


def _ctx(tmp_path, data: bytes) -> Context:
    return Context.from_stream(io.BytesIO(data), str(tmp_path / "spool"))


BASIC = [("Dockerfile", "f", b"FROM a\n"), ("dir", "d"), ("dir/a", "f", b"aaa"),
         ("dir/sub/b", "f", b"b" * 3000), ("dir/link", "l", "a"), ("abs", "l", "/etc/passwd"),
         ("up", "l", "../../../../etc"), ("hard", "h", "dir/a")]


@pytest.mark.parametrize("compress", [None, gzip.compress, bz2.compress, lzma.compress])
def test_index_plain_and_compressed(tmp_path, compress):
    data = _tar(BASIC)
    ctx = _ctx(tmp_path, compress(data) if compress else data)
    assert sorted(ctx.entries) == ["", "Dockerfile", "abs", "dir", "dir/a", "dir/link",
                                   "dir/sub", "dir/sub/b", "hard", "up"]
    assert ctx.read(ctx.entries["dir/sub/b"]) == b"b" * 3000
    assert ctx.read(ctx.entries["hard"]) == b"aaa"
    assert ctx.entries["dir/sub"].sum == ""  # implicit: no tar entry, no tarsum


def test_resolution_stays_inside(tmp_path):
    ctx = _ctx(tmp_path, _tar(BASIC))
    assert ctx.resolve("dir/link") == "dir/a"
    assert ctx.resolve("../../dir/./a") == "dir/a"
    assert ctx.resolve("/abs") == "etc/passwd"            # absolute: from the context's root
    assert ctx.resolve("up/passwd") == "etc/passwd"       # .. stops at the root
    assert ctx.lookup("abs") is None and ctx.lookup("up/passwd") is None
    assert ctx.resolve("dir/link", follow_last=False) == "dir/link"


def test_loops_are_refused(tmp_path):
    ctx = _ctx(tmp_path, _tar([("a", "l", "b"), ("b", "l", "a")]))
    with pytest.raises(InvalidArgument):
        ctx.resolve("a/x")


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "/../../../escape"])
def test_members_outside_the_context_refuse_it(tmp_path, name):
    if name.startswith("/"):
        ctx = _ctx(tmp_path, _tar([(name, "f", b"x")]))
        assert list(ctx.entries) == ["escape", ""] or "escape" in ctx.entries
        return
    with pytest.raises(InvalidArgument) as e:
        _ctx(tmp_path, _tar([(name, "f", b"x")]))
    assert "outside of the build context" in e.value.message


def test_clean():
    assert clean("./a//b/") == "a/b" and clean("/x") == "x" and clean(".") == ""
    with pytest.raises(InvalidArgument):
        clean("a/../..")


def test_a_plain_dockerfile_is_a_context(tmp_path):
    ctx = _ctx(tmp_path, b"FROM busybox\nRUN true\n")
    assert ctx.dockerfile_only and ctx.read(ctx.entries["Dockerfile"]).startswith(b"FROM")


def test_empty_body_is_an_empty_context(tmp_path):
    ctx = _ctx(tmp_path, b"")
    assert list(ctx.entries) == [""]


def test_truncated_tar_is_refused(tmp_path):
    data = _tar([("big", "f", b"x" * 5000)])
    with pytest.raises(InvalidArgument):
        _ctx(tmp_path, data[:1024])


def test_dockerd_checksums(tmp_path):
    """The value dockerd 20.10 writes for the same tar entry (as the docker
    CLI 28 sends it: mode 0644, owner root) in ``COPY file:<sum>``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("file.txt")
        ti.size, ti.mode = 6, 0o644
        tf.addfile(ti, io.BytesIO(b"hello\n"))
    ctx = _ctx(tmp_path, buf.getvalue())
    assert ctx.source_hash("file.txt") == \
        "file:88e76772b4ded79d05e3c242fb9da70cd0bd2ec1b47421a100b5ae4e6e303407"


def test_receive_from_chunks(tmp_path):
    data = gzip.compress(_tar(BASIC))

    async def chunks():
        for i in range(0, len(data), 100):
            yield data[i:i + 100]
    ctx = asyncio.run(Context.receive(chunks(), str(tmp_path / "spool")))
    assert ctx.read(ctx.entries["dir/a"]) == b"aaa"


# --- copying into a workspace ---------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@needs_root
def test_copy_never_leaves_the_workspace(tmp_path):
    from pallet.plugins.builder_dockerfile.copy import Writer, copy_directory, copy_file

    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    # the image has symlinks pointing out of it
    os.symlink(str(outside), root / "etc" / "out")
    os.symlink("/", root / "rootlink")
    ctx = _ctx(tmp_path, _tar(BASIC))
    w = Writer(str(root))
    try:
        copy_file(w, ctx, ctx.entries["dir/a"], w.resolve("/etc/out/x"), owner=(0, 0),
                  mode=None)
        copy_directory(w, ctx, "dir", "/rootlink/tmp/dir", owner=(7, 8), mode=None)
        copy_file(w, ctx, ctx.entries["abs"], "/etc/abs", owner=None, mode=None)
    finally:
        w.close()
    assert list(outside.iterdir()) == []
    assert (root / str(outside).lstrip("/") / "x").read_bytes() == b"aaa"
    assert (root / "tmp" / "dir" / "sub" / "b").stat().st_uid == 7
    assert os.readlink(root / "etc" / "abs") == "/etc/passwd"
    assert os.readlink(root / "tmp" / "dir" / "link") == "a"


@needs_root
def test_add_of_a_crafted_tar_stays_inside(tmp_path):
    from pallet.plugins.builder_dockerfile.copy import Writer, extract_archive

    outside = tmp_path / "outside"
    outside.mkdir()
    evil = _tar([("../../evil", "f", b"x"), ("lnk", "l", str(outside)), ("lnk/owned", "f", b"x"),
                 ("abs", "l", "/"), ("abs/tmp/x", "f", b"y"), ("ok/file", "f", b"z", 0o600),
                 ("ok/hard", "h", "ok/file")])
    ctx = _ctx(tmp_path, _tar([("evil.tar.gz", "f", gzip.compress(evil))]))
    root = tmp_path / "root"
    root.mkdir()
    w = Writer(str(root))
    try:
        extract_archive(w, ctx, ctx.entries["evil.tar.gz"], "/dest")
    finally:
        w.close()
    assert list(outside.iterdir()) == []
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert "dest/evil" in found and "dest/ok/file" in found
    assert (root / "dest" / "ok" / "hard").stat().st_ino == \
        (root / "dest" / "ok" / "file").stat().st_ino
    assert not (tmp_path / "evil").exists()
