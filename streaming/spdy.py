"""SPDY/3.1, the framing Kubernetes' SPDY streams run on, sans I/O.

Frames ("SPDY Protocol - Draft 3.1", section 2.2): every frame has an
8-byte header.  A control frame starts with the control bit, the version
(3) and the type; a data frame with a 31-bit stream id.  Both then carry
8 bits of flags and a 24-bit length.  Header blocks (SYN_STREAM, SYN_REPLY,
HEADERS) are a count and length-prefixed names and values, compressed with
zlib using the protocol's dictionary (section 2.6.10.1), one compression
context per direction for the whole session.

:class:`Session` is one side of a connection: feed it the bytes received
(:meth:`Session.receive` returns what happened), call its methods to reply,
send data or close, and write out :meth:`Session.data_to_send`.  It echoes
PINGs itself.  Kubernetes' peer (moby/spdystream) does no flow control, so
neither side sends WINDOW_UPDATE; received ones are accepted and ignored.
"""
from __future__ import annotations

import struct
import zlib

import attrs

VERSION = 3

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = \
    1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes (section 2.4.2)
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, \
    INTERNAL_ERROR, FLOW_CONTROL_ERROR, STREAM_IN_USE, STREAM_ALREADY_CLOSED = range(1, 10)
# GOAWAY status codes (section 2.6.6)
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, GOAWAY_INTERNAL_ERROR = 0, 1, 2

#: the largest data frame this side sends (the format allows 2**24 - 1)
MAX_SEND = 32 * 1024
#: the largest frame accepted (a peer sending more is broken)
MAX_FRAME = 1 << 24

# The zlib dictionary of SPDY/3 header blocks (section 2.6.10.1): these words,
# each with its 32-bit big-endian length in front, then the tail as it is.
_DICTIONARY_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base "
    "content-encoding content-language content-length content-location content-md5 "
    "content-range content-type date etag expect expires from host if-match if-modified-since "
    "if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer "
    "transfer-encoding upgrade user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK"] + "version HTTP/1.1 url public set-cookie keep-alive origin".split()
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504"
    "505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
    "Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) + \
    _DICTIONARY_TAIL.encode()


class ProtocolError(Exception):
    """The peer broke the framing; the session cannot go on."""


# --- header blocks ---------------------------------------------------------------------

def encode_headers(headers: dict[str, list[str] | str]) -> bytes:
    """A header block before compression: names lower-cased (the spec requires
    it), several values of one name joined by NUL."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n = name.lower().encode()
        v = (values if isinstance(values, str) else "\0".join(values)).encode()
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, list[str]]:
    """A decompressed header block as name -> values."""
    try:
        (count,), pos = struct.unpack_from(">I", block, 0), 4
        headers: dict[str, list[str]] = {}
        for _ in range(count):
            (n,), pos = struct.unpack_from(">I", block, pos), pos + 4
            name, pos = block[pos:pos + n].decode(), pos + n
            (n,), pos = struct.unpack_from(">I", block, pos), pos + 4
            value, pos = block[pos:pos + n].decode(), pos + n
            if name in headers:
                raise ProtocolError(f"header {name!r} appears twice")
            headers[name] = value.split("\0")
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"bad header block: {e}") from None
    return headers


class HeaderCompressor:
    """The sending side's zlib context (one per session)."""

    def __init__(self):
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def compress(self, headers: dict) -> bytes:
        block = encode_headers(headers)
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The receiving side's zlib context (one per session)."""

    def __init__(self):
        self._z = zlib.decompressobj(15, DICTIONARY)

    def decompress(self, data: bytes) -> dict[str, list[str]]:
        try:
            return decode_headers(self._z.decompress(data))
        except zlib.error as e:
            raise ProtocolError(f"header block does not inflate: {e}") from None


# --- frames -------------------------------------------------------------------------------

@attrs.frozen
class Frame:
    """A frame as read: ``type`` 0 for data, else the control type; the
    fields of that type in ``stream_id``, ``flags``, ``data``, ``headers``
    and ``value`` (status code, ping id, delta window size, settings)."""

    type: int
    flags: int = 0
    stream_id: int = 0
    data: bytes = b""
    headers: dict = attrs.field(factory=dict)
    value: object = 0
    associated_id: int = 0
    priority: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def control_frame(ftype: int, flags: int, payload: bytes) -> bytes:
    if len(payload) >= MAX_FRAME:
        raise ValueError("control frame too long")
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, data: bytes, flags: int = 0) -> bytes:
    if len(data) >= MAX_FRAME:
        raise ValueError("data frame too long")
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


