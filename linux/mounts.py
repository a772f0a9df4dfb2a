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
import errno
import os
import tempfile
from typing import Iterator, Sequence

from pallet.core.models import Mount
from pallet.linux.syscalls import (MNT_DETACH, mount as _sys_mount, mount_options,
                                   parse_options, umount2)


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
        if prop:
            _sys_mount(None, target, None, prop)
    else:
        mount_options(m.type, m.source, target, m.options)


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
    umount2(target, MNT_DETACH if detach else 0)


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
