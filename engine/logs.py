"""The json-file log driver: one JSON object per line in
``<container_dir>/<id>-json.log``, ``{"log": ..., "stream": ..., "time": ...}``,
as dockerd writes it, rotated by ``max-size``/``max-file``; the ``none``
driver; and the in-memory fan-out to attached clients and to ``logs --follow``."""
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


_EPOCH_DAY = 719163  # datetime.date(1970, 1, 1).toordinal()


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time written by :func:`rfc3339nano`.

    Called for every line a json-file log gives back, so the usual shape
    (``YYYY-MM-DDTHH:MM:SS``) is read by slicing; anything else goes through
    strptime, which also gives the error."""
    base, _, frac = text.rstrip("Z").partition(".")
    if len(base) == 19 and base[10] == "T" and base[4] == base[7] == "-" \
            and base[13] == base[16] == ":" and base[:4].isdigit():
        import datetime

        try:
            day = datetime.date(int(base[:4]), int(base[5:7]), int(base[8:10])).toordinal()
            hh, mm, ss = int(base[11:13]), int(base[14:16]), int(base[17:19])
        except ValueError:
            day = None
        if day is not None and 0 <= hh < 24 and 0 <= mm < 60 and 0 <= ss < 62:
            secs = (day - _EPOCH_DAY) * 86400 + hh * 3600 + mm * 60 + ss
            return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])
    import calendar

    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


class LogEntry:
    __slots__ = ("stream", "data", "time_ns")

    def __init__(self, stream: str, data: bytes, time_ns: int):
        self.stream = stream
        self.data = data
        self.time_ns = time_ns


def check_log_config(log_config: dict) -> dict:
    """Check ``HostConfig.LogConfig`` as dockerd does at create (the driver
    and the option names; values wait for the start); returns it completed."""
    from pallet.engine import logdrivers

    return logdrivers.validate(log_config)


def rotated_files(path: str) -> list[str]:
    """The files of a json-file log, oldest first: ``path.N[.gz]`` ... ``path.1``, ``path``."""
    import re

    d, base = os.path.split(path)
    pattern = re.compile(re.escape(base) + r"\.(\d+)(\.gz)?$")
    found = []
    try:
        for name in os.listdir(d or "."):
            m = pattern.match(name)
            if m:
                found.append((int(m.group(1)), os.path.join(d, name)))
    except OSError:
        pass
    return [p for _, p in sorted(found, reverse=True)] + [path]


class ContainerLog:
    """Writes a container's output to its json-file log and hands every chunk
    to the live subscribers (attach, logs --follow) in the same step, so that a
    reader that snapshots the file size and subscribes at once misses nothing.

    With ``max_size`` the file is rotated as dockerd's json-file driver does
    (``-json.log`` becomes ``.1``, ``.1`` becomes ``.2``... keeping ``max_file``
    files in all, ``.N.gz`` with ``compress``); the ``none`` driver keeps no
    file, only the live fan-out."""

    def __init__(self, path: str, *, driver: str = "json-file", max_size: int = 0,
                 max_file: int = 1, compress: bool = False, log_config: dict | None = None,
                 container=None):
        self.path = path
        self.driver = driver
        self.max_size = max_size
        self.max_file = max_file
        self.compress = compress
        self.log_config = log_config
        self.container = container
        self._writers: list = []   # the other drivers' writers (engine/logdrivers)
        self._file: RotatingFile | None = None
        self._partial = {"stdout": b"", "stderr": b""}
        self._raw_subscribers: set[asyncio.Queue] = set()
        self._line_subscribers: set[asyncio.Queue] = set()

    @classmethod
    def for_config(cls, path: str, log_config: dict | None, container=None) -> "ContainerLog":
        """The log of a container (``container`` gives the other drivers its
        directory and the fields of their templates); the driver's options
        are read at :meth:`open`, the container's start."""
        return cls(path, driver=(log_config or {}).get("Type") or "json-file",
                   log_config=log_config, container=container)

    def open(self) -> None:
        """Start the driver: "failed to initialize logging driver" errors here."""
        from pallet.engine import logdrivers

        opts = (self.log_config or {}).get("Config") or {}
        if self._file is None and self.driver == "json-file":
            if self.log_config is not None:
                s = logdrivers.json_file_settings(opts)
                self.max_size, self.max_file, self.compress = \
                    s["max_size"], s["max_file"], s["compress"]
            self._file = RotatingFile(self.path, self.max_size, self.max_file, self.compress)
        elif not self._writers and self.container is not None:
            c = self.container
            self._writers = logdrivers.open_writers(self.log_config, c.dir, {
                "id": c.id, "name": c.name, "image": c.data["Config"].get("Image", ""),
                "image_id": c.data.get("Image", "")})

    def close(self) -> None:
        for stream in ("stdout", "stderr"):
            self.flush(stream)
        if self._file is not None:
            self._file.close()
            self._file = None
        writers, self._writers = self._writers, []
        for w in writers:
            w.close()
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
        if self._file is not None:
            entry = {"log": line.decode("utf-8", "replace"), "stream": stream,
                     "time": rfc3339nano(now)}
            self._file.write((json.dumps(entry) + "\n").encode())
        for w in self._writers:
            w.write(stream, line, now)
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


