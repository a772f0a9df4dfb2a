"""The few Linux calls the shim needs that ``os`` lacks: mount(2), umount2(2), prctl(2).

Kept apart from runtime_ns's bindings because the shim must work whichever
runtime plugin fills the runtime role.
"""
from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36

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
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MNT_DETACH = 2

# mount(8) option -> (clear?, flag), as containerd's mount package reads them
_FLAGS = {
    "async": (True, MS_SYNCHRONOUS), "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND), "defaults": (False, 0), "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME), "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC), "mand": (False, MS_MANDLOCK), "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV), "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC), "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME), "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID), "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME), "remount": (False, MS_REMOUNT), "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY), "strictatime": (False, MS_STRICTATIME), "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}
_PROPAGATION = {"private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
                "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
                "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC}


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err).lower()}")


def _b(value):
    return None if value is None else os.fsencode(value)


def mount(source, target, fstype, flags: int = 0, data=None) -> None:
    """mount(2); the error names what was mounted where."""
    if _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)) != 0:
        raise _fail(f"mount {fstype or source or 'none'} on {target}")


def umount2(target, flags: int = 0) -> None:
    if _libc.umount2(_b(target), ctypes.c_int(flags)) != 0:
        raise _fail(f"unmount {target}")


def prctl(option: int, arg2=0) -> None:
    if _libc.prctl(ctypes.c_int(option), arg2, ctypes.c_ulong(0), ctypes.c_ulong(0),
                   ctypes.c_ulong(0)) < 0:
        raise _fail(f"prctl {option}")


def set_child_subreaper() -> None:
    """Adopt the orphans of our descendants (the container's PID 1 among them)."""
    prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1))


def parse_options(options) -> tuple[int, int, str]:
    """mount(8) options -> (flags, propagation flags, data string)."""
    flags = propagation = 0
    data = []
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, propagation, ",".join(data)


def mount_one(mtype: str, source: str, target: str, options) -> None:
    """Mount as mount(8) would with ``-t mtype -o options``; bind mounts honour ro."""
    flags, propagation, data = parse_options(options)
    if mtype in ("bind", "rbind"):
        flags |= MS_BIND | (MS_REC if mtype == "rbind" else 0)
    fstype = None if flags & MS_BIND else mtype
    mount(source, target, fstype, flags & ~MS_RDONLY if flags & MS_BIND else flags,
          data or None)
    # a bind mount ignores every flag but MS_REC on the first call (mount(2),
    # "Creating a bind mount"): read-only and friends need a remount
    if flags & MS_BIND and flags & ~(MS_BIND | MS_REC | MS_REMOUNT):
        mount(None, target, None, flags | MS_REMOUNT)
    if propagation:
        mount(None, target, None, propagation)


def set_process_name(name: str) -> None:
    """Show ``name`` in ps: /proc/self/comm (15 bytes) and the argv area.

    The argv area is the memory between arg_start and arg_end of
    /proc/self/stat (proc(5)); overwriting it through /proc/self/mem changes
    what /proc/self/cmdline (and so ``ps``) shows, as setproctitle does.  The
    new text is cut to the original length, which holds every shim's name
    since the original command line carries the id.
    """
    try:
        prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]))
    except OSError:
        pass
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        start, end = int(fields[45]), int(fields[46])  # fields 48 and 49 of proc(5)
        size = end - start
        if size <= 1:
            return
        raw = name.encode()[:size - 2] + b"\0"
        # a last byte that is not NUL tells the kernel the area was rewritten
        # (fs/proc/base.c, get_mm_cmdline): cmdline then ends at our NUL
        # instead of showing the padding
        pad = size - len(raw)
        data = raw + (b"\0" * (pad - 1) + b" " if pad else b"")
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(data)
    except (OSError, ValueError, IndexError):
        pass  # cosmetic only
