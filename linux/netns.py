"""Named network namespaces without spawning ``ip``.

A sandbox is a network namespace kept alive by a bind mount of its nsfs file
onto a plain file under the exec root, as ``ip netns add`` does under
/run/netns.  It is made by a short-lived thread: unshare(CLONE_NEWNET) acts on
the calling thread only (a network namespace is per task, see unshare(2)), so
no fork of the daemon is needed, and the thread's end leaves the daemon's own
threads where they were.  Work inside a namespace (configuring its links,
opening the DNS socket) runs the same way: a thread that setns(2)es in, does
the work, and ends.  Sockets opened there stay in that namespace for life
(socket(7): a socket belongs to the namespace it was created in).

Python 3.11 has no ``os.unshare``/``os.setns``: ctypes.
"""
from __future__ import annotations

import errno
import os
import threading

from pallet.linux.syscalls import (CLONE_NEWNET, MNT_DETACH, MS_BIND, MS_REC, MS_SHARED,
                                   mount, setns, umount2, unshare)


def _mount(source, target: str, flags: int) -> None:
    mount(source, target, None, flags)


def in_thread(fn, *args):
    """Run ``fn(*args)`` in a new thread and return its result (or raise its error)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 — handed back to the caller
            box["error"] = e

    t = threading.Thread(target=run, name="pallet-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _is_mountpoint(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def prepare_dir(directory: str) -> None:
    """Make the directory that holds the namespace files a shared mount point
    (bound on itself), as iproute2 does for /run/netns: an unmount there then
    reaches the copies that mount namespaces made later hold, so a removed
    sandbox is really freed."""
    os.makedirs(directory, mode=0o711, exist_ok=True)
    directory = os.path.realpath(directory)
    if not _is_mountpoint(directory):
        _mount(directory, directory, MS_BIND | MS_REC)
    try:
        _mount(None, directory, MS_SHARED | MS_REC)
    except OSError:
        pass  # a private mount point still works; only propagation is lost


def release_dir(directory: str) -> None:
    """Undo :func:`prepare_dir` (the namespace files must be gone already)."""
    directory = os.path.realpath(directory)
    if os.path.isdir(directory) and _is_mountpoint(directory):
        try:
            umount2(directory, MNT_DETACH)
        except OSError:
            pass


def create(path: str, then=None):
    """Make a new network namespace and bind it at ``path``.

    ``then``, if given, runs inside the new namespace (in the same thread)
    and its result is returned; on failure the namespace is removed again.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    except FileExistsError:
        raise FileExistsError(f"create network namespace {path}: file exists") from None
    os.close(fd)

    def run():
        unshare(CLONE_NEWNET, "unshare network namespace")
        _mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, MS_BIND)
        return then() if then is not None else None

    try:
        return in_thread(run)
    except BaseException:
        remove(path)
        raise


def remove(path: str) -> None:
    """Unmount and delete a namespace file (missing is fine)."""
    try:
        umount2(path, MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):  # not mounted / gone
            raise OSError(e.errno, f"unmount network namespace {path}: "
                                   f"{os.strerror(e.errno).lower()}") from None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def run_in(path: str, fn, *args):
    """Run ``fn(*args)`` in a thread that joined the namespace at ``path``."""
    def run():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise OSError(e.errno, f"open network namespace {path}: "
                                   f"{os.strerror(e.errno).lower()}") from None
        try:
            setns(fd, CLONE_NEWNET, path)
        finally:
            os.close(fd)
        return fn(*args)

    return in_thread(run)


def inode(path: str) -> int | None:
    """The namespace inode a file refers to (None when it is not a namespace)."""
    if not is_namespace(path):
        return None
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in(path: str) -> list[int]:
    """Pids whose network namespace is the one bound at ``path``."""
    want = inode(path)
    if want is None:
        return []
    want_link = f"net:[{want}]"
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/net") == want_link:
                out.append(int(entry))
        except OSError:
            continue
    return out


def is_namespace(path: str) -> bool:
    """Whether ``path`` is a bound network namespace (not just the empty file)."""
    try:
        with open("/proc/self/mountinfo") as f:
            real = os.path.realpath(path)
            return any(line.split()[4] == real for line in f)
    except OSError:
        return False