class RotatingFile:
    """An append-only log file (json-file's, local's), rotated with
    :func:`rotate` before a record would take it past ``max_size`` (0: never).
    Write errors are dropped: a full disk must not stop the container's output."""

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1, compress: bool = False):
        self.path = path
        self.max_size = max_size
        self.max_file = max_file
        self.compress = compress
        self._fd: int | None = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, data: bytes) -> None:
        """Append one whole record (rotating first when it would not fit)."""
        try:
            if self.max_size and self._size and self._size + len(data) > self.max_size:
                os.close(self._fd)
                self._fd = None
                rotate(self.path, self.max_file, self.compress)
                self._fd = self._open()
                self._size = 0
            if self._fd is not None:
                os.write(self._fd, data)
                self._size += len(data)
        except OSError:
            pass

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def rotate(path: str, max_file: int, compress: bool) -> None:
    """``path`` -> ``path.1`` -> ... -> ``path.<max_file-1>`` (``.gz`` with
    ``compress``); the oldest goes (dockerd's rotation, json-file and local)."""
    if max_file <= 1:
        os.truncate(path, 0)
        return
    for i in range(max_file - 1, 0, -1):
        for sfx in ("", ".gz"):
            src = f"{path}.{i}{sfx}"
            if not os.path.exists(src):
                continue
            if i == max_file - 1:
                os.unlink(src)
            else:
                os.replace(src, f"{path}.{i + 1}{sfx}")
    os.replace(path, f"{path}.1")
    if compress:
        _gzip_file(f"{path}.1")


