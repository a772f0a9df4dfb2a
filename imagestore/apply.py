"""Applying a layer (a tar, maybe compressed) onto a directory, safely.

Two ways to express deletions, as in containerd's ``archive.Apply``:

* ``whiteouts="overlay"``: the target is an overlay upper dir; ``.wh.NAME``
  becomes a character device 0/0 named NAME, and ``.wh..wh..opq`` the
  ``trusted.overlay.opaque=y`` xattr on its directory (overlayfs docs,
  "whiteouts and opaque directories").  Missing parent directories take the
  owner, mode and times of the same directory in the lower layers, so that
  the merged view does not change them (containerd's ``WithParents``);
* ``whiteouts="delete"``: the target is a full tree (first layer, native
  snapshotter, a temporary mount); ``.wh.NAME`` deletes NAME and an opaque
  marker deletes what the directory held before this layer.

Hostile layers: every path is resolved inside the target, one component at a
time, with ``O_PATH|O_NOFOLLOW`` directory descriptors.  ``..`` stops at the
target's root, absolute names are taken relative to it, and a symlink met on
the way is followed as if the target were ``/`` (what a chroot would do,
which is how Docker applies layers), never out of it.  Final components are
never followed: a regular file replaces a symlink instead of writing through
it, and hard links are made to the link itself (``linkat`` without
``AT_SYMLINK_FOLLOW``), from a target resolved inside the root too.  Layers
may not set ``trusted.overlay.*`` xattrs, which could make overlayfs redirect
lookups outside the layer (CVE-2023-0386 is of the same family).

This assumes nothing else changes the target while a layer is applied (the
snapshot is not mounted anywhere yet), as containerd does.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tarfile
from typing import BinaryIO, Sequence

import attrs

from pallet.core.errors import FailedPrecondition, InvalidArgument, NotFound
from pallet.core.models import Descriptor, Mount

from pallet.distribution.compression import HashingReader, decompressed
from pallet.linux.confined import ConfinedRoot, proc_path, split_name

log = logging.getLogger("pallet.store_overlay.apply")

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"

_CHUNK = 1 << 20
_FORBIDDEN_XATTRS = ("trusted.overlay.", "user.overlay.")


@attrs.frozen
class ApplyResult:
    """The digest and size of the uncompressed layer (its diff ID)."""

    digest: str
    size: int


def _remove(dirfd: int, name: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dirfd)
    else:
        os.unlink(name, dir_fd=dirfd)


def _mtime_ns(member: tarfile.TarInfo) -> int:
    return int(float(member.mtime) * 1_000_000_000)


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):]
            if name.startswith(_FORBIDDEN_XATTRS):
                log.warning("layer entry %s: ignoring xattr %s", member.name, name)
                continue
            out.append((name, value.encode("utf-8", "surrogateescape")))
    return out


class _LayerApplier:
    """The state of one apply: the target root, lowers, deferred directory times."""

    def __init__(self, target: str, whiteouts: str, lowers: Sequence[str]):
        if whiteouts not in ("overlay", "delete"):
            raise InvalidArgument(f"unknown whiteout mode {whiteouts!r}")
        self.root = ConfinedRoot(target)
        self.overlay = whiteouts == "overlay"
        self.lowers = [ConfinedRoot(p) for p in lowers] if self.overlay else []
        self.dir_times: list[tuple[list[str], int, int]] = []
        self.written: set[str] = set()

    def close(self) -> None:
        self.root.close()
        for lower in self.lowers:
            lower.close()

    # --- parents ---

    def _on_mkdir(self, dirfd: int, name: str, relpath: str) -> None:
        """Attributes of a directory made because an entry needed it."""
        for lower in self.lowers:
            st = lower.lstat(relpath.split("/"))
            if st is not None and stat.S_ISDIR(st.st_mode):
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dirfd, follow_symlinks=False)
                os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dirfd)
                self.dir_times.append((relpath.split("/"), st.st_atime_ns, st.st_mtime_ns))
                return
        os.chmod(name, 0o755, dir_fd=dirfd)

    def _parent(self, parts: Sequence[str], create: bool = True) -> int | None:
        return self.root.walk(parts, create=create, on_mkdir=self._on_mkdir)

    # --- entries ---

    def entry(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = split_name(member.name)
        if not parts:
            return  # the root itself: its attributes belong to the snapshot
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts)
            return
        pfd = self._parent(parts[:-1])
        try:
            self._create(tf, member, pfd, parts)
        finally:
            os.close(pfd)
        self.written.add("/".join(parts))

    def _create(self, tf, member: tarfile.TarInfo, pfd: int, parts: list[str]) -> None:
        base = parts[-1]
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not (member.isdir() and stat.S_ISDIR(st.st_mode)):
            _remove(pfd, base, st)
            st = None
        mode = stat.S_IMODE(member.mode)
        if member.isreg():  # also contiguous and sparse files
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=pfd)
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(tf.extractfile(member), f, _CHUNK)
                os.fchown(fd, member.uid, member.gid)
                os.fchmod(fd, mode)  # after chown, which clears setuid bits
                self._set_xattrs(fd, member)
        elif member.isdir():
            if st is None:
                os.mkdir(base, 0o700, dir_fd=pfd)
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(base, mode, dir_fd=pfd)
            self._set_xattrs(proc_path(pfd, base), member)
            self.dir_times.append((parts, _mtime_ns(member), _mtime_ns(member)))
            return
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=pfd)
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        elif member.islnk():
            self._hardlink(member, pfd, base)
            return  # the inode keeps its own attributes
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = stat.S_IFCHR if member.ischr() else \
                stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor),
                     dir_fd=pfd)
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(base, mode, dir_fd=pfd)
            self._set_xattrs(proc_path(pfd, base), member)
        else:
            raise InvalidArgument(f"layer entry {member.name}: unsupported tar type "
                                  f"{member.type!r}")
        t = _mtime_ns(member)
        os.utime(base, ns=(t, t), dir_fd=pfd, follow_symlinks=False)

    def _set_xattrs(self, target, member: tarfile.TarInfo) -> None:
        for name, value in _xattrs(member):
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, value)
                else:
                    os.setxattr(target, name, value, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise
                log.warning("layer entry %s: cannot set xattr %s: %s", member.name, name,
                            e.strerror)

    def _hardlink(self, member: tarfile.TarInfo, pfd: int, base: str) -> None:
        lparts = split_name(member.linkname)
        if not lparts:
            raise InvalidArgument(f"layer entry {member.name}: hard link to the root")
        tfd = self.root.walk(lparts[:-1])
        try:
            exists = tfd is not None and self._exists(tfd, lparts[-1])
            if not exists:
                if tfd is not None:
                    os.close(tfd)
                tfd = self._copy_up(lparts)
                if tfd is None:
                    raise InvalidArgument(f"layer entry {member.name}: hard link target "
                                          f"{member.linkname} not found")
            os.link(lparts[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            if tfd is not None:
                os.close(tfd)

    @staticmethod
    def _exists(dirfd: int, name: str) -> bool:
        try:
            os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            return True
        except FileNotFoundError:
            return False

    def _copy_up(self, parts: list[str]) -> int | None:
        """Copy a lower layer's file into the upper dir (a hard link to a file
        of an older layer), returning the upper parent's descriptor."""
        for lower in self.lowers:
            lfd = lower.walk(parts[:-1])
            if lfd is None:
                continue
            try:
                try:
                    st = os.stat(parts[-1], dir_fd=lfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                pfd = self._parent(parts[:-1])
                src = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=lfd)
                with os.fdopen(src, "rb") as fsrc:
                    fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o600, dir_fd=pfd)
                    with os.fdopen(fd, "wb") as fdst:
                        shutil.copyfileobj(fsrc, fdst, _CHUNK)
                        os.fchown(fd, st.st_uid, st.st_gid)
                        os.fchmod(fd, stat.S_IMODE(st.st_mode))
                        for name in os.listxattr(src):
                            os.setxattr(fd, name, os.getxattr(src, name))
                        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                return pfd
            finally:
                os.close(lfd)
        return None

    # --- whiteouts ---

    def _whiteout(self, parts: list[str]) -> None:
        base = parts[-1]
        if base == WHITEOUT_OPAQUE:
            self._opaque(parts[:-1])
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): nothing to apply
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", ".."):
            raise InvalidArgument(f"layer entry {'/'.join(parts)}: invalid whiteout")
        pfd = self._parent(parts[:-1], create=self.overlay)
        if pfd is None:
            return  # deleting something below a directory that does not exist
        try:
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None:
                _remove(pfd, name, st)
            if self.overlay:
                os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
        finally:
            os.close(pfd)

    def _opaque(self, dirparts: list[str]) -> None:
        if self.overlay:
            pfd = self._parent(dirparts)
            try:
                os.setxattr(proc_path(pfd), OPAQUE_XATTR, b"y")
            finally:
                os.close(pfd)
            return
        pfd = self._parent(dirparts, create=False)
        if pfd is None:
            return
        prefix = "/".join(dirparts)
        try:
            for name in os.listdir(proc_path(pfd)):
                rel = f"{prefix}/{name}" if prefix else name
                if rel in self.written:
                    continue
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                _remove(pfd, name, st)
        finally:
            os.close(pfd)

    def finish(self) -> None:
        """Set directory times last: every entry written inside changed them."""
        for parts, atime, mtime in reversed(self.dir_times):
            pfd = self.root.walk(parts[:-1])
            if pfd is None:
                continue
            try:
                os.utime(parts[-1], ns=(atime, mtime), dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                pass  # removed by a later whiteout
            finally:
                os.close(pfd)


def apply_layer(stream: BinaryIO, target: str, *, whiteouts: str = "delete",
                lowers: Sequence[str] = ()) -> ApplyResult:
    """Apply the layer read from ``stream`` (tar, gzip, zstd, bzip2 or xz) onto
    the directory ``target``; return the digest and size of the uncompressed
    tar, to check against the image config's ``rootfs.diff_ids``.

    ``whiteouts`` is ``"overlay"`` (target is an overlay upper dir whose lower
    dirs, nearest first, are ``lowers``) or ``"delete"`` (see module doc).
    A malformed layer raises InvalidArgument; what was applied before the bad
    entry stays (the caller discards the snapshot).
    """
    hashing = HashingReader(decompressed(stream))
    applier = _LayerApplier(target, whiteouts, lowers)
    try:
        try:
            with tarfile.open(fileobj=hashing, mode="r|", errorlevel=2) as tf:
                for member in tf:
                    applier.entry(tf, member)
        except tarfile.TarError as e:
            raise InvalidArgument(f"apply layer to {target}: {e}") from None
        except EOFError:
            raise InvalidArgument(f"apply layer to {target}: unexpected end of layer") from None
        applier.finish()
    finally:
        applier.close()
    hashing.drain()  # tar padding after the end-of-archive blocks is part of the diff ID
    return ApplyResult("sha256:" + hashing.hash.hexdigest(), hashing.size)


def overlay_dirs(options: Sequence[str]) -> tuple[str | None, list[str]]:
    """``(upperdir, lowerdirs)`` from overlay mount options."""
    upper, lowers = None, []
    for opt in options:
        key, _, value = opt.partition("=")
        if key == "upperdir":
            upper = value
        elif key == "lowerdir":
            lowers = value.split(":")
    return upper, lowers


class Applier:
    """containerd's Diff.Apply over this store: apply a blob of the content
    store onto the snapshot that ``mounts`` (from ``prepare``) assemble.

    * one ``overlay`` mount: applied straight into its ``upperdir`` with
      overlay whiteouts, the ``lowerdir`` entries consulted for parents;
    * one ``bind`` mount: applied into its source;
    * anything else: mounted on a temporary directory and applied through it.
    """

    def __init__(self, content):
        self.content = content

    def apply(self, desc: Descriptor, mounts: Sequence[Mount]) -> Descriptor:
        """Apply the layer ``desc``; return the descriptor of the uncompressed
        diff (``application/vnd.oci.image.layer.v1.tar``, its digest, size)."""
        if not mounts:
            raise InvalidArgument("apply layer: no mounts given")
        with self.content.open(desc.digest) as blob:
            result = self.apply_stream(blob, mounts)
        return Descriptor(MEDIA_TYPE_LAYER, result.digest, result.size)

    def apply_stream(self, stream: BinaryIO, mounts: Sequence[Mount]) -> ApplyResult:
        """The same as :meth:`apply` for a layer read from a stream."""
        if len(mounts) == 1 and mounts[0].type == "overlay":
            upper, lowers = overlay_dirs(mounts[0].options)
            if upper is None:
                raise FailedPrecondition("apply layer: the overlay mount has no upperdir "
                                         "(a read-only view)")
            return apply_layer(stream, upper, whiteouts="overlay", lowers=lowers)
        if len(mounts) == 1 and mounts[0].type == "bind":
            if "ro" in mounts[0].options:
                raise FailedPrecondition(f"apply layer: bind mount of {mounts[0].source} "
                                         "is read-only")
            if not os.path.isdir(mounts[0].source):
                raise NotFound(f"apply layer: {mounts[0].source}: no such directory")
            return apply_layer(stream, mounts[0].source, whiteouts="delete")
        from pallet.linux.mounts import temp_mount
        with temp_mount(mounts) as root:
            return apply_layer(stream, root, whiteouts="delete")
