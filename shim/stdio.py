"""The stdio of one process of a task: pipes spliced into FIFOs, or a terminal.

Without a terminal (:class:`Pipes`) the process writes into pipes, which the
shim splices into the output FIFOs, and reads the stdin FIFO itself.  The
shim opens every FIFO O_RDWR first, which never blocks on Linux (fifo(7)),
and keeps those ends until the process exits, so that nothing gets SIGPIPE
or EOF because the client has not opened (or has closed for a moment, while
pallet-containerd restarts) its end; it closes them afterwards so that
readers see EOF.

With a terminal (:class:`Console`) the runtime hands the pty master over a
console socket (SCM_RIGHTS, runc's ``--console-socket`` convention); the
shim copies the stdin FIFO into the master and the master into the stdout
FIFO, on its loop.  The exit of the process is reported only once its last
output has been copied (the master reads EIO when every slave is closed).
"""
from __future__ import annotations

import array
import fcntl
import os
import select
import socket
import stat
import struct

from pallet.core import errors

_TIOCSWINSZ = 0x5414
_MAX_BUFFER = 1 << 20
_PAUSE_READ = 256 << 10
_DRAIN_TIMEOUT = 2.0
_SPLICE_CHUNK = 1 << 16
_SPLICE_F_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2)


def _path_of(uri: str) -> str:
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if "://" in uri:
        raise errors.NotImplementedYet(f"stdio {uri}: only fifos and file:// are supported")
    return uri


def _open(path: str, flags: int, mode: int = 0o600) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC, mode)
    except OSError as e:
        raise errors.FailedPrecondition(
            f"open stdio {path}: {(e.strerror or str(e)).lower()}") from None


class _Ending:
    """The end of a process's stdio: ``done()`` is called once, when the output
    is drained or, should a process left behind hold it open, after a moment."""

    loop = None
    done = None
    deadline = None

    def _arm_deadline(self) -> None:
        if self.deadline is None:
            self.deadline = self.loop.call_later(_DRAIN_TIMEOUT, self._finish)

    def _finish(self) -> None:
        self.loop.cancel(self.deadline)
        self.deadline = None
        done, self.done = self.done, None
        if done is not None:
            done()


class Pipes(_Ending):
    """Without a terminal: pipes for the process's 1 and 2, as containerd's shim
    gives them (so no host path shows in ``/proc/self/fd``), spliced into the
    output FIFOs in the kernel (``splice(2)``, no copy through the shim); stdin
    is the FIFO itself.  A full FIFO stops the splice, so the process blocks
    as it would writing the FIFO directly; files (``file://``) are given as
    they are."""

    terminal = False

    def __init__(self, loop, stdin: str, stdout: str, stderr: str):
        self.loop = loop
        self.paths = (stdin, stdout, stderr)
        self.keep: dict[str, int] = {}   # path -> the shim's O_RDWR end
        self.child: list = []            # fds for the process's 0, 1, 2 (None: /dev/null)
        self.copies: list[_Splice] = []  # pipe -> FIFO, one per output FIFO
        self.done = None
        self.deadline = None
        try:
            by_path: dict[str, int] = {}
            for i, uri in enumerate(self.paths):
                if not uri:
                    self.child.append(None)
                    continue
                path = _path_of(uri)
                if i and uri.startswith("file://"):
                    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
                    self.child.append(_open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT))
                    continue
                self._keep(path)
                if i == 0:
                    self.child.append(_open(path, os.O_RDONLY))
                elif path in by_path:  # stdout and stderr into one FIFO: one pipe
                    self.child.append(os.dup(by_path[path]))
                elif path in self.keep:
                    r, w = os.pipe2(os.O_CLOEXEC)
                    self.child.append(w)
                    by_path[path] = w
                    self.copies.append(_Splice(self, r, self.keep[path]))
                else:  # a regular file named without file://
                    self.child.append(_open(path, os.O_WRONLY | os.O_APPEND))
        except BaseException:
            self.close_child()
            self.close()
            raise

    def _keep(self, path: str) -> None:
        if path in self.keep:
            return
        fd = _open(path, os.O_RDWR)
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.close(fd)  # a regular file needs no keep-alive end
            return
        self.keep[path] = fd

    def fds(self) -> tuple:
        return tuple(self.child)

    def close_child(self) -> None:
        """Close the process's ends once it holds its own copies; start splicing."""
        for fd in self.child:
            if fd is not None:
                os.close(fd)
        self.child = [None, None, None]
        for c in self.copies:
            c.start()

    def close_stdin(self) -> None:
        path = self.paths[0] and _path_of(self.paths[0])
        if path and path not in self.paths[1:]:
            fd = self.keep.pop(path, None)
            if fd is not None:
                os.close(fd)

    def on_exit(self, done) -> None:
        """Call ``done()`` once the pipes are drained (every writer gone) or,
        when a process left behind still holds them, after a moment."""
        self.done = done
        if any(c.open for c in self.copies):
            self._arm_deadline()
        self._finish_if_drained()

    def _finish_if_drained(self) -> None:
        if self.done is not None and not any(c.open for c in self.copies):
            self._finish()

    def close(self) -> None:
        for c in self.copies:
            c.close()
        self.copies = []
        for fd in self.keep.values():
            self.loop.forget(fd)
            os.close(fd)
        self.keep.clear()


