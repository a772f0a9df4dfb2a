"""Thin bindings to the Linux calls Python 3.11 lacks (through
:mod:`pallet.linux.ccall`).

``os.unshare``/``os.setns`` only arrived in 3.12, and mount(2), umount2(2),
pivot_root(2), sethostname(2), prctl(2) and capset(2) were never in ``os``.
Every wrapper raises ``OSError`` with the errno and a lower-case message that
names the operation and its object, so that the child side can send it back
to the parent as is.

This module is imported by the container process before pivot_root: it must
not import anything lazily.
"""
from __future__ import annotations

import os

from pallet.linux.ccall import Structure, byref, c_int, c_long, c_size_t, c_uint32, c_ulong
from pallet.linux.ccall import get_errno, libc as _libc
from pallet.plugins.runtime_ns.errtext import (
    describe)  # noqa: F401  (re-exported for the child side)

# --- namespaces, mount(2), umount2(2), prctl(2), capabilities: shared with the
# shim, the image store, palletd and the network plugin (re-exported here) -------
from pallet.linux.syscalls import (  # noqa: E402,F401
    CAP_NUMBERS, CAPABILITIES, CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS,
    CLONE_NEWPID, CLONE_NEWTIME, CLONE_NEWUSER, CLONE_NEWUTS, MNT_DETACH, MS_BIND,
    MS_DIRSYNC, MS_MANDLOCK, MS_MOVE,
    MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_NOSYMFOLLOW, MS_PRIVATE,
    MS_RDONLY, MS_REC, MS_RELATIME, MS_REMOUNT, MS_SHARED, MS_SILENT, MS_SLAVE,
    MS_STRICTATIME, MS_SYNCHRONOUS, MS_UNBINDABLE, encode as _b, fail as _fail, mount, prctl,
    set_child_subreaper, setns, umount2, unshare)

#: OCI namespace type -> (clone flag, name under /proc/<pid>/ns)
NAMESPACES = {
    "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"),
    "mount": (CLONE_NEWNS, "mnt"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "user": (CLONE_NEWUSER, "user"),
    "time": (CLONE_NEWTIME, "time"),
}

# --- prctl(2) -------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYSCALLS = {
    # machine -> (pivot_root, capget, capset)
    "x86_64": (155, 125, 126),
    "aarch64": (41, 90, 91),
    "ppc64le": (203, 183, 184),
    "s390x": (217, 184, 185),
    "riscv64": (41, 90, 91),
}
_SYS_PIVOT_ROOT, _SYS_CAPGET, _SYS_CAPSET = _SYSCALLS.get(os.uname().machine, (155, 125, 126))


def rmount(source, target, fstype=None, flags: int = 0, data=None, procfd=None) -> None:
    """mount(2) with runc's words for a failure ("mount SRC:DST (via FD), flags:
    0x.., data: ..: why"); ``procfd``: the /proc/self/fd path mounted on."""
    if _libc.mount(_b(source), _b(procfd or target), _b(fstype), c_ulong(flags),
                   _b(data)) != 0:
        err = get_errno()
        text = "mount " + (f"{source}:{target}" if source else str(target))
        if procfd:
            text += f" (via {procfd})"
        if flags:
            text += f", flags: 0x{flags:x}"
        if data:
            text += f", data: {data}"
        raise OSError(err, f"{text}: {os.strerror(err).lower()}")


def pivot_root(new_root, put_old) -> None:
    if _libc.syscall(c_long(_SYS_PIVOT_ROOT), _b(new_root), _b(put_old)) != 0:
        raise _fail(f"pivot_root {new_root}")


def sethostname(name: str) -> None:
    raw = name.encode()
    if _libc.sethostname(raw, c_size_t(len(raw))) != 0:
        raise _fail("sethostname")


# --- capabilities ----------------------------------------------------------------------

def _read_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(CAPABILITIES) - 1


#: read once, in the runtime's own mount namespace: a process that has joined
#: a container must never trust the container's /proc (it may be a fake one
#: that says 0 so that no capability gets dropped from the bounding set)
_LAST_CAP = _read_last_cap()


def last_cap() -> int:
    """The highest capability number the running kernel knows (read at import)."""
    return _LAST_CAP


def cap_mask(names) -> int:
    """Bit mask of capability names (``CAP_CHOWN``); runc skips the names it
    does not know and those the kernel lacks (see ``unknown_capabilities``)."""
    mask = 0
    for name in names or ():
        number = CAP_NUMBERS.get(name)
        if number is not None and number <= _LAST_CAP:
            mask |= 1 << number
    return mask


def unknown_capabilities(caps: dict) -> set[str]:
    """Names in any set of ``process.capabilities`` that are no capability (runc
    knows them by their exact upper-case names) or one above the kernel's last."""
    out = set()
    for key in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        for name in caps.get(key) or ():
            number = CAP_NUMBERS.get(name)
            if number is None or number > _LAST_CAP:
                out.add(name)
    return out


class _CapHeader(Structure):
    _fields_ = [("version", c_uint32), ("pid", c_int)]


class _CapData(Structure):
    _fields_ = [("effective", c_uint32), ("permitted", c_uint32),
                ("inheritable", c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) on the calling thread with 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    if _libc.syscall(c_long(_SYS_CAPSET), byref(header), data) != 0:
        raise _fail("capset")


def apply_capabilities(caps: dict | None) -> None:
    """Drop every capability not named in the OCI ``process.capabilities``.

    Must run after the user switch (done with PR_SET_KEEPCAPS so that the
    permitted set survives setuid, capabilities(7) "effect of user ID changes").
    """
    caps = caps or {}
    effective = cap_mask(caps.get("effective"))
    permitted = cap_mask(caps.get("permitted"))
    inheritable = cap_mask(caps.get("inheritable"))
    capset(effective, permitted, inheritable)
    ambient = cap_mask(caps.get("ambient"))
    if ambient:
        for n in range(last_cap() + 1):
            if ambient >> n & 1:
                try:
                    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, n)
                except OSError:
                    # runc ignores ambient capabilities that are not also
                    # permitted and inheritable (EPERM): do the same
                    pass


def drop_bounding_set(caps: dict | None) -> None:
    """Drop from the bounding set every capability not in ``bounding``."""
    keep = cap_mask((caps or {}).get("bounding"))
    for n in range(last_cap() + 1):
        if not keep >> n & 1:
            try:
                prctl(PR_CAPBSET_DROP, n)
            except OSError as e:
                if e.errno != 22:  # EINVAL: the kernel does not know this one
                    raise


# --- networking: bring "lo" up in a new network namespace ------------------------------

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up() -> None:
    """``ip link set lo up`` without a subprocess: SIOCSIFFLAGS on a socket."""
    import fcntl  # noqa: imported by process.py before any pivot_root
    import struct

    fd = _libc.socket(2, 2 | 0o2000000, 0)  # AF_INET, SOCK_DGRAM|SOCK_CLOEXEC
    if fd < 0:
        raise _fail("socket")
    try:
        req = bytearray(struct.pack("16sh14x", b"lo", 0))
        fcntl.ioctl(fd, _SIOCGIFFLAGS, req, True)
        flags = struct.unpack_from("h", req, 16)[0]
        struct.pack_into("h", req, 16, flags | _IFF_UP)
        fcntl.ioctl(fd, _SIOCSIFFLAGS, req, True)
    except OSError as e:
        raise OSError(e.errno, f"set loopback up: {os.strerror(e.errno).lower()}") from None
    finally:
        os.close(fd)
