"""The shim's one thread: a poll loop over file descriptors, timers and SIGCHLD.

A shim lives as long as its containers, once per container (or pod), so it runs a
single thread (every thread costs stack and allocator pages): its ttrpc
connections, the exits of its children, the OOM eventfd, the terminal
copies and the answers of the runtime helpers it forks all arrive here as
readable file descriptors.  Callbacks must not block.

SIGCHLD reaches the loop through ``signal.set_wakeup_fd``: the C-level
handler writes to a pipe the loop polls, and the loop reaps every waitable
child (``waitpid(-1, WNOHANG)``), adopted orphans included, handing each
(pid, status) to :meth:`Loop.on_child_exit`.
"""
from __future__ import annotations

import heapq
import os
import select
import time

# the C functions: signal.signal() converts numbers and handlers to enums, Python
# code that a shim would run (and copy the pages of) for nothing else
from _signal import SIG_DFL, SIGCHLD, set_wakeup_fd, signal as set_handler

EVENT_READ = select.EPOLLIN
EVENT_WRITE = select.EPOLLOUT


class Deferred:
    """A result that is not there yet: callbacks run when it resolves (once)."""

    __slots__ = ("done", "value", "error", "_callbacks")

    def __init__(self):
        self.done = False
        self.value = None
        self.error = None
        self._callbacks = []

    def add_callback(self, fn) -> None:
        """``fn(deferred)`` when resolved (at once if it is already)."""
        if self.done:
            fn(self)
        else:
            self._callbacks.append(fn)

    def resolve(self, value=None) -> None:
        self._finish(value, None)

    def fail(self, error: BaseException) -> None:
        self._finish(None, error)

    def _finish(self, value, error) -> None:
        if self.done:
            return
        self.done, self.value, self.error = True, value, error
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    def then(self, fn) -> "Deferred":
        """A Deferred of ``fn(value)`` (errors pass through; ``fn`` may raise or
        return another Deferred)."""
        out = Deferred()

        def step(d):
            if d.error is not None:
                out.fail(d.error)
                return
            try:
                r = fn(d.value)
            except BaseException as e:  # noqa: BLE001 - travels to the caller
                out.fail(e)
                return
            if isinstance(r, Deferred):
                r.add_callback(lambda x: out.fail(x.error) if x.error is not None
                               else out.resolve(x.value))
            else:
                out.resolve(r)
        self.add_callback(step)
        return out


def resolved(value=None) -> Deferred:
    d = Deferred()
    d.resolve(value)
    return d


class Loop:
    """epoll, timers, and child exits; :meth:`run` until :meth:`stop`."""

    def __init__(self):
        self._ep = select.epoll()
        self._handlers: dict[int, list] = {}   # fd -> [mask, reader, writer]
        self._timers: list = []
        self._seq = 0
        self._stopping = False
        self.on_child_exit = None               # fn(pid, wait status)
        self._wake_r = self._wake_w = -1

    # -- file descriptors
    def _update(self, fd: int, entry) -> None:
        mask = (EVENT_READ if entry[1] else 0) | (EVENT_WRITE if entry[2] else 0)
        if mask == entry[0]:
            return
        if not mask:
            self._ep.unregister(fd)
            del self._handlers[fd]
            return
        if entry[0]:
            self._ep.modify(fd, mask)
        else:
            self._ep.register(fd, mask)
        entry[0] = mask

    def add_reader(self, fd: int, fn) -> None:
        entry = self._handlers.setdefault(fd, [0, None, None])
        entry[1] = fn
        self._update(fd, entry)

    def remove_reader(self, fd: int) -> None:
        entry = self._handlers.get(fd)
        if entry is not None:
            entry[1] = None
            self._update(fd, entry)

    def add_writer(self, fd: int, fn) -> None:
        entry = self._handlers.setdefault(fd, [0, None, None])
        entry[2] = fn
        self._update(fd, entry)

    def remove_writer(self, fd: int) -> None:
        entry = self._handlers.get(fd)
        if entry is not None:
            entry[2] = None
            self._update(fd, entry)

    def forget(self, fd: int) -> None:
        """Stop watching ``fd`` (call before closing it)."""
        if self._handlers.pop(fd, None) is not None:
            try:
                self._ep.unregister(fd)
            except (OSError, ValueError):
                pass

    # -- timers
    def call_later(self, delay: float, fn) -> list:
        """Run ``fn()`` after ``delay`` seconds; returns a handle for :meth:`cancel`."""
        self._seq += 1
        entry = [time.monotonic() + delay, self._seq, fn]
        heapq.heappush(self._timers, entry)
        return entry

    @staticmethod
    def cancel(handle) -> None:
        if handle is not None:
            handle[2] = None

    # -- children
    def watch_children(self) -> None:
        """Route SIGCHLD into the loop (call from the main thread)."""
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        set_handler(SIGCHLD, lambda *_: None)
        set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self.add_reader(self._wake_r, self._drain_wakeup)

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass
        self.reap()

    def reap(self) -> None:
        """Collect every child that has exited."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.on_child_exit is not None:
                self.on_child_exit(pid, status)

    def unwatch_children_in_child(self) -> None:
        """In a forked child: let go of the parent's SIGCHLD routing."""
        try:
            set_wakeup_fd(-1)
        except ValueError:
            pass
        set_handler(SIGCHLD, SIG_DFL)

    # -- running
    def stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        while not self._stopping:
            timeout = -1.0
            now = time.monotonic()
            while self._timers:
                when, _seq, fn = self._timers[0]
                if fn is None:
                    heapq.heappop(self._timers)
                    continue
                if when <= now:
                    heapq.heappop(self._timers)
                    fn()
                    now = time.monotonic()
                    continue
                timeout = when - now
                break
            if self._stopping:
                return
            try:
                events = self._ep.poll(timeout)
            except InterruptedError:
                continue
            for fd, mask in events:
                entry = self._handlers.get(fd)
                if entry is None:
                    continue
                if mask & (EVENT_READ | select.EPOLLHUP | select.EPOLLERR) and entry[1]:
                    entry[1]()
                    entry = self._handlers.get(fd)
                    if entry is None:
                        continue
                if mask & (EVENT_WRITE | select.EPOLLERR | select.EPOLLHUP) and entry[2]:
                    entry[2]()
