"""Hijacked stdio sessions (attach, exec): raw terminal, stdin pump, output
demultiplexing, terminal resize and signal forwarding."""

import os
import sys

from pallet.client.cmd_containers import cpath
from pallet.client.docker import StatusError
from pallet.client.docker_api import ConnectError, DaemonError


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


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec):
    """docker's key sequence syntax: comma-separated ``ctrl-<x>`` or single
    characters ('ctrl-p,ctrl-q' -> b'\\x10\\x11'); ValueError when invalid."""
    out = bytearray()
    for part in spec.split(","):
        if len(part) == 1:
            out.append(ord(part))
            continue
        low = part.lower()
        if low.startswith("ctrl-") and len(part) == 6:
            c = low[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
                continue
            if c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
                continue
        raise ValueError("Unknown character: '%s'" % part)
    return bytes(out)


class EscapeProxy:
    """Finds the detach sequence in what the user types (a raw terminal): the
    bytes of a partial match are held back, and sent on if the match breaks."""

    def __init__(self, keys):
        self.keys = keys
        self.held = b""

    def feed(self, data):
        """Return (bytes to send, detached?)."""
        out = bytearray()
        for b in data:
            if b == self.keys[len(self.held)]:
                self.held += bytes((b,))
                if len(self.held) == len(self.keys):
                    self.held = b""
                    return bytes(out), True
                continue
            out += self.held
            self.held = b""
            if b == self.keys[0]:
                self.held = bytes((b,))
                if len(self.keys) == 1:
                    return bytes(out), True
            else:
                out.append(b)
        return bytes(out), False


class FrameReader:
    """Incremental reader of docker's multiplexed stream (8-byte headers:
    stream type, three zero bytes, big-endian payload size)."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= 8:
            size = int.from_bytes(self.buf[4:8], "big")
            if len(self.buf) < 8 + size:
                break
            out.append((self.buf[0], bytes(self.buf[8:8 + size])))
            del self.buf[:8 + size]
        return out


def _write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except BrokenPipeError:
            return
        except InterruptedError:
            continue
        data = data[n:]


def pump(hj, tty, stdin=False, detach_keys=None, in_fd=0, out_fd=1, err_fd=2):
    """Copy the hijacked stream to stdout/stderr, and stdin to it, until the
    output ends; return True when the user detached with the key sequence.

    One thread and select(): a TLS stream must not be read and written from
    two threads.  The end of stdin half-closes the stream (the container's
    stdin is closed, its output still comes); with a TTY the detach keys are
    looked for in what is typed.
    """
    import select
    sys.stdout.flush()
    sys.stderr.flush()
    proxy = EscapeProxy(detach_keys) if (stdin and tty and detach_keys) else None
    stdin_open = stdin
    frames = None if tty else FrameReader()
    while True:
        if hj.pending():
            ready = [hj]
        else:
            try:
                ready = select.select([hj] + ([in_fd] if stdin_open else []), [], [])[0]
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return False
        if stdin_open and in_fd in ready:
            try:
                data = os.read(in_fd, 32768)
            except OSError:
                data = b""
            if not data:
                stdin_open = False
                hj.close_write()
            else:
                detached = False
                if proxy is not None:
                    data, detached = proxy.feed(data)
                try:
                    if data:
                        hj.send(data)
                except OSError:
                    stdin_open = False
                if detached:
                    return True
        if hj in ready:
            chunk = hj.recv()
            if not chunk:
                return False
            if frames is None:
                _write_all(out_fd, chunk)
            else:
                for stream, payload in frames.feed(chunk):
                    _write_all(err_fd if stream in (2, 3) else out_fd, payload)


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


def detach_keys(cli, value):
    """(bytes, spec) of the detach sequence: --detach-keys, else config.json's
    ``detachKeys``, else ctrl-p,ctrl-q; a bad one is docker's error (exit 1)."""
    spec = value
    if not spec:
        from pallet.client.docker_config import setting
        spec = setting("detachKeys", None, getattr(cli, "config_dir", None)) or DEFAULT_DETACH_KEYS
    try:
        return parse_detach_keys(spec), spec
    except ValueError:
        raise StatusError("Invalid detach keys (%s) provided" % spec, 1) from None


def check_tty(opts):
    if opts.tty and opts.interactive and not os.isatty(0):
        raise StatusError("the input device is not a TTY", 1)
