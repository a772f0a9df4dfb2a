"""The kernel's same-page merging (KSM, Documentation/admin-guide/mm/ksm.rst):
``ksmd`` finds identical anonymous pages in the mappings marked mergeable and
maps them once, copy-on-write.  The mark is a flag of each mapping: a forked
child inherits it, ``execve`` (a new address space) drops it.  ``ksmd`` runs
while ``/sys/kernel/mm/ksm/run`` is 1."""
from __future__ import annotations

import os

from pallet.linux import ccall

#: madvise(2) advice: may be merged; no longer (merged pages are copied back)
MADV_MERGEABLE = 12
MADV_UNMERGEABLE = 13
#: ksmd's switch: 0 stopped (merged pages stay merged), 1 running, 2 unmerge all
KSM_RUN = "/sys/kernel/mm/ksm/run"
#: mappings that are not ordinary memory of the process's own (or its stack)
_SKIPPED = ("[stack]", "[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]")
#: the end of the user address space on x86-64 with 4-level page tables (and
#: below that of 5 levels): what :func:`unmark_all` covers
_USER_END = 0x7FFFFFFFF000

_madvise = ccall.function("madvise", ccall.c_int, (ccall.c_void_p, ccall.c_size_t, ccall.c_int))


def mark_mergeable() -> int:
    """Mark every private writable mapping of this process (but its stack)
    mergeable; returns the bytes marked, 0 when the kernel has no KSM."""
    marked = 0
    with open("/proc/self/maps", "rb") as f:
        lines = f.read().decode(errors="replace").splitlines()
    for line in lines:
        fields = line.split(maxsplit=5)
        perms = fields[1]
        if perms[1] != "w" or perms[3] != "p" or (len(fields) > 5 and fields[5] in _SKIPPED):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if _madvise(start, end - start, MADV_MERGEABLE) == 0:
            marked += end - start
    return marked


def unmark_all() -> None:
    """Take the mark off every mapping of this process, its merged pages
    copied back: for a process that inherited it and will not ``execve``.
    Needs no /proc (the kernel walks the mappings of the whole range, and says
    ENOMEM for the holes between them, which is no failure here)."""
    _madvise(0, _USER_END, MADV_UNMERGEABLE)


def start() -> bool:
    """Start ``ksmd`` when it is stopped; whether it runs now (False without
    KSM, or when it is unmerging everything: 2, the administrator's word)."""
    try:
        with open(KSM_RUN, "rb") as f:
            state = f.read().strip()
        if state == b"0":
            with open(KSM_RUN, "wb") as f:
                f.write(b"1")
            state = b"1"
    except OSError:
        return False
    return state == b"1"


def merging_pages(pid: int | str = "self") -> int:
    """How many of a process's pages are merged now (``ksm_merging_pages``)."""
    with open(f"/proc/{pid}/ksm_merging_pages", "rb") as f:
        return int(f.read())


def marked_mappings(pid: int | str = "self") -> list[str]:
    """The names of a process's mappings marked mergeable (``mg`` in the
    ``VmFlags`` of ``/proc/<pid>/smaps``; "[anon]" for an unnamed one)."""
    out, name = [], None
    with open(f"/proc/{pid}/smaps", "rb") as f:
        lines = f.read().decode(errors="replace").splitlines()
    for line in lines:
        head = line.split(maxsplit=5)
        if not head:
            continue
        if head[0].endswith(":"):
            if head[0] == "VmFlags:" and "mg" in line.split()[1:]:
                out.append(name)
        else:
            name = head[5].strip() if len(head) > 5 else "[anon]"
    return out
