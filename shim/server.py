"""The shim's ttrpc server, on the shim's poll loop (no thread per call).

Framing and the envelope messages are :mod:`pallet.ttrpc.protocol`'s.
A handler returns the response message (anything with ``encode()``, or
bytes), a :class:`~.loop.Deferred` of it when the answer comes later (Wait,
and the calls that run in a runtime helper), or :class:`AfterReply` when
something must happen once the answer has been sent (Shutdown).  Calls on
one connection are answered as they complete, each on its own stream id,
so a pending Wait never holds up a State.
"""
from __future__ import annotations

import os
import socket

from pallet.ttrpc import protocol as ttrpc

from pallet.shim.loop import Deferred

_HEADER = ttrpc.HEADER


class AfterReply:
    """A response, and ``fn()`` to run once it has been written out."""

    __slots__ = ("message", "fn")

    def __init__(self, message, fn):
        self.message, self.fn = message, fn


def _payload(result) -> bytes:
    if result is None:
        return b""
    if isinstance(result, (bytes, bytearray)):
        return bytes(result)
    return result.encode()


class Server:
    """Serve ``services`` ({service: {method: (request class, handler)}}) on ``listener``."""

    def __init__(self, loop, listener: socket.socket, services: dict, log=None):
        self.loop = loop
        self.listener = listener
        self.services = services
        self.log = log
        self.conns: set = set()

    def start(self) -> None:
        self.listener.setblocking(False)
        self.loop.add_reader(self.listener.fileno(), self._accept)

    def close(self, path: str | None = None) -> None:
        """Stop accepting (removing the socket file ``path`` first) and drop connections."""
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.loop.forget(self.listener.fileno())
        self.listener.close()
        for conn in list(self.conns):
            conn.close()

    def _accept(self) -> None:
        while True:
            try:
                # the C accept: socket.accept() converts the family and type to
                # enums, Python code a shim would run (and copy) for nothing else
                fd, _ = self.listener._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            self.conns.add(_Conn(self, sock))

    def dispatch(self, data: bytes, flags: int):
        """(code, message, result) of one request; result may be a Deferred."""
        try:
            req = ttrpc.decode_request(data)
        except ttrpc.ProtocolError as e:
            return 3, f"invalid ttrpc request: {e}", None
        if flags & ttrpc.FLAG_REMOTE_OPEN:
            return 12, f"{req.service}/{req.method}: streaming is not supported", None
        entry = self.services.get(req.service, {}).get(req.method)
        if entry is None:
            if req.service not in self.services:
                return 12, f"service {req.service} is not served", None
            return 12, f"method {req.service}/{req.method} is not served", None
        cls, handler = entry
        try:
            msg = cls.decode(req.payload) if cls is not None else req.payload
        except ValueError as e:
            return 3, f"decode {req.service}/{req.method} request: {e}", None
        try:
            return 0, "", handler(msg)
        except BaseException as e:  # noqa: BLE001 - every failure travels back as a status
            code, message = ttrpc.status_of(e)
            if code == 2 and self.log is not None:
                self.log(f"{req.method} failed: {type(e).__name__}: {e}")
            return code, message, None


class _Conn:
    def __init__(self, server: Server, sock: socket.socket):
        self.server = server
        self.loop = server.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.skip = 0           # bytes of an oversized frame still to throw away
        self.closed = False
        self.after: list = []   # (offset in the output stream, fn)
        self.sent = 0           # bytes written so far
        self.queued = 0         # bytes queued so far
        self.loop.add_reader(self.fd, self._readable)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.forget(self.fd)
        self.server.conns.discard(self)
        try:
            self.sock.close()
        except OSError:
            pass

    def _readable(self) -> None:
        try:
            data = self.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        if self.skip:
            cut = min(self.skip, len(data))
            self.skip -= cut
            data = data[cut:]
        self.inbuf += data
        self._frames()

    def _frames(self) -> None:
        buf = self.inbuf
        while len(buf) >= 10 and not self.skip:
            length, stream_id, mtype, flags = _HEADER.unpack_from(buf)
            if length > ttrpc.MAX_MESSAGE_SIZE:
                have = len(buf) - 10
                del buf[:10 + min(have, length)]
                self.skip = max(0, length - have)
                self._reply(stream_id, 8, f"message length {length} exceed maximum message size "
                                          f"of {ttrpc.MAX_MESSAGE_SIZE}", None)
                continue
            if len(buf) < 10 + length:
                return
            data = bytes(buf[10:10 + length])
            del buf[:10 + length]
            if mtype != ttrpc.TYPE_REQUEST:
                continue  # data frames belong to streams, which no shim method opens
            if stream_id % 2 != 1:
                self._reply(stream_id, 3, "stream id must be odd for client initiated streams",
                            None)
                continue
            code, message, result = self.server.dispatch(data, flags)
            if isinstance(result, Deferred):
                result.add_callback(lambda d, sid=stream_id: self._deferred(sid, d))
            else:
                self._reply(stream_id, code, message, result)

    def _deferred(self, stream_id: int, d: Deferred) -> None:
        if d.error is not None:
            code, message = ttrpc.status_of(d.error)
            if code == 2 and self.server.log is not None:
                self.server.log(f"call failed: {type(d.error).__name__}: {d.error}")
            self._reply(stream_id, code, message, None)
        else:
            self._reply(stream_id, 0, "", d.value)

    def _reply(self, stream_id: int, code: int, message: str, result) -> None:
        if self.closed:
            if isinstance(result, AfterReply):
                result.fn()
            return
        after = None
        if isinstance(result, AfterReply):
            after, result = result.fn, result.message
        try:
            payload = _payload(result) if code == 0 else b""
        except Exception as e:  # noqa: BLE001 - an unencodable answer is still an answer
            code, message, payload = 13, f"encode response: {e}", b""
        body = ttrpc.encode_response(code, message, payload)
        if len(body) > ttrpc.MAX_MESSAGE_SIZE:
            body = ttrpc.encode_response(8, f"response of {len(body)} bytes exceeds the maximum "
                                            f"message size of {ttrpc.MAX_MESSAGE_SIZE}", b"")
        frame = _HEADER.pack(len(body), stream_id, ttrpc.TYPE_RESPONSE, 0) + body
        self.outbuf += frame
        self.queued += len(frame)
        if after is not None:
            self.after.append((self.queued, after))
        self._flush()

    def _flush(self) -> None:
        while self.outbuf:
            try:
                n = self.sock.send(self.outbuf)
            except (BlockingIOError, InterruptedError):
                self.loop.add_writer(self.fd, self._flush)
                return
            except OSError:
                self._run_after(everything=True)
                self.close()
                return
            del self.outbuf[:n]
            self.sent += n
            self._run_after()
        self.loop.remove_writer(self.fd)

    def _run_after(self, everything: bool = False) -> None:
        while self.after and (everything or self.after[0][0] <= self.sent):
            _, fn = self.after.pop(0)
            fn()
