"""Mounting the ``Mount`` lists snapshotters return (containerd's mount package).

A :class:`pallet.core.models.Mount` is ``(type, source, options)`` with
options as mount(8) spells them: flags (``ro``, ``rbind``, ``nosuid``...),
propagation (``rprivate``...) and filesystem data (``lowerdir=...``).
:func:`mount_all` turns them into mount(2) calls as containerd does:

* bind mounts made read-only need a second ``MS_REMOUNT|MS_BIND|MS_RDONLY``
  call (mount(2): the read-only flag is ignored on the first bind call);
* overlay data longer than a page is refused by the kernel, so, like
  containerd, a child process chdirs into the common parent of the layers and
  mounts with relative paths (``chdir`` is per process; doing it in a
  thread of pallet-containerd would race with the other threads).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import tempfile
from typing import Iterator, Sequence

from pallet.core.models import Mount

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 0x2

# option -> (clear?, flag), as in containerd's mount_linux.go
_FLAGS = {
    "async": (True, MS_SYNCHRONOUS), "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND), "defaults": (False, 0), "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME), "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC), "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME), "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME), "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK), "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME), "nosuid": (False, MS_NOSUID),
    "rbind": (False, MS_BIND | MS_REC), "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT), "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "strictatime": (False, MS_STRICTATIME), "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}
_PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}

_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return _libc


def parse_options(options: Sequence[str]) -> tuple[int, int, str]:
    """``(flags, propagation flags, data)`` of mount(8)-style options."""
    flags, prop, data = 0, 0, []
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION:
            prop |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def _sys_mount(source: str | None, target: str, fstype: str | None, flags: int,
               data: str | None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    if _lib().mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {fstype or 'bind'} {source} on {target}: "
                         f"{os.strerror(e).lower()}")


def _compact_overlay(data: str) -> tuple[str, str] | None:
    """Overlay data with the layer paths made relative to their common parent,
    and that parent; None when they share nothing useful."""
    parts = data.split(",")
    paths = []
    for p in parts:
        key, _, value = p.partition("=")
        if key in ("lowerdir", "upperdir", "workdir"):
            paths.extend(value.split(":"))
    if not paths:
        return None
    common = os.path.commonpath(paths)
    if common in ("/", ""):
        return None
    out = []
    for p in parts:
        key, sep, value = p.partition("=")
        if key in ("lowerdir", "upperdir", "workdir"):
            value = ":".join(os.path.relpath(v, common) for v in value.split(":"))
        out.append(key + sep + value)
    return ",".join(out), common


def _mount_in_child(cwd: str, source: str, target: str, fstype: str, flags: int,
                    data: str) -> None:
    target = os.path.abspath(target)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.chdir(cwd)
            _sys_mount(source, target, fstype, flags, data)
        except OSError as e:
            code = e.errno or 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise OSError(code, f"mount {fstype} {source} on {target}: {os.strerror(code).lower()}")


def mount(m: Mount, target: str) -> None:
    """Mount one :class:`Mount` on ``target`` (which must exist)."""
    flags, prop, data = parse_options(m.options)
    pagesize = os.sysconf("SC_PAGESIZE")
    if m.type == "overlay" and len(data) > pagesize - 512:
        compact = _compact_overlay(data)
        if compact is None or len(compact[0]) > pagesize - 512:
            raise OSError(errno.E2BIG, f"mount overlay on {target}: options too long")
        _mount_in_child(compact[1], m.source, target, m.type, flags, compact[0])
    else:
        fstype = None if flags & MS_BIND else m.type
        _sys_mount(m.source, target, fstype, flags, data or None)
    if flags & MS_BIND and flags & MS_RDONLY:
        # mount(2): MS_RDONLY is ignored when creating a bind mount
        _sys_mount(None, target, None, MS_REMOUNT | MS_BIND | (flags & ~MS_REC), None)
    if prop:
        _sys_mount(None, target, None, prop, None)


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Mount every mount of the list on ``target`` in order (containerd's mount.All);
    on failure, what was mounted is unmounted again."""
    done = 0
    try:
        for m in mounts:
            mount(m, target)
            done += 1
    except BaseException:
        for _ in range(done):
            unmount(target, detach=True)
        raise


def unmount(target: str, detach: bool = False) -> None:
    """Unmount ``target`` once (EINVAL, "not mounted", is reported)."""
    if _lib().umount2(os.fsencode(target), MNT_DETACH if detach else 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"unmount {target}: {os.strerror(e).lower()}")


def unmount_all(target: str, detach: bool = False) -> None:
    """Unmount everything stacked on ``target``; nothing mounted is fine."""
    while True:
        try:
            unmount(target, detach)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise


@contextlib.contextmanager
def temp_mount(mounts: Sequence[Mount], parent: str | None = None) -> Iterator[str]:
    """Mount ``mounts`` on a fresh directory for the duration of the block
    (containerd's mount.WithTempMount); always unmounted and removed after."""
    path = tempfile.mkdtemp(prefix="pallet-mount-", dir=parent)
    try:
        mount_all(mounts, path)
        try:
            yield path
        finally:
            unmount_all(path, detach=True)
    finally:
        os.rmdir(path)
