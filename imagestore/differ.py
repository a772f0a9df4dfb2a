"""containerd's Diff.Diff: the changes between two mount sets, as a layer blob
in the content store.

Two ways to find the changes, both ending in the same tar writer:

* the walking differ (containerd's ``diff/walking`` over continuity's
  ``fs.Changes``): both mount sets are mounted read-only and walked side by
  side in path order.  A path only on the left is deleted (a ``.wh.NAME``
  whiteout), only on the right added; on both, it is modified unless
  continuity's ``sameFile`` says otherwise: same inode, or the same mode,
  owner, device and ``security.capability``, and for non-directories the
  same size and mtime (content, or link target, is compared when both
  mtimes have whole seconds only, as after a copy that lost precision).
  Hard-linked files that did not change are remembered, so that a new link
  to them brings the whole inode into the layer;
* the overlay fast path (containerd's overlayfs differ): when the right side
  is an overlay whose lower dirs are exactly the left side, its upper dir
  holds the changes already: overlay whiteouts (character devices 0/0) are
  deletions and an opaque directory (``trusted.overlay.opaque=y``) gets
  ``.wh..wh..opq``.

The tar is written as containerd's change writer writes it: names relative,
directories with a trailing slash, every changed path's parent directories
before it, whiteouts as empty regular files with mode 0, only the
``security.capability`` xattr, numeric owners, mtimes rounded to the second,
and the two zero blocks of the end of an archive (no record padding), so an
empty diff is the 1024-byte empty tar whose digest marks an empty layer.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
import time
import uuid
import zlib
from typing import Callable, Iterator, Mapping, Sequence

from pallet.core.errors import AlreadyExists, InvalidArgument, NotImplementedYet
from pallet.core.models import Descriptor, Mount

from pallet.imagestore.apply import OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, overlay_dirs

MEDIA_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LABEL_UNCOMPRESSED = "containerd.io/uncompressed"
#: sha256 of the 1024 zero bytes of an empty tar: docker's mark of an empty layer
EMPTY_TAR_DIGEST = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"

ADD, MODIFY, DELETE, UNMODIFIED = "add", "modify", "delete", "unmodified"
_CAPS = "security.capability"
_BLOCK = tarfile.BLOCKSIZE
_CHUNK = 1 << 20


# --- comparing ---------------------------------------------------------------------------------

def _caps(path: str) -> bytes | None:
    try:
        return os.getxattr(path, _CAPS, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
            return None
        raise


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(_CHUNK), fb.read(_CHUNK)
            if x != y:
                return False
            if not x:
                return True


def same_file(a: str, sa: os.stat_result, b: str, sb: os.stat_result) -> bool:
    """continuity's ``sameFile``: whether ``b`` is unchanged from ``a``."""
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    if (sa.st_mode, sa.st_uid, sa.st_gid, sa.st_rdev) != \
            (sb.st_mode, sb.st_uid, sb.st_gid, sb.st_rdev):
        return False
    if _caps(a) != _caps(b):
        return False
    if stat.S_ISDIR(sa.st_mode):
        return True
    if sa.st_size != sb.st_size:
        return False
    sec_a, ns_a = divmod(sa.st_mtime_ns, 1_000_000_000)
    sec_b, ns_b = divmod(sb.st_mtime_ns, 1_000_000_000)
    if sec_a != sec_b:
        return False
    if ns_a == 0 and ns_b == 0:
        # times that lost their fraction (a copy, an old tar): compare the data
        if stat.S_ISLNK(sa.st_mode):
            return os.readlink(a) == os.readlink(b)
        if sa.st_size == 0:
            return True
        return _same_content(a, b)
    return ns_a == ns_b


def _listing(path: str) -> list[bytes]:
    try:
        return sorted(os.listdir(os.fsencode(path)))
    except (FileNotFoundError, NotADirectoryError):
        return []


