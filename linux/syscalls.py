"""unshare(2), setns(2), mount(2), umount2(2) and prctl(2) through the C
library (:mod:`pallet.linux.ccall`), and mount(8)'s options.

Python 3.11's ``os`` has none of these calls (unshare and setns arrive in
3.12).  Every wrapper raises ``OSError`` with the errno and a lower-case
message naming the operation and its object.  The container process imports
this module before pivot_root, so it imports nothing lazily.
"""
from __future__ import annotations

import os

from pallet.linux.ccall import c_char_p, c_int, c_ulong, get_errno, libc as _libc

# --- namespaces (sched.h) ---------------------------------------------------------
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# --- mount(2) flags (sys/mount.h) ---------------------------------------------------
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2

# --- prctl(2) -------------------------------------------------------------------------
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36

#: the capabilities by number (linux/capability.h)
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAP_NUMBERS = {name: i for i, name in enumerate(CAPABILITIES)}

#: mount(8) option -> (clears the flag?, flag), as runc and containerd read them
MOUNT_FLAGS = {
    "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID), "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV), "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC), "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS), "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "remount": (False, MS_REMOUNT),
    "mand": (False, MS_MANDLOCK), "nomand": (True, MS_MANDLOCK),
    "atime": (True, MS_NOATIME), "noatime": (False, MS_NOATIME),
    "diratime": (True, MS_NODIRATIME), "nodiratime": (False, MS_NODIRATIME),
    "relatime": (False, MS_RELATIME), "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME), "nostrictatime": (True, MS_STRICTATIME),
    "nosymfollow": (False, MS_NOSYMFOLLOW), "symfollow": (True, MS_NOSYMFOLLOW),
    "bind": (False, MS_BIND), "rbind": (False, MS_BIND | MS_REC),
    "silent": (False, MS_SILENT), "loud": (True, MS_SILENT),
    "iversion": (False, MS_I_VERSION), "noiversion": (True, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME), "nolazytime": (True, MS_LAZYTIME),
    "defaults": (False, 0),
}
#: propagation option -> flags (applied by a mount(2) call of their own)
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}


def fail(what: str) -> OSError:
    """The OSError for the call that just failed (the errno it left)."""
    err = get_errno()
    return OSError(err, f"{what}: {os.strerror(err).lower()}")


def encode(value) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int, what: str = "unshare") -> None:
    """unshare(2) for the calling thread."""
    if _libc.unshare(c_int(flags)) != 0:
        raise fail(what)


def setns(fd: int, nstype: int = 0, what: str = "namespace") -> None:
    """setns(2): join the namespace ``fd`` refers to."""
    if _libc.setns(c_int(fd), c_int(nstype)) != 0:
        raise fail(f"setns {what}")


def mount(source, target, fstype, flags: int = 0, data=None, shown=None) -> None:
    """mount(2); the error names the source (or type) and the target (``shown``
    when the target is a /proc/self/fd link)."""
    if _libc.mount(encode(source), encode(target), encode(fstype), c_ulong(flags),
                   encode(data)) != 0:
        raise fail(f"mount {source or fstype or 'none'} on {shown or target}")


def umount2(target, flags: int = 0) -> None:
    if _libc.umount2(encode(target), c_int(flags)) != 0:
        raise fail(f"unmount {target}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    res = _libc.prctl(c_int(option), c_ulong(arg2), c_ulong(arg3),
                      c_ulong(arg4), c_ulong(arg5))
    if res < 0:
        raise fail(f"prctl {option}")
    return res


def set_name(name: str) -> None:
    """The calling thread's name (``comm``, at most 15 bytes): PR_SET_NAME."""
    if _libc.prctl(c_int(PR_SET_NAME), c_char_p(name.encode()[:15]),
                   c_ulong(0), c_ulong(0), c_ulong(0)) < 0:
        raise fail("prctl PR_SET_NAME")


def set_child_subreaper(on: bool = True) -> None:
    """Adopt the orphans of our descendants (PR_SET_CHILD_SUBREAPER)."""
    prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0)


def parse_options(options) -> tuple[int, int, str]:
    """mount(8) options -> (mount flags, propagation flags, filesystem data)."""
    flags = propagation = 0
    data = []
    for opt in options or ():
        if opt in MOUNT_FLAGS:
            clear, flag = MOUNT_FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in PROPAGATION:
            propagation |= PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, propagation, ",".join(data)


def mount_options(mtype: str, source, target: str, options) -> None:
    """Mount as ``mount -t mtype -o options source target`` would: a bind mount
    (type bind/rbind or the option) honours ro, nosuid and the like through a
    second, remounting call (mount(2): the first bind call ignores them), and
    the propagation is set by a call of its own."""
    flags, propagation, data = parse_options(options)
    if mtype in ("bind", "rbind"):
        flags |= MS_BIND | (MS_REC if mtype == "rbind" else 0)
    bind = bool(flags & MS_BIND)
    mount(source, target, None if bind else mtype, flags & ~MS_RDONLY if bind else flags,
          data or None)
    if bind and flags & ~(MS_BIND | MS_REC | MS_REMOUNT):
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
        set_name(name)
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
