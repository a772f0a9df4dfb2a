"""The one thread that does the networking plugins' system work.

pyroute2's synchronous API runs an asyncio loop of its own and refuses to
run inside palletd's (already running) loop, and python-iptables caches one
libiptc handle per table and is not thread-safe.  So every netlink and
iptables call of net_bridge and net_proxy runs on this single long-lived
thread: callers hand it a function and wait for the result.  That also
serialises the plugins' state changes, so no further locking is needed, and
gives pallet-proxy processes a parent thread that lives as long as the
daemon (their PR_SET_PDEATHSIG fires when the thread that spawned them ends).
"""
from __future__ import annotations

import concurrent.futures
import threading

_lock = threading.Lock()
_worker: "Worker | None" = None


class Worker:
    def __init__(self, name: str = "pallet-net"):
        self._ident: int | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=self._mark)

    def _mark(self) -> None:
        self._ident = threading.get_ident()

    def on_worker(self) -> bool:
        return threading.get_ident() == self._ident

    def call(self, fn, *args, **kwargs):
        """Run ``fn`` on the worker thread and return its result (re-entrant)."""
        if self.on_worker():
            return fn(*args, **kwargs)
        return self._pool.submit(fn, *args, **kwargs).result()

    def submit(self, fn, *args, **kwargs) -> concurrent.futures.Future:
        """Queue ``fn`` without waiting (warm-up work)."""
        return self._pool.submit(fn, *args, **kwargs)


def get() -> Worker:
    """The process-wide worker (shared by net_bridge and net_proxy)."""
    global _worker
    with _lock:
        if _worker is None:
            _worker = Worker()
        return _worker
