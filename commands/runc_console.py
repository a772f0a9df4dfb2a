"""The stdio of ``pallet-runc run`` and ``exec`` in the foreground, as runc's.

Without a terminal, runc gives the container pipes and copies between them
and its own stdio (setupProcessPipes): the container never holds the
caller's files.  With ``process.terminal``, runc receives the pty master
over a console socket of its own, clears ONLCR on it (so that output reads
``\\n``, not ``\\r\\n``, as a pipe would give it), puts its own terminal in
raw mode and passes window sizes on.  Meanwhile it forwards the signals it
gets to the process, reaps what comes to it as a subreaper, and returns the
process's status (128+N for signal N) once the output has ended.
"""
from __future__ import annotations

import os
import select

import _signal

#: signals runc does not forward: its own (SIGCHLD, SIGWINCH, SIGURG) and the
#: ones that cannot be caught or only come from a fault
_KEPT = {_signal.SIGKILL, _signal.SIGSTOP, _signal.SIGCHLD, _signal.SIGWINCH, _signal.SIGURG,
         _signal.SIGSEGV, _signal.SIGBUS, _signal.SIGFPE, _signal.SIGILL}


class ConsoleSocket:
    """A listening unix socket to give ``create`` as ``terminal_socket``."""

    def __init__(self):
        import socket  # only with a terminal: socket.py imports enum
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="pallet-runc-console-")
        self.path = os.path.join(self.dir, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def receive_master(self, timeout: float = 10.0, onlcr: bool = True) -> int:
        """The pty master the container process sent (SCM_RIGHTS); without
        ``onlcr``, cleared of ONLCR before we hang up (the process waits for that)."""
        import array
        import socket
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
            if not onlcr:
                clear_onlcr(fds[0])
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


def clear_onlcr(fd: int) -> None:
    """No \\r added before \\n on output (console.ClearONLCR, which runc calls on
    the pty master it handles itself)."""
    import termios
    attrs = termios.tcgetattr(fd)
    attrs[1] &= ~termios.ONLCR
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def host_console() -> int:
    """The terminal runc puts in raw mode: the first of stderr, stdout and stdin
    that is one, else the controlling terminal (/dev/tty)."""
    for fd in (2, 1, 0):
        if os.isatty(fd):
            return fd
    try:
        return os.open("/dev/tty", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        from pallet.commands.runc import Fatal
        raise Fatal(f"open /dev/tty: {os.strerror(e.errno).lower()}") from None


def set_raw(fd: int):
    """containerd/console's SetRaw: raw input, but output processing (OPOST)
    kept on; the previous settings."""
    import termios
    saved = termios.tcgetattr(fd)
    raw = list(saved)
    raw[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP |
                termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
    raw[2] = raw[2] & ~(termios.CSIZE | termios.PARENB) | termios.CS8
    raw[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    raw[6] = list(raw[6])
    raw[6][termios.VMIN] = 1
    raw[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, raw)
    return saved


class Foreground:
    """The foreground side of run/exec: make the stdio, then copy and wait."""

    def __init__(self, terminal: bool, subreaper: bool, owner: tuple[int, int] = (0, 0)):
        self.host = host_console() if terminal else -1
        if subreaper:
            from pallet.linux.syscalls import set_child_subreaper
            set_child_subreaper()  # orphans of the container come to us, as to runc
        self.terminal = terminal
        self.console = ConsoleSocket() if terminal else None
        self.master = -1
        self._receiver = None
        if terminal:
            # take the pty as soon as it comes: an exec'd process runs at once,
            # and its first output must already find ONLCR cleared
            import threading
            self._receiver = threading.Thread(target=self._receive, daemon=True)
            self._received = None
            self._receiver.start()
        self.mine: list[int] = []     # our ends: stdin writer, stdout and stderr readers
        self.theirs: list[int] = []   # the container's ends, closed once it has them
        if not terminal:
            for i in range(3):
                r, w = os.pipe2(os.O_CLOEXEC)
                child, ours = (r, w) if i == 0 else (w, r)
                try:
                    os.fchown(child, *owner)  # the container's root owns them, as with runc
                except OSError:
                    pass
                self.theirs.append(child)
                self.mine.append(ours)

    def child_stdio(self):
        return (None, None, None) if self.terminal else tuple(self.theirs)

    def socket_path(self) -> str | None:
        return self.console.path if self.console else None

    def _receive(self) -> None:
        try:
            self._received = self.console.receive_master(onlcr=False)
        except BaseException as e:  # reported by after_create
            self._received = e

    def after_create(self) -> None:
        if self.console is not None:
            try:
                self._receiver.join(15)
                if not isinstance(self._received, int):
                    raise RuntimeError(f"console socket: {self._received or 'no pty received'}")
                self.master = self._received
                os.set_blocking(self.master, False)
            finally:
                self.console.close()
                self.console = None
        for fd in self.theirs:
            os.close(fd)
        self.theirs = []

    def close(self) -> None:
        if self.console is not None:
            self.console.close()
            self.console = None
        for fd in self.theirs + self.mine + ([self.master] if self.master >= 0 else []):
            try:
                os.close(fd)
            except OSError:
                pass
        self.theirs, self.mine, self.master = [], [], -1

    def wait(self, pid: int, log) -> int:
        """Copy, forward signals and reap until ``pid`` has exited and its output
        ended; its status."""
        import gc
        # the process may run for days (pallet-runc's run turns the collector
        # off): on again, for what is allocated from now on only -- what start-up
        # loaded (modules, classes) is never garbage, and a first collection
        # over it would cost a short-lived container's run ~0.7 ms
        gc.freeze()
        gc.enable()
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        forwarded = [s for s in _signal.valid_signals() if s not in _KEPT]
        for sig in forwarded + [_signal.SIGCHLD, _signal.SIGWINCH]:
            _signal.signal(sig, _noop)
        _signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        saved = None
        if self.terminal:
            saved = set_raw(self.host)
            _copy_winsize(self.host, self.master)
        try:
            # it may have exited already, its SIGCHLD before our handler
            return self._loop(pid, wake_r, log, _reap(pid, None, log))
        finally:
            _signal.set_wakeup_fd(-1)
            if saved is not None:
                import termios
                termios.tcsetattr(self.host, termios.TCSADRAIN, saved)
            os.close(wake_r)
            os.close(wake_w)
            self.close()

    def _loop(self, pid: int, wake_r: int, log, status) -> int:
        if self.terminal:
            to_child, sources = self.master, {self.master: 1}
        else:
            to_child, sources = self.mine[0], {self.mine[1]: 1, self.mine[2]: 2}
            os.set_blocking(to_child, False)
        stdin_open = True
        pending = b""
        while status is None or sources:
            readers = [wake_r] + list(sources) + ([0] if stdin_open and not pending else [])
            writers = [to_child] if pending else []
            try:
                ready, writable, _ = select.select(readers, writers, [])
            except InterruptedError:
                continue
            if wake_r in ready:
                status = self._signals(pid, wake_r, status, log)
            for fd in [f for f in ready if f in sources]:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""  # EIO from a pty master: every slave is closed
                if data:
                    _write_all(sources[fd], data)
                else:
                    del sources[fd]
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    pending += data
                else:
                    stdin_open = False
                    if not self.terminal:
                        self._close_mine(to_child)  # the process reads EOF, as with runc
            if pending and (to_child in writable or not writers):
                try:
                    pending = pending[os.write(to_child, pending):]
                except BlockingIOError:
                    pass
                except OSError:
                    pending = b""
                    stdin_open = False
        return status

    def _close_mine(self, fd: int) -> None:
        if fd in self.mine:
            self.mine.remove(fd)
            os.close(fd)

    def _signals(self, pid: int, wake_r: int, status, log):
        try:
            got = os.read(wake_r, 512)
        except BlockingIOError:
            return status
        for sig in got:
            if sig == _signal.SIGCHLD:
                status = _reap(pid, status, log)
            elif sig == _signal.SIGWINCH:
                if self.terminal:
                    _copy_winsize(self.host, self.master)
            else:
                log("debug", f"sending signal to process {_signal.strsignal(sig).lower()}")
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        return status


def _reap(pid: int, status, log):
    """waitpid every child that has exited (we may be a subreaper); the status of ``pid``."""
    while True:
        try:
            got, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status if status is not None else 255
        if got == 0:
            return status
        if got == pid:
            status = os.waitstatus_to_exitcode(raw)
            status = status if status >= 0 else 128 - status
            log("debug", "process exited", ("main.(*signalHandler).forward", "signals.go:92"),
                (("pid", pid), ("status", status)))


def _noop(signum, frame) -> None:
    pass


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            select.select([], [fd], [])
        except OSError:
            return
