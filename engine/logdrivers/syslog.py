"""The ``syslog`` log driver: each line of the container's output one syslog
message (stdout at severity info, stderr at err, facility ``daemon`` unless
``syslog-facility`` says otherwise) to ``syslog-address``: ``unix://`` or
``unixgram://`` a socket path, ``udp://`` or ``tcp://`` host[:port] (port
514), by default the host's ``/dev/log``.  ``syslog-format`` is dockerd's:
unset (the local ``<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG``), ``rfc3164``,
``rfc5424`` or ``rfc5424micro``; ``tag`` a template of the container
(``{{.ID}}`` by default, ``{{.Name}}``, ``{{.ImageName}}``...)."""
from __future__ import annotations

import datetime
import os
import re
import socket

from pallet.core import errors

FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
              "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
              **{f"local{i}": 16 + i for i in range(8)}}
FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")
SEVERITY = {"stdout": 6, "stderr": 3}   # LOG_INFO, LOG_ERR
DEFAULT_PORT = 514
DEFAULT_TAG = "{{.ID}}"


def parse_address(address: str) -> tuple[str, str | tuple]:
    """``(proto, target)``: a socket path for unix/unixgram, (host, port) else."""
    if not address:
        return "", "/dev/log"
    m = re.fullmatch(r"([a-z+]+)://(.*)", address)
    if m is None or m.group(1) not in ("unix", "unixgram", "udp", "tcp", "tcp+tls"):
        raise errors.InvalidArgument(f"syslog-address should be in form proto://address, got "
                                     f"{address}")
    proto, rest = m.groups()
    if proto in ("unix", "unixgram"):
        try:
            os.stat(rest)
        except OSError as e:
            raise errors.InvalidArgument(f"stat {rest}: {(e.strerror or str(e)).lower()}") \
                from None
        return proto, rest
    host, _, port = rest.rpartition(":") if re.search(r":\d+$", rest) else (rest, "", "")
    host = host.strip("[]")
    return proto, (host, int(port) if port else DEFAULT_PORT)


def facility(opts: dict) -> int:
    name = opts.get("syslog-facility") or "daemon"
    if name in FACILITIES:
        return FACILITIES[name]
    if name.isdigit() and 0 <= int(name) <= 23:
        return int(name)
    raise errors.InvalidArgument("invalid syslog facility")


def validate(opts: dict) -> None:
    """dockerd's create-time checks of the syslog options."""
    parse_address(opts.get("syslog-address") or "")
    facility(opts)
    if (opts.get("syslog-format") or "") not in FORMATS:
        raise errors.InvalidArgument("Invalid syslog format")


_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def render_tag(template: str, info: dict) -> str:
    """A ``tag`` template with the container's fields (Go template syntax,
    fields only)."""
    cid, image_id = info.get("id", ""), info.get("image_id", "")
    fields = {"ID": cid[:12], "FullID": cid, "Name": info.get("name", ""),
              "ImageID": image_id.removeprefix("sha256:")[:12], "ImageFullID": image_id,
              "ImageName": info.get("image", ""), "DaemonName": "docker"}

    def field(m):
        if m.group(1) not in fields:
            raise errors.PalletError(f"failed to initialize logging driver: template: "
                                     f"log-tag:1: can't evaluate field {m.group(1)}")
        return fields[m.group(1)]
    return _FIELD.sub(field, template)


def _stamp(now: datetime.datetime) -> str:
    """Go's time.Stamp: ``Jan _2 15:04:05``."""
    return f"{now.strftime('%b')} {now.day:>2} {now.strftime('%H:%M:%S')}"


def _rfc3339(now: datetime.datetime, micro: bool) -> str:
    text = now.strftime("%Y-%m-%dT%H:%M:%S")
    if micro:
        frac = f"{now.microsecond:06d}".rstrip("0")
        text += f".{frac}" if frac else ""
    off = now.utcoffset()
    if not off:
        return text + "Z"
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return text + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def format_message(fmt: str, pri: int, tag: str, content: str, *, hostname: str, pid: int,
                   now: datetime.datetime) -> str:
    """One message in dockerd's ``syslog-format``, ending with a newline."""
    if fmt == "rfc3164":
        msg = f"<{pri}>{_stamp(now)} {hostname} {tag}[{pid}]: {content}"
    elif fmt in ("rfc5424", "rfc5424micro"):
        msg = (f"<{pri}>1 {_rfc3339(now, fmt == 'rfc5424micro')} {hostname} {tag} {pid} "
               f"{tag} - {content}")
    else:
        msg = f"<{pri}>{_stamp(now)} {tag}[{pid}]: {content}"
    return msg if msg.endswith("\n") else msg + "\n"


class SyslogWriter:
    """A connection to the syslog listener and the message format."""

    def __init__(self, proto: str, target, *, fmt: str, facility: int, tag: str):
        self.proto = proto
        self.target = target
        self.fmt = fmt
        self.facility = facility
        self.tag = tag
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.sock: socket.socket | None = None

    @classmethod
    def open(cls, opts: dict, info: dict) -> "SyslogWriter":
        """Connect (a refused tcp connection fails the start, as in dockerd)."""
        proto, target = parse_address(opts.get("syslog-address") or "")
        w = cls(proto, target, fmt=opts.get("syslog-format") or "", facility=facility(opts),
                tag=render_tag(opts.get("tag") or DEFAULT_TAG, info))
        w.connect()
        return w

    def connect(self) -> None:
        proto, target = self.proto, self.target
        try:
            if proto in ("", "unixgram"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                try:
                    s.connect(target)
                except OSError:
                    if proto:
                        raise
                    s.close()  # the host's /dev/log may be a stream socket
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(target)
            elif proto == "unix":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(target)
            elif proto == "udp":
                s = socket.socket(socket.AF_INET6 if ":" in target[0] else socket.AF_INET,
                                  socket.SOCK_DGRAM)
                s.connect(target)
            elif proto == "tcp":
                s = socket.create_connection(target, timeout=10)
            else:
                raise errors.PalletError("failed to initialize logging driver: tcp+tls "
                                         "syslog is not supported by pallet")
        except OSError as e:
            net = {"": "unixgram", "unixgram": "unixgram"}.get(proto, proto)
            where = target if isinstance(target, str) else f"{target[0]}:{target[1]}"
            raise errors.PalletError(
                f"failed to initialize logging driver: dial {net} {where}: connect: "
                f"{(e.strerror or str(e)).lower()}") from None
        s.setblocking(False)
        self.sock = s

    def write(self, stream: str, line: bytes, time_ns: int) -> None:
        content = line.rstrip(b"\n").decode("utf-8", "replace")
        if not content:
            return  # dockerd sends no empty message
        pri = self.facility * 8 + SEVERITY.get(stream, 6)
        now = datetime.datetime.fromtimestamp(time_ns / 1e9).astimezone()
        msg = format_message(self.fmt, pri, self.tag, content, hostname=self.hostname,
                             pid=self.pid, now=now).encode()
        for attempt in (1, 2):
            if self.sock is None:
                try:
                    self.connect()
                except errors.PalletError:
                    return
            try:
                self.sock.send(msg)
                return
            except BlockingIOError:
                return  # the listener is not keeping up: the line is dropped
            except OSError:
                self.close()  # reconnect once, as dockerd's syslog client does

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