class _Splice:
    """One pipe's read end moved into a FIFO by ``splice(2)`` on the loop."""

    def __init__(self, owner: Pipes, pipe_r: int, fifo_w: int):
        self.owner, self.r, self.w = owner, pipe_r, fifo_w
        self.open = True
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)

    def start(self) -> None:
        if self.open:
            self.owner.loop.add_reader(self.r, self._move)

    def _move(self) -> None:
        while self.open:
            try:
                n = os.splice(self.r, self.w, _SPLICE_CHUNK, flags=_SPLICE_F_NONBLOCK)
            except BlockingIOError:
                # which side: the pipe is empty, or the FIFO full (wait to write)
                if self._fifo_full():
                    loop = self.owner.loop
                    loop.remove_reader(self.r)
                    loop.add_writer(self.w, self._writable)
                return
            except OSError:
                n = 0  # the FIFO is gone: the output is lost, as a reader's would be
            if n == 0:
                self.close()
                self.owner._finish_if_drained()
                return

    def _fifo_full(self) -> bool:
        return not select.select([], [self.w], [], 0)[1]

    def _writable(self) -> None:
        loop = self.owner.loop
        loop.remove_writer(self.w)
        loop.add_reader(self.r, self._move)

    def close(self) -> None:
        if self.open:
            self.open = False
            self.owner.loop.forget(self.r)
            self.owner.loop.remove_writer(self.w)
            os.close(self.r)


