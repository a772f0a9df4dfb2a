"""Hijacked stdio sessions (attach, exec): raw terminal, stdin pump, output
demultiplexing, terminal resize and signal forwarding."""

import os
import sys

from pallet.client.cmd_containers import cpath
from pallet.client.docker import StatusError
from pallet.client.docker_api import ConnectError, DaemonError, iter_frames


class Terminal:
    """Puts the local terminal in raw mode for ``-it`` and restores it."""

    def __init__(self, fd):
        self.fd = fd
        self.saved = None

    def __enter__(self):
        import termios
        import tty
        try:
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        except termios.error:
            self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def _stdin_pump(hj, fd):
    try:
        while True:
            try:
                data = os.read(fd, 32768)
            except OSError:
                break
            if not data:
                break
            try:
                hj.send(data)
            except OSError:
                return
    finally:
        hj.close_write()


def _write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except BrokenPipeError:
            return
        data = data[n:]


def pump(hj, tty, stdin=False):
    """Copy the hijacked stream to stdout/stderr (and stdin to it) until it ends."""
    sys.stdout.flush()
    sys.stderr.flush()
    if stdin:
        import threading
        threading.Thread(target=_stdin_pump, args=(hj, 0), daemon=True).start()
    if tty:
        while True:
            chunk = hj.recv()
            if not chunk:
                break
            _write_all(1, chunk)
        return
    for stream, payload in iter_frames(hj.recvexactly):
        _write_all(2 if stream in (2, 3) else 1, payload)


def resize(cli, path):
    try:
        size = os.get_terminal_size(1)
    except OSError:
        return
    try:
        cli.client.request("POST", path, {"h": size.lines, "w": size.columns}).close()
    except (DaemonError, ConnectError):
        pass


def install_winch(cli, path):
    import signal
    signal.signal(signal.SIGWINCH, lambda *_: resize(cli, path))


class SignalProxy:
    """Forwards the signals the CLI receives to the container (``--sig-proxy``)."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")

    def __init__(self, cli, cid):
        self.cli, self.cid = cli, cid
        self.saved = {}

    def __enter__(self):
        import signal
        for name in self.SIGNALS:
            sig = getattr(signal, name)
            self.saved[sig] = signal.signal(sig, self._forward)
        return self

    def _forward(self, signum, frame):
        try:
            self.cli.client.request("POST", cpath(self.cid, "/kill"), {"signal": str(int(signum))}).close()
        except (DaemonError, ConnectError, OSError):
            pass

    def __exit__(self, *exc):
        import signal
        for sig, h in self.saved.items():
            signal.signal(sig, h)


def check_tty(opts):
    if opts.tty and opts.interactive and not os.isatty(0):
        raise StatusError("the input device is not a TTY", 1)
