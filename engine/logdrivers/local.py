"""The ``local`` log driver's files, as dockerd writes them: each record a
protobuf ``LogEntry`` (source, time_nano, line, partial) between two
big-endian 32-bit lengths of it (the second lets a reader walk backwards),
in ``container.log``, rotated to ``container.log.1`` ... (``.gz`` with
``compress``) at ``max-size``, ``max-file`` files in all."""
from __future__ import annotations

import os
import struct

from pallet.engine.logs import LogEntry, RotatingFile

_SOURCE, _TIME, _LINE, _PARTIAL = 0x0A, 0x10, 0x1A, 0x20


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode(stream: str, line: bytes, time_ns: int, partial: bool = False) -> bytes:
    """One framed record."""
    src = stream.encode()
    msg = bytes([_SOURCE]) + _varint(len(src)) + src + bytes([_TIME]) + _varint(time_ns) \
        + bytes([_LINE]) + _varint(len(line)) + line
    if partial:
        msg += bytes([_PARTIAL, 1])
    size = struct.pack(">I", len(msg))
    return size + msg + size


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def decode(msg: bytes) -> LogEntry:
    """A record's message (without its lengths)."""
    stream, line, ns, i = "stdout", b"", 0, 0
    while i < len(msg):
        key, i = _read_varint(msg, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(msg, i)
            if field == 2:
                ns = value
        elif wire == 2:
            n, i = _read_varint(msg, i)
            value, i = msg[i:i + n], i + n
            if field == 1:
                stream = value.decode(errors="replace")
            elif field == 3:
                line = bytes(value)
        else:  # a field of a newer writer: stop here, keep what was read
            break
    return LogEntry(stream, line, ns)


def parse_block(data: bytes, out: list) -> bytes:
    """Append the whole records of ``data`` to ``out``; return the rest."""
    i = 0
    while len(data) - i >= 4:
        (n,) = struct.unpack_from(">I", data, i)
        if len(data) - i < 8 + n:
            break
        try:
            out.append(decode(data[i + 4:i + 4 + n]))
        except IndexError:
            pass  # a torn record (a crash): skip it
        i += 8 + n
    return data[i:]


def read_blocks(files: list[tuple]):
    """The entries of files from :func:`pallet.engine.logs.open_files`, a
    list per block (the json-file reader's, with this format's records)."""
    from pallet.engine.logs import read_blocks as blocks

    return blocks(files, parse_block)


class LocalWriter:
    """Appends records to ``path``, rotating as dockerd's local driver does."""

    def __init__(self, path: str, *, max_size: int, max_file: int, compress: bool):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self._file = RotatingFile(path, max_size, max_file, compress)

    def write(self, stream: str, line: bytes, time_ns: int) -> None:
        self._file.write(encode(stream, line, time_ns))

    def close(self) -> None:
        self._file.close()