def walk_changes(lower: str, upper: str) -> Iterator[tuple[str, str, os.stat_result | None]]:
    """continuity's double walk: ``(kind, "/rel/path", lstat of the upper
    entry)`` in path order ('/' sorting before every other byte)."""
    def added(rel: str) -> Iterator:
        for name in _listing(upper + rel):
            p = rel + "/" + os.fsdecode(name)
            st = os.lstat(upper + p)
            yield ADD, p, st
            if stat.S_ISDIR(st.st_mode):
                yield from added(p)

    def both(rel: str) -> Iterator:
        left, right = _listing(lower + rel), _listing(upper + rel)
        i = j = 0
        while i < len(left) or j < len(right):
            if j >= len(right) or (i < len(left) and left[i] < right[j]):
                yield DELETE, rel + "/" + os.fsdecode(left[i]), None
                i += 1
                continue
            p = rel + "/" + os.fsdecode(right[j])
            sb = os.lstat(upper + p)
            if i >= len(left) or right[j] < left[i]:
                j += 1
                yield ADD, p, sb
                if stat.S_ISDIR(sb.st_mode):
                    yield from added(p)
                continue
            i += 1
            j += 1
            sa = os.lstat(lower + p)
            a_dir, b_dir = stat.S_ISDIR(sa.st_mode), stat.S_ISDIR(sb.st_mode)
            if not same_file(lower + p, sa, upper + p, sb):
                yield MODIFY, p, sb
            elif stat.S_ISREG(sb.st_mode) and sb.st_nlink > 1:
                yield UNMODIFIED, p, sb
            if a_dir and b_dir:
                yield from both(p)
            elif b_dir:
                yield from added(p)
    yield from both("")


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def overlay_changes(upper: str) -> Iterator[tuple[str, str, os.stat_result | None]]:
    """The changes an overlay upper dir holds: whiteout devices are
    deletions, an opaque directory also deletes what its lowers held."""
    def walk(rel: str) -> Iterator:
        for name in _listing(upper + rel):
            p = rel + "/" + os.fsdecode(name)
            st = os.lstat(upper + p)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                yield DELETE, p, None
                continue
            yield MODIFY, p, st
            if stat.S_ISDIR(st.st_mode):
                if _opaque(upper + p):
                    yield DELETE, p + "/" + WHITEOUT_OPAQUE[len(WHITEOUT_PREFIX):], None
                yield from walk(p)
    yield from walk("")


def fast_upper(lower: Sequence[Mount], upper: Sequence[Mount]) -> str | None:
    """The upper dir holding exactly the changes from ``lower`` to ``upper``,
    when ``upper`` is an overlay stacked on what ``lower`` mounts."""
    if len(upper) != 1 or upper[0].type != "overlay" or len(lower) != 1:
        return None
    up, up_lowers = overlay_dirs(upper[0].options)
    if not up or not up_lowers:
        return None
    m = lower[0]
    if m.type == "overlay":
        l_up, l_lowers = overlay_dirs(m.options)
        below = ([l_up] if l_up else []) + l_lowers
        return up if below == up_lowers else None
    if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
        return up if [m.source] == up_lowers else None
    return None


# --- writing the tar ---------------------------------------------------------------------------

