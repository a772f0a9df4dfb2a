"""The json-file log driver: one JSON object per line in
``<container_dir>/<id>-json.log``, ``{"log": ..., "stream": ..., "time": ...}``,
as dockerd writes it, plus the in-memory fan-out to attached clients and to
``logs --follow``."""
from __future__ import annotations

import asyncio
import json
import os
import time
from typing import AsyncIterator

#: dockerd cuts log entries at 16 KiB even without a newline
MAX_LINE = 16 * 1024


def rfc3339nano(ns: int | None = None) -> str:
    """``2026-11-27T21:16:09.123456789Z`` (Go's time.RFC3339Nano in UTC)."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time written by :func:`rfc3339nano`."""
    import calendar

    base, _, frac = text.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


class LogEntry:
    __slots__ = ("stream", "data", "time_ns")

    def __init__(self, stream: str, data: bytes, time_ns: int):
        self.stream = stream
        self.data = data
        self.time_ns = time_ns


class ContainerLog:
    """Writes a container's output to its json-file log and hands every chunk
    to the live subscribers (attach, logs --follow) in the same step, so that a
    reader that snapshots the file size and subscribes at once misses nothing."""

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._partial = {"stdout": b"", "stderr": b""}
        self._raw_subscribers: set[asyncio.Queue] = set()
        self._line_subscribers: set[asyncio.Queue] = set()

    def open(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o640)

    def close(self) -> None:
        for stream in ("stdout", "stderr"):
            self.flush(stream)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for q in list(self._raw_subscribers) + list(self._line_subscribers):
            q.put_nowait(None)

    # --- writing -----------------------------------------------------------
    def write(self, stream: str, data: bytes) -> None:
        """Output read from the container's ``stream`` FIFO."""
        for q in self._raw_subscribers:
            q.put_nowait((stream, data))
        buf = self._partial[stream] + data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            self._emit(stream, buf[:nl + 1])
            buf = buf[nl + 1:]
        while len(buf) >= MAX_LINE:
            self._emit(stream, buf[:MAX_LINE])
            buf = buf[MAX_LINE:]
        self._partial[stream] = buf

    def flush(self, stream: str) -> None:
        """The stream ended: write what is left of its last line."""
        if self._partial.get(stream):
            self._emit(stream, self._partial[stream])
            self._partial[stream] = b""

    def _emit(self, stream: str, line: bytes) -> None:
        now = time.time_ns()
        entry = {"log": line.decode("utf-8", "replace"), "stream": stream,
                 "time": rfc3339nano(now)}
        if self._fd is not None:
            try:
                os.write(self._fd, (json.dumps(entry) + "\n").encode())
            except OSError:
                pass  # a full disk must not stop the container's output
        for q in self._line_subscribers:
            q.put_nowait(LogEntry(stream, line, now))

    # --- subscribing ---------------------------------------------------------
    def subscribe_raw(self) -> asyncio.Queue:
        """Every chunk of output from now on, as ``(stream, bytes)``; None at the end."""
        q: asyncio.Queue = asyncio.Queue()
        self._raw_subscribers.add(q)
        return q

    def unsubscribe_raw(self, q: asyncio.Queue) -> None:
        self._raw_subscribers.discard(q)

    def subscribe_lines(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        self._line_subscribers.add(q)
        return q

    def unsubscribe_lines(self, q: asyncio.Queue) -> None:
        self._line_subscribers.discard(q)


def read_entries(path: str, limit_bytes: int | None = None) -> list[LogEntry]:
    """Every entry of a json-file log (up to ``limit_bytes`` of it)."""
    out: list[LogEntry] = []
    try:
        with open(path, "rb") as f:
            data = f.read() if limit_bytes is None else f.read(limit_bytes)
    except FileNotFoundError:
        return out
    for line in data.splitlines():
        try:
            obj = json.loads(line)
            out.append(LogEntry(obj.get("stream", "stdout"), obj.get("log", "").encode(),
                                parse_time(obj["time"])))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line after a crash
    return out


async def follow(log: ContainerLog | None, path: str, *, streams: set[str], tail: int | None,
                 since_ns: int = 0, until_ns: int | None = None,
                 follow: bool = False, running=lambda: False) -> AsyncIterator[LogEntry]:
    """The entries ``docker logs`` shows: the file's (last ``tail``), then, with
    ``follow``, the live ones until the container stops."""
    queue = None
    if follow and log is not None and running():
        queue = log.subscribe_lines()
    try:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        entries = await asyncio.get_running_loop().run_in_executor(None, read_entries, path, size)

        def keep(e: LogEntry) -> bool:
            return (e.stream in streams and e.time_ns >= since_ns
                    and (until_ns is None or e.time_ns <= until_ns))

        entries = [e for e in entries if keep(e)]
        if tail is not None:
            entries = entries[-tail:] if tail > 0 else []
        for e in entries:
            yield e
        if queue is None:
            return
        while True:
            e = await queue.get()
            if e is None:
                return
            if keep(e):
                yield e
            if until_ns is not None and e.time_ns > until_ns:
                return
    finally:
        if queue is not None:
            log.unsubscribe_lines(queue)