class FrameReader:
    """Cuts a byte stream into frames; header blocks are inflated in order."""

    def __init__(self):
        self._buf = bytearray()
        self._inflate = HeaderDecompressor()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            first, second = struct.unpack_from(">II", self._buf, 0)
            length = second & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            flags = second >> 24
            if first & 0x80000000:
                version, ftype = (first >> 16) & 0x7FFF, first & 0xFFFF
                if version != VERSION:
                    raise ProtocolError(f"unsupported spdy version {version}")
                frame = self._control(ftype, flags, payload)
                if frame is not None:
                    frames.append(frame)
            else:
                frames.append(Frame(0, flags, first & 0x7FFFFFFF, payload))
        return frames

    def _control(self, ftype: int, flags: int, p: bytes) -> Frame | None:
        try:
            if ftype == SYN_STREAM:
                sid, assoc, pri = struct.unpack_from(">IIB", p, 0)
                return Frame(ftype, flags, sid & 0x7FFFFFFF,
                             headers=self._inflate.decompress(p[10:]),
                             associated_id=assoc & 0x7FFFFFFF, priority=pri >> 5)
            if ftype in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", p, 0)
                return Frame(ftype, flags, sid & 0x7FFFFFFF, headers=self._inflate.decompress(p[4:]))
            if ftype in (RST_STREAM, WINDOW_UPDATE):
                sid, value = struct.unpack_from(">II", p, 0)
                return Frame(ftype, flags, sid & 0x7FFFFFFF, value=value & 0x7FFFFFFF)
            if ftype == PING:
                return Frame(ftype, flags, value=struct.unpack_from(">I", p, 0)[0])
            if ftype == GOAWAY:
                last, status = struct.unpack_from(">II", p, 0) if len(p) >= 8 else \
                    (struct.unpack_from(">I", p, 0)[0], 0)
                return Frame(ftype, flags, last & 0x7FFFFFFF, value=status)
            if ftype == SETTINGS:
                (count,) = struct.unpack_from(">I", p, 0)
                entries = []
                for i in range(count):
                    fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                    entries.append((fid >> 24, fid & 0xFFFFFF, value))
                return Frame(ftype, flags, value=tuple(entries))
        except struct.error:
            raise ProtocolError(f"control frame of type {ftype} is too short") from None
        return None  # unknown control frames are ignored (section 2.2.1)


# --- sessions --------------------------------------------------------------------------------

@attrs.frozen
class StreamOpened:
    stream_id: int
    headers: dict
    fin: bool


@attrs.frozen
class StreamData:
    stream_id: int
    data: bytes


@attrs.frozen
class StreamEnded:
    """The peer half-closed the stream (FIN): no more data comes on it."""

    stream_id: int


@attrs.frozen
class StreamReset:
    stream_id: int
    status: int


@attrs.frozen
class GoAway:
    last_stream_id: int
    status: int