class ChangeWriter:
    """containerd's change writer: tar entries for each change, read from
    ``source`` (the upper tree), into ``write``."""

    def __init__(self, write: Callable[[bytes], object], source: str):
        self.write = write
        self.source = source
        self.whiteout_time = int(time.time())
        self.added_dirs: set[str] = set()
        self.inode_src: dict[tuple[int, int], str] = {}
        self.inode_refs: dict[tuple[int, int], list[str]] = {}
        self._buf = bytearray()

    def _out(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self.write(bytes(self._buf))
            self._buf.clear()

    def _header(self, info: tarfile.TarInfo) -> None:
        self._out(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _include_parents(self, name: str) -> None:
        parent = os.path.dirname(name.rstrip("/"))
        if parent and parent not in self.added_dirs:
            self.added_dirs.add(parent)
            st = os.stat(os.path.join(self.source, parent))
            self.handle(MODIFY, "/" + parent, st)

    def handle(self, kind: str, path: str, st: os.stat_result | None) -> None:
        """Write the entry of one change (``path`` starts with '/')."""
        rel = path.lstrip("/")
        if kind == DELETE:
            info = tarfile.TarInfo(os.path.join(os.path.dirname(rel),
                                                WHITEOUT_PREFIX + os.path.basename(rel)))
            info.mode = 0
            info.mtime = self.whiteout_time
            self._include_parents(info.name)
            self._header(info)
            return
        full = os.path.join(self.source, rel)
        info = tarfile.TarInfo(rel + "/" if stat.S_ISDIR(st.st_mode) else rel)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = (st.st_mtime_ns + 500_000_000) // 1_000_000_000
        links: list[str] = []
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFREG:
            info.type, info.size = tarfile.REGTYPE, st.st_size
            if st.st_nlink > 1:
                inode = (st.st_dev, st.st_ino)
                if inode in self.inode_src:
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, \
                        self.inode_src[inode], 0
                elif kind == UNMODIFIED:
                    self.inode_refs.setdefault(inode, []).append(info.name)
                    return
                else:
                    self.inode_src[inode] = info.name
                    links = self.inode_refs.pop(inode, [])
            elif kind == UNMODIFIED:
                return
        elif kind == UNMODIFIED:
            return
        elif fmt == stat.S_IFDIR:
            info.type = tarfile.DIRTYPE
            self.added_dirs.add(rel)
        elif fmt == stat.S_IFLNK:
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(full)
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif fmt == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
        else:
            return  # sockets have no tar form; they belong to a running process
        caps = _caps(full)
        if caps is not None:
            info.pax_headers = {"SCHILY.xattr." + _CAPS: caps.decode("latin-1")}
        self._include_parents(info.name)
        self._header(info)
        if info.type == tarfile.REGTYPE and info.size:
            self._copy(full, info.size)
        for extra in links:
            link = tarfile.TarInfo(extra)
            link.type, link.linkname = tarfile.LNKTYPE, info.name
            link.mode, link.uid, link.gid, link.mtime = info.mode, info.uid, info.gid, info.mtime
            self._include_parents(extra)
            self._header(link)

    def _copy(self, path: str, size: int) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            left = size
            while left:
                data = os.read(fd, min(_CHUNK, left))
                if not data:
                    raise InvalidArgument(f"diff: {path} shrank while it was read")
                self._out(data)
                left -= len(data)
        finally:
            os.close(fd)
        pad = -size % _BLOCK
        if pad:
            self._out(b"\0" * pad)

    def close(self) -> None:
        """The end of the archive: two zero blocks, no record padding (as Go)."""
        self._out(b"\0" * (2 * _BLOCK))
        self.flush()


# --- the differ --------------------------------------------------------------------------------

class _Compressor:
    """The blob's bytes from the tar's: plain, gzip or zstd; the tar's own
    digest is kept for the ``containerd.io/uncompressed`` label."""

    def __init__(self, media_type: str, sink: Callable[[bytes], object]):
        import hashlib

        self.sink = sink
        self.tar_hash = hashlib.sha256()
        self.media_type = media_type
        self._z = None
        if media_type == MEDIA_GZIP:
            self._z = zlib.compressobj(6, zlib.DEFLATED, 31)
        elif media_type == MEDIA_ZSTD:
            import zstandard
            self._z = zstandard.ZstdCompressor().compressobj()

    def write(self, data: bytes) -> None:
        if self._z is None:
            self.sink(data)
            return
        self.tar_hash.update(data)
        out = self._z.compress(data)
        if out:
            self.sink(out)

    def close(self) -> None:
        if self._z is not None:
            out = self._z.flush()
            if out:
                self.sink(out)


class Differ:
    """containerd's differ over a content store (``writer``, ``info``):
    :meth:`compare` two mount sets into a layer blob."""

    def __init__(self, content, tmpdir: str | None = None):
        self.content = content
        self.tmpdir = tmpdir

    def compare(self, lower: Sequence[Mount], upper: Sequence[Mount], *, media_type: str = "",
                ref: str = "", labels: Mapping[str, str] | None = None,
                committed: Callable[[str, dict, bool], object] | None = None) -> Descriptor:
        """The diff from ``lower`` to ``upper`` as a blob of ``media_type``
        (containerd's default: gzip); ``ref`` names the upload, ``labels``
        are set on the blob.  A blob that exists already is reused.
        ``committed(digest, labels, fresh)`` is told before returning
        (``fresh``: the blob did not exist before)."""
        media_type = media_type or MEDIA_GZIP
        if media_type not in (MEDIA_TAR, MEDIA_GZIP, MEDIA_ZSTD):
            raise NotImplementedYet(f"unsupported diff media type: {media_type}: "
                                    "not implemented")
        if not upper:
            raise InvalidArgument("diff: no mounts for the upper side: invalid argument")
        ref = ref or f"diff-{time.time_ns()}-{uuid.uuid4().hex[:6]}"
        labels = dict(labels or {})
        with self.content.writer(ref) as w:
            try:
                comp = _Compressor(media_type, w.write)
                self._write_diff(lower, upper, comp.write)
                comp.close()
                if comp._z is not None:
                    labels[LABEL_UNCOMPRESSED] = "sha256:" + comp.tar_hash.hexdigest()
                digest = w.digest()
                fresh = True
                try:
                    w.commit(0, None, labels)
                except AlreadyExists:
                    fresh = False
            except BaseException:
                with contextlib.suppress(Exception):
                    w.close()
                    self.content.abort(ref)
                raise
        if committed is not None:
            committed(digest, labels, fresh)
        return Descriptor(media_type, digest, self.content.info(digest).size)

    def _write_diff(self, lower: Sequence[Mount], upper: Sequence[Mount], write) -> None:
        from pallet.imagestore.imageops import readonly_mounts
        from pallet.linux.mounts import temp_mount

        up = fast_upper(lower, upper)
        if up is not None:
            cw = ChangeWriter(write, up)
            for kind, path, st in overlay_changes(up):
                cw.handle(kind, path, st)
            cw.close()
            return
        with contextlib.ExitStack() as stack:
            left = stack.enter_context(temp_mount(readonly_mounts(lower), self.tmpdir)) \
                if lower else stack.enter_context(_empty_dir(self.tmpdir))
            right = stack.enter_context(temp_mount(readonly_mounts(upper), self.tmpdir))
            cw = ChangeWriter(write, right)
            for kind, path, st in walk_changes(left, right):
                cw.handle(kind, path, st)
            cw.close()


@contextlib.contextmanager
def _empty_dir(parent: str | None):
    import tempfile

    path = tempfile.mkdtemp(prefix="pallet-diff-", dir=parent)
    try:
        yield path
    finally:
        os.rmdir(path)
