"""The one asyncio loop of api_cri, on a thread of its own: it copies every
container's output into its log, feeds attached clients and runs the
streaming server.  pallet-containerd's gRPC methods run on a thread pool
and hand work to it with :meth:`IOLoop.call` (wait for a result) or
:meth:`IOLoop.soon` (fire and forget)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

log = logging.getLogger("pallet.cri.io")


class IOLoop:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="cri-io", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, fn, *args, timeout: float | None = 30.0):
        """Run ``fn(*args)`` (a function or a coroutine function) on the loop and
        return its result; on the loop thread itself it just runs it."""
        if self.in_loop():
            raise RuntimeError("IOLoop.call from the loop thread")

        async def wrapper():
            out = fn(*args)
            if asyncio.iscoroutine(out):
                out = await out
            return out
        fut = asyncio.run_coroutine_threadsafe(wrapper(), self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    def soon(self, fn, *args) -> None:
        """Schedule ``fn(*args)`` on the loop (from any thread)."""
        if self.in_loop():
            self.loop.call_soon(fn, *args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def spawn(self, coro) -> concurrent.futures.Future:
        """Run a coroutine on the loop; its future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
