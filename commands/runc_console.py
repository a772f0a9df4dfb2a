"""The terminal of ``pallet-runc run`` in the foreground (process.terminal).

runc, when it is not detached and no ``--console-socket`` is given, receives
the container's pty master itself and copies between it and its own stdio.
This does the same: a private console socket, then a copy loop that puts our
terminal in raw mode and passes window size changes on.
"""
from __future__ import annotations

import array
import os
import select
import signal
import socket
import tempfile


class ConsoleSocket:
    """A listening unix socket to give ``create`` as ``terminal_socket``."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pallet-runc-console-")
        self.path = os.path.join(self.dir, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def receive_master(self, timeout: float = 10.0) -> int:
        """The pty master the container process sent (SCM_RIGHTS)."""
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        try:
            fds = array.array("i")
            _msg, anc, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:fds.itemsize])
            if not fds:
                raise RuntimeError("console socket: no file descriptor received")
            os.set_inheritable(fds[0], False)
            return fds[0]
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def proxy(master: int, pid: int) -> int:
    """Copy stdin -> master and master -> stdout until ``pid`` exits; its status."""
    import termios
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        _copy_winsize(0, master)
    signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(0, master))
    stdin_open = True
    status = None
    try:
        while True:
            fds = [master] + ([0] if stdin_open else [])
            try:
                ready, _, _ = select.select(fds, [], [], 0.1)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""  # EIO: every slave fd is closed
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    stdin_open = False
            if status is None:
                got, raw = os.waitpid(pid, os.WNOHANG)
                if got == pid:
                    status = raw
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
    if status is None:
        _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
