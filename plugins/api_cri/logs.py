"""Containers' stdio on pallet-containerd's side: the FIFOs the shim writes
the process's output to, the CRI log file kubelet reads, and the clients
attached meanwhile.

The CRI log format (kubelet's ``pkg/kubelet/kuberuntime/logs``): one line
per line of output, ``<RFC 3339 time with nanoseconds> <stream> <tag>
<content>``, where the tag is ``F`` for a full line and ``P`` for a part of
one: a line longer than ``max_container_log_line_size`` is cut into parts,
and output that ends without a newline when the stream closes is a part
too.  Lines keep no ``\\n`` (nor the ``\\r`` before one).

The FIFOs are opened O_RDWR (fifo(7): never blocks, and never reads an
end-of-file while the shim reopens its end), so the end of the output is
known from the task's exit, which the shim reports only after the last
byte was written: the rest is then read until the pipe is empty.  A
restarted pallet-containerd reopens them and goes on where it stopped.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import time

log = logging.getLogger("pallet.cri.logs")

STDIN, STDOUT, STDERR = "stdin", "stdout", "stderr"
READ_SIZE = 64 * 1024
FULL, PARTIAL = b"F", b"P"


def timestamp(ns: int | None = None) -> bytes:
    """RFC 3339 with nanoseconds in UTC, as Go's time.RFC3339Nano writes it
    (trailing zeros of the fraction dropped)."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return (text + "Z").encode()


def format_line(stream: str, tag: bytes, content: bytes, ns: int | None = None) -> bytes:
    return b"".join((timestamp(ns), b" ", stream.encode(), b" ", tag, b" ", content, b"\n"))


class LineSplitter:
    """Cuts one stream's output into CRI log lines."""

    def __init__(self, stream: str, max_line: int):
        self.stream = stream
        self.max_line = max_line if max_line > 0 else 0
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        out = []
        buf = self._buf + data
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            line, buf = buf[:i], buf[i + 1:]
            if line.endswith(b"\r"):
                line = line[:-1]
            out += self._cut(line, FULL)
        while self.max_line and len(buf) > self.max_line:
            out.append(format_line(self.stream, PARTIAL, buf[:self.max_line]))
            buf = buf[self.max_line:]
        self._buf = buf
        return out

    def _cut(self, line: bytes, tag: bytes) -> list[bytes]:
        out = []
        while self.max_line and len(line) > self.max_line:
            out.append(format_line(self.stream, PARTIAL, line[:self.max_line]))
            line = line[self.max_line:]
        out.append(format_line(self.stream, tag, line))
        return out

    def close(self) -> list[bytes]:
        """The stream ended: what is left is a partial line."""
        buf, self._buf = self._buf, b""
        return [format_line(self.stream, PARTIAL, buf)] if buf else []


def make_fifo(path: str) -> None:
    try:
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            return
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)


class Pipes:
    """The FIFOs of one process (a container's or an exec's) and who reads them.

    ``subscribers`` receive ``(stream, data)`` for every chunk of output and
    ``(stream, None)`` once the stream ended.  Everything but
    :meth:`create` runs on the I/O loop.
    """

    def __init__(self, loop, directory: str, *, stdin: bool, tty: bool, prefix: str = ""):
        self.loop = loop                  # asyncio loop
        self.dir = directory
        self.tty = tty
        names = [STDOUT] + ([] if tty else [STDERR]) + ([STDIN] if stdin else [])
        self.paths = {n: os.path.join(directory, f"{prefix}{n}") for n in names}
        self._fds: dict[str, int] = {}
        self.subscribers: list = []
        self.closed = False

    def create(self) -> None:
        """Make the FIFOs (any thread; before the task is created)."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        for path in self.paths.values():
            make_fifo(path)

    def uri(self, name: str) -> str:
        return self.paths.get(name, "")

    def open(self) -> None:
        """Open our ends and start reading (on the loop)."""
        for name, path in self.paths.items():
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            self._fds[name] = fd
            if name != STDIN:
                self.loop.add_reader(fd, self._readable, name)

    def _readable(self, name: str) -> None:
        fd = self._fds.get(name)
        if fd is None:
            return
        for _ in range(16):  # then let the others have the loop
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as e:
                log.warning("read %s: %s", self.paths[name], e)
                return
            if not data:
                return
            self._publish(name, data)

    def _publish(self, name: str, data: bytes | None) -> None:
        for fn in list(self.subscribers):
            try:
                fn(name, data)
            except Exception:  # noqa: BLE001 — one broken reader must not stop the others
                log.exception("output subscriber failed")

    def write_stdin(self, data: bytes) -> bool:
        """Best effort (an attached client that outruns the process waits on
        the loop, not here); False when there is no stdin."""
        fd = self._fds.get(STDIN)
        if fd is None:
            return False
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                import select
                select.select([], [fd], [], 1.0)
                continue
            except OSError as e:
                if e.errno == errno.EPIPE:
                    return False
                raise
            view = view[n:]
        return True

    def close_stdin_fd(self) -> None:
        """Let go of our end of stdin (with the shim's closed too, the process
        reads the end of its input)."""
        fd = self._fds.pop(STDIN, None)
        if fd is not None:
            os.close(fd)

    def drain(self) -> None:
        """The process is gone: read what is left, end every stream, close."""
        if self.closed:
            return
        self.closed = True
        for name, fd in list(self._fds.items()):
            if name == STDIN:
                continue
            self.loop.remove_reader(fd)
            while True:
                try:
                    data = os.read(fd, READ_SIZE)
                except OSError:
                    break
                if not data:
                    break
                self._publish(name, data)
            self._publish(name, None)
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def remove(self) -> None:
        for path in self.paths.values():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


class CRILog:
    """A container's log file in the CRI format (a subscriber of its Pipes)."""

    def __init__(self, path: str, max_line: int):
        self.path = path
        self.max_line = max_line
        self._splitters: dict[str, LineSplitter] = {}
        self._fd: int | None = None
        if path:
            self.reopen()

    def reopen(self) -> None:
        """Close the file and open the path again (kubelet rotated it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self.path:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o640)

    def __call__(self, stream: str, data: bytes | None) -> None:
        splitter = self._splitters.get(stream)
        if splitter is None:
            splitter = self._splitters[stream] = LineSplitter(stream, self.max_line)
        lines = splitter.close() if data is None else splitter.feed(data)
        if lines and self._fd is not None:
            try:
                os.write(self._fd, b"".join(lines))
            except OSError as e:
                log.warning("write log %s: %s", self.path, e)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