def _gzip_file(path: str) -> None:
    import gzip
    import shutil

    with open(path, "rb") as src, gzip.open(path + ".gz.tmp", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(path + ".gz.tmp", path + ".gz")
    os.unlink(path)


def _parse_lines(data: bytes, out: list) -> None:
    """json-file lines to entries.  The block goes to the C decoder in one call
    as a JSON array; only if that fails (a line torn by a crash) line by line,
    skipping what does not parse."""
    lines = [line for line in data.splitlines() if line.strip()]
    if not lines:
        return
    try:
        objs = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        objs = []
        for line in lines:
            try:
                objs.append(json.loads(line))
            except ValueError:
                continue
    seconds: dict[str, int] = {}  # lines of one second share the parse of their date
    for obj in objs:
        try:
            stamp = obj["time"]
            if len(stamp) > 21 and stamp[19] == "." and stamp[-1] == "Z":
                base = stamp[:19]
                ns = seconds.get(base)
                if ns is None:
                    ns = seconds[base] = parse_time(base + "Z")
                frac = stamp[20:-1]
                ns += int(frac.ljust(9, "0")[:9]) if frac.isdigit() else 0
            else:
                ns = parse_time(stamp)
            out.append(LogEntry(obj.get("stream", "stdout"), obj.get("log", "").encode(), ns))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue


def open_files(path: str) -> list[tuple]:
    """Open every file of the log now, with the current size of the live one:
    rotations that happen while they are read do not disturb the reader."""
    out = []
    for name in (rotated_files(path) if path else []):
        try:
            f = open(name, "rb")
        except OSError:
            continue
        out.append((f, name.endswith(".gz"), os.fstat(f.fileno()).st_size))
    return out


BLOCK = 1 << 20  # bytes of log file parsed at a time when streaming


def read_blocks(files: list[tuple], parse=None):
    """The entries of files from :func:`open_files`, a list per block of about
    :data:`BLOCK` bytes, so that the first ones can be sent while the rest is
    read.  ``parse(data, out)`` appends the whole records of ``data`` to
    ``out`` and returns what is left of a record cut at the block's end
    (default: json-file lines).  The caller closes the files."""
    import gzip

    parse = parse or _parse_json_block
    for f, gz, size in files:
        try:
            reader = gzip.open(f, "rb") if gz else f
            left = None if gz else size  # the live file: what it held when opened
            carry = b""
            for block in iter(lambda: reader.read(BLOCK), b""):
                if left is not None:
                    block = block[:left]
                    left -= len(block)
                out: list[LogEntry] = []
                carry = parse(carry + block, out)
                if out:
                    yield out
                if left == 0:
                    break
            if carry and parse is _parse_json_block:
                out = []
                _parse_lines(carry, out)
                if out:
                    yield out
        except (OSError, EOFError, ValueError):  # ValueError: closed by the caller
            continue


def _parse_json_block(data: bytes, out: list) -> bytes:
    head, sep, carry = data.rpartition(b"\n")
    _parse_lines(head + sep, out)
    return carry


def read_open_files(files: list[tuple], blocks=None) -> list[LogEntry]:
    """The entries of files from :func:`open_files` (which it closes);
    ``blocks`` reads another driver's format (default json-file's)."""
    out: list[LogEntry] = []
    try:
        for block in (blocks or read_blocks)(files):
            out += block
    finally:
        for f, _, _ in files:
            f.close()
    return out


def read_entries(path: str) -> list[LogEntry]:
    """Every entry of a json-file log, its rotated files first."""
    return read_open_files(open_files(path))


BATCH = 4096  # entries per batch read back from the file


async def follow(log: ContainerLog | None, path: str, *, streams: set[str], tail: int | None,
                 since_ns: int = 0, until_ns: int | None = None,
                 follow: bool = False, running=lambda: False,
                 kind: str = "json") -> AsyncIterator[list[LogEntry]]:
    """The entries ``docker logs`` shows, in batches (one write each): the
    file's (last ``tail``), then, with ``follow``, the live ones until the
    container stops, each batch what had arrived by then.  ``kind``: the
    file's format, ``json`` (json-file) or ``local`` (local, dual logging)."""
    if kind == "local":
        from pallet.engine.logdrivers.local import read_blocks as reader
    else:
        reader = read_blocks
    queue = None
    if follow and log is not None and running():
        queue = log.subscribe_lines()
    try:
        files = open_files(path)
        loop = asyncio.get_running_loop()

        def keep(e: LogEntry) -> bool:
            return (e.stream in streams and e.time_ns >= since_ns
                    and (until_ns is None or e.time_ns <= until_ns))

        if tail is None:
            # streamed: a block is sent while the next one is parsed
            blocks = reader(files)
            try:
                while (block := await loop.run_in_executor(None, next, blocks, None)) is not None:
                    batch = [e for e in block if keep(e)]
                    if batch:
                        yield batch
            finally:
                for f, _, _ in files:
                    f.close()
        else:
            entries = await loop.run_in_executor(None, read_open_files, files, reader)
            entries = [e for e in entries if keep(e)]
            entries = entries[-tail:] if tail > 0 else []
            for i in range(0, len(entries), BATCH):
                yield entries[i:i + BATCH]
        if queue is None:
            return
        while True:
            arrived = [await queue.get()]
            while arrived[-1] is not None and not queue.empty() and len(arrived) < BATCH:
                arrived.append(queue.get_nowait())
            batch, ended = [], False
            for e in arrived:
                if e is None or (until_ns is not None and e.time_ns > until_ns):
                    ended = True
                    break
                if keep(e):
                    batch.append(e)
            if batch:
                yield batch
            if ended:
                return
    finally:
        if queue is not None:
            log.unsubscribe_lines(queue)
