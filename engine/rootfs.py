"""A container's filesystem as palletd reaches it, and paths resolved safely
inside it.

- A running container's filesystem is ``/proc/<pid>/root``: its root as its
  PID 1 sees it, volumes and binds included.
- A stopped one's is its snapshot mounted by palletd for the time of the
  operation, under the exec root: read-only as an overlay whose lower layers
  are the snapshot's upper dir and its parents (nothing is written, and no
  upper dir is taken), or writable with the snapshot's own mount options.

Paths inside are resolved with openat2(2) ``RESOLVE_IN_ROOT``: ``..`` and
absolute symlinks stop at the container's root, so that a symlink planted in
the container can never lead palletd to a host file (CVE-2018-15664,
CVE-2019-14271 are the docker cp escapes this guards against).
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil

from pallet.core import errors
from pallet.linux import ccall
from pallet.linux.syscalls import (MNT_DETACH, MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, mount,
                                   umount2)

_libc = ccall.libc

SYS_OPENAT2 = 437          # the same number on every architecture (new syscall table)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ccall.Structure):
    _fields_ = [("flags", ccall.c_uint64), ("mode", ccall.c_uint64),
                ("resolve", ccall.c_uint64)]


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    mount(source or None, target, fstype, flags, data or None)


def umount(target: str) -> None:
    try:
        umount2(target, MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise


def _options(m) -> list[str]:
    return list(getattr(m, "options", None) or (m.get("options") if isinstance(m, dict) else [])
                or [])


def _attr(m, name: str) -> str:
    return getattr(m, name, None) or (m.get(name) if isinstance(m, dict) else "") or ""


def mount_snapshot(mounts, target: str, *, writable: bool) -> None:
    """Mount a snapshot's mounts (containerd's, one overlay or one bind) at ``target``."""
    if len(mounts) != 1:
        raise errors.PalletError(f"snapshot has {len(mounts)} mounts, expected 1")
    m = mounts[0]
    mtype, source, opts = _attr(m, "type"), _attr(m, "source"), _options(m)
    if mtype == "overlay":
        upper = next((o.split("=", 1)[1] for o in opts if o.startswith("upperdir=")), "")
        lower = next((o.split("=", 1)[1] for o in opts if o.startswith("lowerdir=")), "")
        if writable:
            data = ",".join(o for o in opts if o not in ("ro", "rw"))
            _mount("overlay", target, "overlay", 0, data)
        else:
            # the upper dir as the top lower layer: a read-only view that takes
            # no upper dir (a running container keeps its own)
            layers = ":".join(x for x in (upper, lower) if x)
            if ":" not in layers:
                _mount(layers, target, None, MS_BIND | MS_REC, None)
                _mount("", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
            else:
                _mount("overlay", target, "overlay", MS_RDONLY, f"lowerdir={layers}")
    elif mtype == "bind" or "bind" in opts or "rbind" in opts:
        _mount(source, target, None, MS_BIND | MS_REC, None)
        if not writable or "ro" in opts:
            _mount("", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
    else:
        raise errors.PalletError(f"cannot mount a snapshot of type {mtype}")


class Mounted:
    """A directory under ``base`` where a snapshot (plus binds) is mounted until
    :meth:`close`."""

    def __init__(self, base: str):
        self.path = os.path.join(base, "m-" + secrets.token_hex(6))
        self._mounts: list[str] = []

    def mount_snapshot(self, mounts, *, writable: bool) -> None:
        os.makedirs(self.path, mode=0o700)
        mount_snapshot(mounts, self.path, writable=writable)
        self._mounts.append(self.path)

    def bind(self, source: str, dest_in_root: str, *, readonly: bool) -> None:
        """Bind ``source`` at ``dest_in_root`` (a path inside, made if missing)."""
        fd = resolve(self.root_fd(), dest_in_root, create_dirs=True)
        try:
            target = f"/proc/self/fd/{fd}"
            _mount(source, target, None, MS_BIND | MS_REC, None)
            real = os.readlink(target)
        finally:
            os.close(fd)
        self._mounts.append(real)
        if readonly:
            _mount("", real, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)

    def root_fd(self) -> int:
        return os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        for target in reversed(self._mounts):
            try:
                umount(target)
            except OSError:
                pass
        self._mounts.clear()
        try:
            os.rmdir(self.path)
        except OSError:
            shutil.rmtree(self.path, ignore_errors=True)


# --- resolution inside a root --------------------------------------------------

def openat2(dirfd: int, path: str, flags: int, resolve_flags: int = RESOLVE_IN_ROOT,
            mode: int = 0) -> int:
    how = _OpenHow(flags=flags | os.O_CLOEXEC, mode=mode,
                   resolve=resolve_flags | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(SYS_OPENAT2, dirfd, path.encode(), ccall.byref(how),
                       ccall.sizeof(how))
    if fd < 0:
        e = ccall.get_errno()
        raise OSError(e, os.strerror(e), path)
    return fd


def clean(path: str) -> str:
    """An absolute, normalised path inside the container (``..`` cannot climb out)."""
    if "\x00" in (path or ""):
        raise errors.InvalidArgument(f"invalid path {path!r}: it holds a NUL byte")
    return os.path.normpath("/" + (path or "/")).replace("//", "/")


def resolve(root_fd: int, path: str, *, follow_last: bool = True,
            create_dirs: bool = False) -> int:
    """An ``O_PATH`` fd of ``path`` inside the root, symlinks resolved in it.

    ``follow_last=False`` leaves a final symlink itself (``docker cp c:/link``
    copies the link).  ``create_dirs`` makes missing directories (mode 0755)."""
    rel = clean(path).lstrip("/") or "."
    if create_dirs:
        parts = [p for p in rel.split("/") if p and p != "."]
        cur = os.dup(root_fd)
        try:
            for p in parts:
                try:
                    nxt = openat2(cur, p, os.O_PATH | os.O_DIRECTORY)
                except FileNotFoundError:
                    dfd = openat2(cur, ".", os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.mkdir(p, 0o755, dir_fd=dfd)
                    except FileExistsError:
                        pass
                    finally:
                        os.close(dfd)
                    nxt = openat2(cur, p, os.O_PATH | os.O_DIRECTORY)
                os.close(cur)
                cur = nxt
            return cur
        except BaseException:
            os.close(cur)
            raise
    if follow_last or rel == ".":
        return openat2(root_fd, rel, os.O_PATH)
    parent, _, name = rel.rpartition("/")
    pfd = openat2(root_fd, parent or ".", os.O_PATH | os.O_DIRECTORY)
    try:
        return openat2(pfd, name, os.O_PATH | os.O_NOFOLLOW)
    finally:
        os.close(pfd)


def scoped_path(root_fd: int, path: str) -> str:
    """``path`` with its symlinks followed inside the root, as far as it exists
    (the missing rest is appended as written): where a link points, even
    when nothing is there (docker's FollowSymlinkInScope)."""
    parts = [p for p in clean(path).split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        cur = "/".join(done + [name])
        try:
            fd = openat2(root_fd, cur, os.O_PATH | os.O_NOFOLLOW)
        except FileNotFoundError:
            return "/" + "/".join(done + [name] + parts)
        except OSError:
            return "/" + "/".join(done + [name] + parts)
        try:
            st_mode = os.fstat(fd).st_mode
            target = os.readlink("", dir_fd=fd) if (st_mode & 0o170000) == 0o120000 else None
        except OSError:
            target = None
        finally:
            os.close(fd)
        if target is None:
            done.append(name)
            continue
        hops += 1
        if hops > 40:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
        if target.startswith("/"):
            done = []
        parts = [p for p in target.split("/") if p and p != "."] + parts
    return "/" + "/".join(done)


def resolved_path(root_fd: int, path: str) -> str:
    """The absolute path inside the root that ``path`` resolves to (symlinks followed)."""
    fd = resolve(root_fd, path)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
        root = os.readlink(f"/proc/self/fd/{root_fd}")
    finally:
        os.close(fd)
    if root == "/":
        return real
    if real == root:
        return "/"
    if real.startswith(root + "/"):
        return real[len(root):]
    return clean(path)


@contextlib.contextmanager
def opened_root(path: str):
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)
