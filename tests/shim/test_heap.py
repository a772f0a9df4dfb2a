"""pallet.shim.heap: what the zygote does so that its shims keep its pages shared."""
from __future__ import annotations

import os

from pallet.shim import heap

#: set in a child by the at-fork callback below (os.fork runs it, heap.fork must not)
_ran_in_child = []
os.register_at_fork(after_in_child=lambda: _ran_in_child.append(True))


def test_free_blocks_has_every_pymalloc_size_class():
    blocks = heap.free_blocks()
    assert sorted(blocks) == list(range(16, 513, 16))
    assert all(n >= 0 for n in blocks.values())


def test_fill_pools_takes_free_blocks_and_keeps_them():
    kept = len(heap._filler)
    taken = heap.fill_pools()
    assert taken > 0
    assert sum(len(objs) for objs in heap._filler[kept:]) == taken


def _child_reports(fork) -> bytes:
    r, w = os.pipe()
    pid = fork()
    if pid == 0:
        os.write(w, b"ran" if _ran_in_child else b"not")
        os._exit(7)
    os.close(w)
    try:
        answer = os.read(r, 16)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7
    return answer


def test_fork_skips_the_at_fork_callbacks_os_fork_runs():
    assert _child_reports(os.fork) == b"ran"
    assert _child_reports(heap.fork) == b"not"
    assert not _ran_in_child   # the parent's list: neither ran it here