class Console(_Ending):
    """A terminal: a console socket to receive the pty master, then the copies."""

    terminal = True

    def __init__(self, loop, stdin: str, stdout: str, sock_dir: str, log=None):
        self.loop = loop
        self.log = log
        self.paths = (stdin, stdout, "")
        self.master = -1
        self.stdin_fd = _open(_path_of(stdin), os.O_RDWR | os.O_NONBLOCK) if stdin else -1
        self.stdout_fd = -1
        try:
            if stdout:
                self.stdout_fd = _open(_path_of(stdout), os.O_RDWR | os.O_NONBLOCK)
            self.socket_path = os.path.join(sock_dir, f"pty-{os.getpid()}-{id(self) & 0xFFFFFF:x}")
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
            self.listener.bind(self.socket_path)
            self.listener.listen(1)
            self.listener.setblocking(False)
        except BaseException:
            self._close_fds()
            raise
        self.loop.add_reader(self.listener.fileno(), self._accept)
        self.to_master = bytearray()
        self.to_stdout = bytearray()
        self.size = None
        self.exited = False
        self.done = None
        self.deadline = None
        self.stdin_open = self.stdin_fd >= 0

    def fds(self) -> tuple:
        return (None, None, None)

    def close_child(self) -> None:
        pass

    # -- the master
    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            conn.settimeout(5)
            fds = array.array("i")
            _msg, anc, _flags, _addr = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:fds.itemsize])
        except OSError as e:
            self._log(f"console socket: {e}")
            fds = array.array("i")
        finally:
            conn.close()
        if not fds:
            return
        self._stop_listening()
        self.master = fds[0]
        os.set_inheritable(self.master, False)
        os.set_blocking(self.master, False)
        if self.size is not None:
            self.resize(*self.size)
        self.loop.add_reader(self.master, self._from_master)
        if self.stdin_open:
            self.loop.add_reader(self.stdin_fd, self._from_stdin)
        if self.exited and self.done is not None:
            self._arm_deadline()

    def _stop_listening(self) -> None:
        if self.listener is not None:
            self.loop.forget(self.listener.fileno())
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass

    def resize(self, width: int, height: int) -> None:
        self.size = (width, height)
        if self.master >= 0:
            fcntl.ioctl(self.master, _TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    # -- copies
    def _from_master(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: every slave end is closed
        if not data:
            self.loop.forget(self.master)
            os.close(self.master)
            self.master = -1
            self._finish_if_drained()
            return
        if self.stdout_fd >= 0:
            self.to_stdout += data
            if len(self.to_stdout) > _MAX_BUFFER:
                del self.to_stdout[:len(self.to_stdout) - _MAX_BUFFER]  # nobody reads: drop old
            self._write_stdout()
            if len(self.to_stdout) > _PAUSE_READ:
                self.loop.remove_reader(self.master)

    def _write_stdout(self) -> None:
        while self.to_stdout:
            try:
                n = os.write(self.stdout_fd, self.to_stdout)
            except BlockingIOError:
                self.loop.add_writer(self.stdout_fd, self._write_stdout)
                return
            except OSError:
                self.to_stdout.clear()
                break
            del self.to_stdout[:n]
            if self.master >= 0 and len(self.to_stdout) <= _PAUSE_READ:
                self.loop.add_reader(self.master, self._from_master)
        self.loop.remove_writer(self.stdout_fd)
        self._finish_if_drained()

    def _from_stdin(self) -> None:
        try:
            data = os.read(self.stdin_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return
        if self.master >= 0:
            self.to_master += data
            self._write_master()

    def _write_master(self) -> None:
        while self.to_master and self.master >= 0:
            try:
                n = os.write(self.master, self.to_master)
            except BlockingIOError:
                self.loop.add_writer(self.master, self._write_master)
                return
            except OSError:
                self.to_master.clear()
                break
            del self.to_master[:n]
        if self.master >= 0:
            self.loop.remove_writer(self.master)

    def close_stdin(self) -> None:
        """Stop copying stdin; the process reads EOF (^D, as a terminal user types it)."""
        if self.stdin_open:
            self.stdin_open = False
            self.loop.forget(self.stdin_fd)
            os.close(self.stdin_fd)
            self.stdin_fd = -1
            self.to_master += b"\x04"
            self._write_master()

    # -- end
    def on_exit(self, done) -> None:
        """Call ``done()`` once the output of the exited process has been copied."""
        self.exited = True
        self.done = done
        if self.master >= 0 or self.listener is None:
            self._arm_deadline()
        self._finish_if_drained()

    def _finish_if_drained(self) -> None:
        if self.exited and self.master < 0 and not self.to_stdout:
            self._finish()

    def _close_fds(self) -> None:
        for fd in (self.stdin_fd, self.stdout_fd):
            if fd >= 0:
                os.close(fd)
        self.stdin_fd = self.stdout_fd = -1

    def close(self) -> None:
        self._stop_listening()
        if self.master >= 0:
            self.loop.forget(self.master)
            os.close(self.master)
            self.master = -1
        for fd in (self.stdin_fd, self.stdout_fd):
            if fd >= 0:
                self.loop.forget(fd)
        self._close_fds()
        self.stdin_open = False

    def _log(self, text: str) -> None:
        if self.log is not None:
            self.log(text)


def open_stdio(loop, terminal: bool, stdin: str, stdout: str, stderr: str, sock_dir: str,
               log=None):
    """The stdio of a new process: a Console with a terminal, Pipes without."""
    if terminal:
        return Console(loop, stdin, stdout, sock_dir, log)
    return Pipes(loop, stdin, stdout, stderr)
