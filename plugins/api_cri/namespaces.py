"""A pod's namespaces held without a process: network, IPC and UTS
namespaces pinned by bind mounts of their nsfs files, as ``ip netns add``
pins a network namespace (namespaces(7): a namespace lives while a bind
mount of its /proc/[pid]/ns file does).

They are made by a short-lived thread: unshare(2) of CLONE_NEWNET,
CLONE_NEWIPC and CLONE_NEWUTS acts on the calling thread only, so the
multi-threaded pallet-containerd never forks.  The same thread sets the
pod's hostname and writes its sysctls, which land in the new namespaces
because /proc/sys resolves net, IPC and UTS entries through the writing
task's namespaces (proc(5), /proc/sys/net, /proc/sys/kernel).  Containers
of the pod then join the pinned files through ``linux.namespaces[].path``.
"""
from __future__ import annotations

import os
import socket
import threading

from pallet.core import errors
from pallet.linux import netns
from pallet.linux.syscalls import (CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWUTS, MS_BIND,
                                   mount, unshare)

FLAGS = {"net": CLONE_NEWNET, "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS}
#: directories made shared mount points by this process (once each, not per pod)
_prepared: set[tuple[str, int, int]] = set()
_prepared_lock = threading.Lock()
#: sysctls that live in the IPC namespace (runc's list, from ipc_namespaces(7))
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
               "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def sysctl_namespace(name: str) -> str:
    """Which pinned namespace a sysctl belongs to (runc refuses the others)."""
    if name in IPC_SYSCTLS or name.startswith("fs.mqueue."):
        return "ipc"
    if name.startswith("net."):
        return "net"
    if name in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    raise errors.InvalidArgument(f"sysctl {name!r} is not in a separate kernel namespace")


def check_sysctls(sysctls: dict, kinds) -> None:
    """Refuse a sysctl whose namespace the pod shares with the host."""
    for name in sysctls:
        kind = sysctl_namespace(name)
        if kind not in kinds:
            where = {"net": "host network", "ipc": "host ipc", "uts": "host uts"}[kind]
            raise errors.InvalidArgument(f"sysctl {name!r} not allowed in {where} namespace")


def _write_sysctl(name: str, value: str) -> None:
    path = "/proc/sys/" + name.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise errors.InvalidArgument(f"write sysctl {name}={value}: "
                                     f"{(e.strerror or str(e)).lower()}") from None


def pin(directory: str, prefix: str, kinds, *, hostname: str = "",
        sysctls: dict | None = None) -> dict[str, str]:
    """New namespaces of ``kinds`` (net, ipc, uts), pinned at
    ``directory/prefix-<kind>``; returns kind -> path.  On failure nothing
    is left behind."""
    kinds = [k for k in ("net", "ipc", "uts") if k in kinds]
    sysctls = dict(sysctls or {})
    check_sysctls(sysctls, kinds)
    if not kinds:
        return {}
    _prepare_dir(directory)
    paths = {k: os.path.join(directory, f"{prefix}-{k}") for k in kinds}
    for path in paths.values():
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        os.close(fd)

    def run():
        flags = 0
        for k in kinds:
            flags |= FLAGS[k]
        unshare(flags, "unshare pod namespaces")
        if hostname and "uts" in kinds:
            socket.sethostname(hostname)
        for name, value in sysctls.items():
            _write_sysctl(name, value)
        tid = threading.get_native_id()
        for k, path in paths.items():
            mount(f"/proc/self/task/{tid}/ns/{k}", path, None, MS_BIND)

    try:
        netns.in_thread(run)
    except BaseException:
        unpin(paths)
        raise
    return paths


def _prepare_dir(directory: str) -> None:
    """netns.prepare_dir once per directory (it reads the whole mount table,
    which grows with every pod)."""
    os.makedirs(directory, mode=0o711, exist_ok=True)
    st = os.stat(directory)
    key = (os.path.realpath(directory), st.st_dev, st.st_ino)
    with _prepared_lock:
        if key in _prepared:
            return
        netns.prepare_dir(directory)
        _prepared.add(key)


def unpin(paths: dict) -> None:
    """Unmount and delete pinned namespace files (missing ones are fine)."""
    for path in paths.values():
        try:
            netns.remove(path)
        except OSError:
            pass


_nsfs_dev: list[int] = []


def alive(path: str) -> bool:
    """Whether ``path`` still pins a namespace: a bind mount of a namespace
    file is on nsfs (one device for every namespace), the file left behind
    by an unmount is on its directory's filesystem.  A stat, where reading
    the mount table would cost more with every pod."""
    if not _nsfs_dev:
        _nsfs_dev.append(os.stat("/proc/self/ns/net").st_dev)
    try:
        return os.stat(path).st_dev == _nsfs_dev[0]
    except OSError:
        return False
