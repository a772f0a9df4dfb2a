"""Docker's raw-stream framing and the hijacked attach connection.

Without a TTY, attach and logs send stdout and stderr over one byte stream as
frames: an 8-byte header ``[stream, 0, 0, 0, size (big-endian uint32)]``
followed by ``size`` bytes (Docker Engine API, "Stream format").  With a TTY
the bytes go unframed.
"""
from __future__ import annotations

import asyncio
import struct

STDIN, STDOUT, STDERR = 0, 1, 2
STREAM_IDS = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR}

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"


def frame(stream: int | str, data: bytes) -> bytes:
    """One multiplexed frame carrying ``data`` for ``stream``."""
    if isinstance(stream, str):
        stream = STREAM_IDS[stream]
    return struct.pack(">BxxxI", stream, len(data)) + data


def encode(stream: int | str, data: bytes, tty: bool) -> bytes:
    """``data`` as it goes on the wire: unframed with a TTY, framed without."""
    return data if tty else frame(stream, data)


class _RawParser:
    """Takes the place of aiohttp's HTTP parser once a connection is hijacked:
    every byte the client sends after the request goes to ``reader``
    (the container's stdin, when the client asked for it)."""

    def __init__(self, reader: asyncio.StreamReader):
        self.reader = reader

    def feed_data(self, data: bytes):
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self):
        self.reader.feed_eof()


class _HalfCloseProtocol(asyncio.Protocol):
    """Stands between the transport and aiohttp's protocol on a hijacked
    connection, only to keep the connection open after the client's EOF."""

    def __init__(self, inner, stdin: asyncio.StreamReader):
        self.inner = inner
        self.stdin = stdin

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool:
        self.stdin.feed_eof()
        return True

    def connection_lost(self, exc) -> None:
        if not self.stdin.at_eof():
            self.stdin.feed_eof()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class Hijacked:
    """A client connection taken over for a raw stream (attach).

    When the client asked to upgrade (``Connection: Upgrade``,
    ``Upgrade: tcp``) the answer is ``101 UPGRADED`` and the socket then carries
    the raw stream both ways, as dockerd does.  Otherwise the answer is a
    ``200`` whose body is the stream (chunked), and stdin is not read.
    """

    def __init__(self, request, content_type: str):
        self.request = request
        self.content_type = content_type
        self.upgraded = _wants_upgrade(request)
        self.stdin = asyncio.StreamReader()
        self._resp = None
        self._transport = None
        self.closed = False

    async def start(self) -> None:
        from aiohttp import web

        req = self.request
        req["hijacked"] = True
        if self.upgraded:
            resp = web.StreamResponse(status=101, reason="UPGRADED", headers={
                "Content-Type": self.content_type,
                "Connection": "Upgrade",
                "Upgrade": "tcp",
            })
            resp.force_close()
            await resp.prepare(req)
            self._transport = req.protocol.transport
            req.protocol.set_parser(_RawParser(self.stdin))
            req.protocol.keep_alive(False)
            # the docker client half-closes its side when it has no stdin to
            # send; keep ours open for the output (asyncio closes the transport
            # when eof_received() returns a false value)
            self._transport.set_protocol(_HalfCloseProtocol(req.protocol, self.stdin))
        else:
            resp = web.StreamResponse(status=200, headers={"Content-Type": self.content_type})
            resp.enable_chunked_encoding()
            resp.force_close()
            await resp.prepare(req)
            self.stdin.feed_eof()
        self._resp = resp

    async def write(self, data: bytes) -> bool:
        """Send bytes; False once the client has gone."""
        if self.closed or not data:
            return not self.closed
        try:
            if self._transport is not None:
                if self._transport.is_closing():
                    self.closed = True
                    return False
                self._transport.write(data)
                await self._resp._payload_writer.drain()
            else:
                await self._resp.write(data)
        except (ConnectionError, RuntimeError, OSError):
            self.closed = True
            return False
        return True

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self._transport is not None:
                # half-close so the client sees the end of the stream even
                # while it keeps its side open for stdin
                if self._transport.can_write_eof():
                    self._transport.write_eof()
                self._transport.close()
            elif self._resp is not None:
                await self._resp.write_eof()
        except (ConnectionError, RuntimeError, OSError):
            pass

    @property
    def response(self):
        return self._resp

    def client_gone(self) -> bool:
        if self._transport is not None:
            return self._transport.is_closing()
        transport = self.request.transport
        return transport is None or transport.is_closing()


def _wants_upgrade(request) -> bool:
    connection = request.headers.get("Connection", "")
    tokens = {t.strip().lower() for t in connection.split(",")}
    return "upgrade" in tokens and request.headers.get("Upgrade", "").lower() == "tcp"
