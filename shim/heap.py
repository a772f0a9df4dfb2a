"""Keeping the zygote's pages shared with the shims forked from it.

A shim shares the zygote's memory copy-on-write, and every page either of
them writes after the fork becomes a private copy that the shim pays for.
Two sources of such writes are not the shim's own work and are avoided here:

* Python's ``os.fork`` runs the ``at_fork`` callbacks of every imported
  module in the child (``threading`` rebuilds its locks and thread table,
  ``random`` reseeds, ``logging`` resets its handlers' locks): a few dozen
  functions whose first run in the child writes to their objects, their
  code and their modules' dictionaries, some 550 KiB of pages per shim.
  They exist for a process that forks while other threads hold locks; the
  zygote has no other thread, so :func:`fork` forks without them.
* pymalloc hands out the free blocks of its partly used pools first, and
  after the imports those are scattered over most of the zygote's pools,
  so the shim's first few thousand small objects would each dirty a page
  of its own.  :func:`fill_pools` fills them in the zygote before it
  freezes its objects: the shims' new objects then go to fresh pools, a
  few pages for many objects.

What remains is the shim's own running: every object it touches gets its
reference count written, so the pages of the code, functions, constants
and types it runs become copies, some 2.5 MiB per shim, although most of
them end up holding what the zygote's pages hold (a count goes up during a
call and back down after it), and what every other shim's copies hold.
The kernel's same-page merging (KSM, :mod:`pallet.linux.ksm`) shares such
pages again: the zygote marks its private writable memory mergeable, a
flag of the mappings that every forked shim inherits and that ``execve``
drops, so the containers' processes are never merged with anything (KSM
lets processes whose pages merge learn about each other's contents: here
only pallet's own shims and their zygote share; runtime_ns's builtin init,
which stays the forked process, takes the mark off).  ``ksmd`` merges only
while ``/sys/kernel/mm/ksm/run`` is 1.
pallet-containerd's ``[containerd] shim-memory-merge`` chooses
(:func:`merge_setting`): "on" (the default) marks and starts ``ksmd`` when
it is stopped, "mark" only marks (the host's KSM setting decides), "off"
does neither.
"""
from __future__ import annotations

import os
import re
import sys

#: the objects filling the pools' free blocks (never read; kept so that the blocks stay taken)
_filler: list = []
#: pymalloc's table of size classes in ``sys._debugmallocstats()``:
#: class, size, pools, blocks in use, free blocks
_CLASS_LINE = re.compile(rb"^\s*\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$", re.M)
#: the bytes a ``bytes`` object of length 0 takes from the allocator (header and NUL)
_BYTES_OVERHEAD = sys.getsizeof(b"")


def free_blocks() -> dict[int, int]:
    """pymalloc's free blocks in its used pools, by block size (from
    ``sys._debugmallocstats``, which writes to the C stderr)."""
    fd = os.memfd_create("mallocstats", os.MFD_CLOEXEC)
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(fd, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        data = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    return {int(m.group(1)): int(m.group(2)) for m in _CLASS_LINE.finditer(data)}


def fill_pools() -> int:
    """Take every free block of pymalloc's used pools (see the module
    docstring); returns how many were taken.  Blocks too small for a bytes
    object are taken with floats where they fit one."""
    float_size = sys.getsizeof(0.0)
    taken = 0
    for size, free in sorted(free_blocks().items()):
        if not free:
            continue
        if size - _BYTES_OVERHEAD >= 1:
            one = b"\0" * (size - _BYTES_OVERHEAD - 1)
            objs = [one + b"\0" for _ in range(free)]   # a new object each
        elif size - 16 < float_size <= size:
            objs = [float(i) + 0.5 for i in range(free)]
        else:
            continue
        _filler.append(objs)
        taken += free
    return taken


_fork = None


def fork() -> int:
    """fork(2) without Python's ``at_fork`` callbacks (see the module
    docstring): for a single-threaded process only, where no lock they
    reset can be held.  Returns as ``os.fork``."""
    global _fork
    if _fork is None:
        from pallet.linux import ccall

        # the call keeps the GIL, which the child then holds, as after os.fork
        _fork = ccall.function("fork", ccall.c_int, (), keep_gil=True)
    pid = _fork()
    if pid < 0:
        from pallet.linux import ccall

        err = ccall.get_errno()
        raise OSError(err, os.strerror(err))
    return pid


#: the values of ``[containerd] shim-memory-merge``, the default first
MERGE_SETTINGS = ("on", "mark", "off")


def merge_setting(config) -> str:
    """``[containerd] shim-memory-merge`` of ``config`` (a
    :class:`pallet.core.config.Config`), checked."""
    from pallet.core import errors

    value = config.section("containerd").get("shim-memory-merge", MERGE_SETTINGS[0])
    if value not in MERGE_SETTINGS:
        raise errors.ConfigError(f"configuration: [containerd] shim-memory-merge must be one "
                                 f"of {', '.join(map(repr, MERGE_SETTINGS))}, not {value!r}")
    return value
