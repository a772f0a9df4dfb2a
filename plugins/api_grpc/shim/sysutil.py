"""The Linux calls the shim needs that ``os`` lacks (from :mod:`pallet.linux`,
not runtime_ns: the shim works whichever plugin fills the runtime role), and
the process title."""
from __future__ import annotations

from pallet.linux.syscalls import (  # noqa: F401  (what the shim uses)
    MNT_DETACH, mount_options as mount_one, set_child_subreaper, set_name, umount2)


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