class Session:
    """One end of a SPDY/3.1 session (the server's by default: it accepts
    odd stream ids from the client and would open even ones)."""

    def __init__(self, server: bool = True):
        self.server = server
        self._reader = FrameReader()
        self._deflate = HeaderCompressor()
        self._out = bytearray()
        self._last_remote = 0
        self._next_local = 2 if server else 1
        self.open: dict[int, dict] = {}          # stream id -> headers, while not fully closed
        self._local_closed: set[int] = set()
        self._remote_closed: set[int] = set()
        self.gone_away = False

    # -- input
    def receive(self, data: bytes) -> list:
        """Take bytes from the peer; the events they carry, in order."""
        events: list = []
        for f in self._reader.feed(data):
            if f.type == 0:
                if f.stream_id not in self.open:
                    continue  # data for a stream already gone: dropped, as spdystream does
                if f.data:
                    events.append(StreamData(f.stream_id, f.data))
                if f.fin:
                    self._remote_end(f.stream_id, events)
            elif f.type == SYN_STREAM:
                self._syn_stream(f, events)
            elif f.type == SYN_REPLY or f.type == HEADERS:
                if f.fin and f.stream_id in self.open:
                    self._remote_end(f.stream_id, events)
            elif f.type == RST_STREAM:
                if f.stream_id in self.open:
                    self._forget(f.stream_id)
                    events.append(StreamReset(f.stream_id, int(f.value)))
            elif f.type == PING:
                # ids of the peer's pings have the other parity than ours: echo them
                if (f.value & 1) == (0 if self.server else 1):
                    continue
                self._out += control_frame(PING, 0, struct.pack(">I", f.value))
            elif f.type == GOAWAY:
                self.gone_away = True
                events.append(GoAway(f.stream_id, int(f.value)))
        return events

    def _syn_stream(self, f: Frame, events: list) -> None:
        valid = (f.stream_id & 1) == (1 if self.server else 0) and f.stream_id > self._last_remote
        if not valid or self.gone_away:
            self.reset(f.stream_id, PROTOCOL_ERROR if not valid else REFUSED_STREAM)
            return
        self._last_remote = f.stream_id
        self.open[f.stream_id] = f.headers
        if f.flags & FLAG_UNIDIRECTIONAL:
            self._local_closed.add(f.stream_id)
        events.append(StreamOpened(f.stream_id, f.headers, f.fin))
        if f.fin:
            self._remote_end(f.stream_id, events)

    def _remote_end(self, sid: int, events: list) -> None:
        if sid in self._remote_closed:
            return
        self._remote_closed.add(sid)
        events.append(StreamEnded(sid))
        if sid in self._local_closed:
            self._forget(sid)

    def _forget(self, sid: int) -> None:
        self.open.pop(sid, None)
        self._local_closed.discard(sid)
        self._remote_closed.discard(sid)

    # -- output
    def reply(self, stream_id: int, headers: dict | None = None, fin: bool = False) -> None:
        """SYN_REPLY to a stream the peer opened."""
        payload = struct.pack(">I", stream_id) + self._deflate.compress(headers or {})
        self._out += control_frame(SYN_REPLY, FLAG_FIN if fin else 0, payload)
        if fin:
            self._local_end(stream_id)

    def open_stream(self, headers: dict, fin: bool = False) -> int:
        """SYN_STREAM: a stream of our own (Kubernetes' servers never open one)."""
        sid = self._next_local
        self._next_local += 2
        payload = struct.pack(">IIBB", sid, 0, 0, 0) + self._deflate.compress(headers)
        self._out += control_frame(SYN_STREAM, FLAG_FIN if fin else 0, payload)
        self.open[sid] = headers
        if fin:
            self._local_end(sid)
        return sid

    def send(self, stream_id: int, data: bytes, fin: bool = False) -> None:
        """Data on a stream, cut into frames of at most :data:`MAX_SEND` bytes."""
        if stream_id in self._local_closed or stream_id not in self.open:
            return
        view = memoryview(data)
        while len(view) > MAX_SEND:
            self._out += data_frame(stream_id, bytes(view[:MAX_SEND]))
            view = view[MAX_SEND:]
        self._out += data_frame(stream_id, bytes(view), FLAG_FIN if fin else 0)
        if fin:
            self._local_end(stream_id)

    def close_stream(self, stream_id: int) -> None:
        """Half-close our side of the stream (an empty data frame with FIN)."""
        if stream_id in self.open and stream_id not in self._local_closed:
            self._out += data_frame(stream_id, b"", FLAG_FIN)
            self._local_end(stream_id)

    def _local_end(self, sid: int) -> None:
        self._local_closed.add(sid)
        if sid in self._remote_closed:
            self._forget(sid)

    def reset(self, stream_id: int, status: int = CANCEL) -> None:
        self._out += control_frame(RST_STREAM, 0, struct.pack(">II", stream_id, status))
        self._forget(stream_id)

    def ping(self, ping_id: int) -> None:
        self._out += control_frame(PING, 0, struct.pack(">I", ping_id))

    def go_away(self, status: int = GOAWAY_OK) -> None:
        """GOAWAY naming the last stream the peer opened."""
        if not self.gone_away:
            self.gone_away = True
            self._out += control_frame(GOAWAY, 0, struct.pack(">II", self._last_remote, status))

    def data_to_send(self) -> bytes:
        """The bytes to write to the peer now (and forget)."""
        out, self._out = bytes(self._out), bytearray()
        return out
