"""The stdio FIFOs between palletd and a container's shim.

palletd makes ``init-stdout``/``init-stderr`` (and ``init-stdin`` for ``-i``)
under ``paths.fifo_dir(id)`` and opens its ends *before* asking containerd to
create the task, so that the shim's open never blocks and no byte is lost.
Besides the read end, palletd holds a write end of each output FIFO until the
task has exited: a reader never sees a spurious end-of-file while the shim is
(re)opening its side, only the real end after the exit.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import stat

READ_SIZE = 64 * 1024


def _mkfifo(path: str) -> None:
    try:
        st = os.lstat(path)
        if stat.S_ISFIFO(st.st_mode):
            return
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)


class ContainerIO:
    """The palletd side of one task's stdio."""

    def __init__(self, directory: str, *, stdin: bool, stderr: bool = True,
                 prefix: str = "init"):
        self.dir = directory
        self.prefix = prefix
        self.paths = {"stdout": os.path.join(directory, f"{prefix}-stdout")}
        if stderr:
            self.paths["stderr"] = os.path.join(directory, f"{prefix}-stderr")
        if stdin:
            self.paths["stdin"] = os.path.join(directory, f"{prefix}-stdin")
        self._read_fds: dict[str, int] = {}
        self._keep_fds: dict[str, int] = {}
        self.stdin_fd: int | None = None
        self._eof: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        """Make the FIFOs and open palletd's ends (non-blocking)."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        for name, path in self.paths.items():
            _mkfifo(path)
        for name in ("stdout", "stderr"):
            if name in self.paths:
                fd = os.open(self.paths[name], os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                self._read_fds[name] = fd
                # opening for write succeeds at once now that a reader exists
                self._keep_fds[name] = os.open(self.paths[name],
                                               os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if "stdin" in self.paths:
            # O_RDWR never blocks on a FIFO (Linux fifo(7)) and keeps it open
            # for the shim whatever the order of the opens
            self.stdin_fd = os.open(self.paths["stdin"], os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def start_reading(self, sink) -> None:
        """Hand every chunk to ``sink(stream, bytes)``; ``sink(stream, b"")`` at the end."""
        self._loop = asyncio.get_running_loop()
        for name, fd in self._read_fds.items():
            ev = self._eof[name] = asyncio.Event()
            self._loop.add_reader(fd, self._on_readable, name, fd, sink, ev)

    def _on_readable(self, name, fd, sink, ev) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            sink(name, data)
            return
        self._loop.remove_reader(fd)
        sink(name, b"")
        ev.set()

    def release_writers(self) -> None:
        """The task exited: let the readers see the end once the shim closes too."""
        for fd in self._keep_fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._keep_fds.clear()

    async def drained(self, timeout: float) -> bool:
        """Wait until every output stream reached its end (or ``timeout``)."""
        if not self._eof:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._eof.values())),
                                   timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def write_stdin(self, data: bytes) -> None:
        if self.stdin_fd is None:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.stdin_fd, view)
                view = view[n:]
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                return

    def close_stdin(self) -> None:
        if self.stdin_fd is not None:
            try:
                os.close(self.stdin_fd)
            except OSError:
                pass
            self.stdin_fd = None

    def close(self, remove: bool = True) -> None:
        self.release_writers()
        for fd in self._read_fds.values():
            if self._loop is not None:
                try:
                    self._loop.remove_reader(fd)
                except (ValueError, RuntimeError):
                    pass
            try:
                os.close(fd)
            except OSError:
                pass
        self._read_fds.clear()
        self.close_stdin()
        if remove:
            if self.prefix == "init":
                shutil.rmtree(self.dir, ignore_errors=True)
            else:  # an exec's FIFOs share the container's directory
                for path in self.paths.values():
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
