"""ttrpc: containerd's light RPC protocol, spoken between containerd and its shims.

Wire format (containerd/ttrpc PROTOCOL.md): every message is a 10-byte header
(uint32 big-endian data length, uint32 big-endian stream id, uint8 message
type, uint8 flags) followed by the data.  A unary call is one Request frame
(type 1) from the client on a new odd stream id, answered by one Response
frame (type 2) on the same stream id.  The data of a Request is the protobuf
message ``ttrpc.Request{service=1, method=2, payload=3, timeout_nano=4,
metadata=5}`` and that of a Response ``ttrpc.Response{status=1
(google.rpc.Status{code=1, message=2}), payload=2}``; payload is the
serialised method message.  Data frames (type 3) belong to streaming calls,
which pallet does not serve.

The two envelope messages are declared with :mod:`pallet.proto.wire`, the
shim's light protobuf codec: this keeps the module free of generated code,
so that a shim pays only for the messages it uses.

This module imports nothing heavy: it is loaded by every pallet-shim.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
import threading

from pallet.core import errors
from pallet.linux import sockets
from pallet.proto import wire

log = logging.getLogger("pallet.ttrpc")

HEADER = struct.Struct(">IIBB")
HEADER_SIZE = HEADER.size  # 10
MAX_MESSAGE_SIZE = 4 << 20

TYPE_REQUEST = 1
TYPE_RESPONSE = 2
TYPE_DATA = 3

FLAG_REMOTE_CLOSED = 0x1
FLAG_REMOTE_OPEN = 0x2

# google.rpc.Code numbers, by the names pallet's error classes carry.
CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5, "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
    "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13,
    "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
CODE_NAMES = {v: k for k, v in CODES.items()}


class ProtocolError(Exception):
    """The peer sent bytes that are not ttrpc."""


# --- the two envelope messages, in the shim's light wire codec ------------------

_KeyValue = wire.message("ttrpc.KeyValue", (1, "key", "string"), (2, "value", "string"))
_Request = wire.message("ttrpc.Request", (1, "service", "string"), (2, "method", "string"),
                        (3, "payload", "bytes"), (4, "timeout_nano", "int64"),
                        (5, "metadata", ("*", _KeyValue)))
_Status = wire.message("google.rpc.Status", (1, "code", "int32"), (2, "message", "string"))
_Response = wire.message("ttrpc.Response", (1, "status", _Status), (2, "payload", "bytes"))


def encode_request(service: str, method: str, payload: bytes, timeout_nano: int = 0,
                   metadata: tuple[tuple[str, str], ...] = ()) -> bytes:
    """Serialise a ttrpc.Request."""
    return _Request(service=service, method=method, payload=payload, timeout_nano=timeout_nano,
                    metadata=[_KeyValue(key=k, value=v) for k, v in metadata]).encode()


class Request:
    """A decoded ttrpc.Request."""

    __slots__ = ("service", "method", "payload", "timeout_nano", "metadata")

    def __init__(self, service="", method="", payload=b"", timeout_nano=0, metadata=()):
        self.service = service
        self.method = method
        self.payload = payload
        self.timeout_nano = timeout_nano
        self.metadata = metadata


def decode_request(data: bytes) -> Request:
    """Parse a ttrpc.Request (unknown fields are skipped, as protobuf does)."""
    try:
        r = _Request.decode(data)
    except wire.DecodeError as e:
        raise ProtocolError(str(e)) from None
    return Request(r.service, r.method, r.payload, r.timeout_nano,
                   tuple((kv.key, kv.value) for kv in r.metadata))


def encode_response(code: int, message: str, payload: bytes) -> bytes:
    """Serialise a ttrpc.Response; the status is always present, as ttrpc-go sends it."""
    return _Response(status=_Status(code=code, message=message), payload=payload).encode()


def decode_response(data: bytes) -> tuple[int, str, bytes]:
    """Parse a ttrpc.Response into (code, message, payload); no status means OK."""
    try:
        r = _Response.decode(data)
    except wire.DecodeError as e:
        raise ProtocolError(str(e)) from None
    if r.status is None:
        return 0, "", r.payload
    return r.status.code, r.status.message, r.payload


# --- framing -------------------------------------------------------------------

def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Read exactly ``size`` bytes; None on a clean end of stream before any byte."""
    if size == 0:
        return b""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            if got == 0:
                return None
            raise ProtocolError("connection closed in the middle of a message")
        got += n
    return bytes(buf)


def _discard(sock: socket.socket, size: int) -> None:
    while size > 0:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise ProtocolError("connection closed in the middle of a message")
        size -= len(chunk)


class _Oversized:
    """Marks a frame whose data was longer than MAX_MESSAGE_SIZE (and was skipped)."""

    def __init__(self, length: int):
        self.length = length


def read_frame(sock: socket.socket):
    """Read one frame: (stream id, type, flags, data) or None at end of stream.

    A frame longer than MAX_MESSAGE_SIZE is read and thrown away, and its data is
    returned as an ``_Oversized`` marker, so that the connection stays usable
    and the caller can answer RESOURCE_EXHAUSTED on that stream, as ttrpc-go does.
    """
    header = _recv_exact(sock, HEADER_SIZE)
    if header is None:
        return None
    length, stream_id, mtype, flags = HEADER.unpack(header)
    if length > MAX_MESSAGE_SIZE:
        _discard(sock, length)
        return stream_id, mtype, flags, _Oversized(length)
    data = _recv_exact(sock, length)
    if data is None:
        raise ProtocolError("connection closed in the middle of a message")
    return stream_id, mtype, flags, data


def frame(stream_id: int, mtype: int, flags: int, data: bytes) -> bytes:
    """One frame: header and data."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise errors.PalletError(
            f"ttrpc message of {len(data)} bytes exceeds the maximum of {MAX_MESSAGE_SIZE}")
    return HEADER.pack(len(data), stream_id, mtype, flags) + data


# --- errors --------------------------------------------------------------------

def status_of(exc: BaseException) -> tuple[int, str]:
    """The gRPC status (code, message) that an exception stands for.

    The one place where pallet's error classes become ttrpc statuses; anything
    that is not a PalletError is UNKNOWN with its text.
    """
    if isinstance(exc, errors.PalletError):
        return CODES.get(exc.grpc_code, 2), exc.message
    if isinstance(exc, NotImplementedError):
        return 12, str(exc) or "not implemented"
    return 2, str(exc) or type(exc).__name__


def error_of(code: int, message: str) -> errors.PalletError:
    """The pallet error class of a non-OK status."""
    name = CODE_NAMES.get(code, "UNKNOWN")
    return errors.from_grpc_code(name, message)


# --- server --------------------------------------------------------------------

_reply_hooks = threading.local()


def after_reply(fn) -> None:
    """Run ``fn()`` once the response of the request being handled has been sent.

    For handlers whose effect must follow their answer (Shutdown exits the
    process only after containerd has read the reply).
    """
    hooks = getattr(_reply_hooks, "hooks", None)
    if hooks is None:
        raise RuntimeError("after_reply called outside a ttrpc handler")
    hooks.append(fn)


class Server:
    """A ttrpc server on a unix socket.

    Services are registered as ``{service: {method: (request_cls, handler)}}``;
    ``handler(request)`` returns the response message (a protobuf message, or
    bytes already serialised).  Each request runs in its own thread, so a long
    call (Wait) never holds up the other calls of the connection; with
    ``ordered`` the requests of a connection are handled one after the other
    in its reader thread instead, in the order they were sent (for quick
    handlers whose order matters, such as the events a shim forwards).
    """

    def __init__(self, socket_path: str, services: dict | None = None, *, mode: int = 0o600,
                 listener: socket.socket | None = None, ordered: bool = False):
        """``listener``: a socket already bound to ``socket_path`` and listening
        (a parent process bound it before forking the server's process)."""
        self.socket_path = socket_path
        self.mode = mode
        self.ordered = ordered
        self.services: dict[str, dict[str, tuple]] = {}
        for name, methods in (services or {}).items():
            self.register(name, methods)
        self._listener: socket.socket | None = listener
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._accept_thread: threading.Thread | None = None

    def register(self, service: str, methods: dict) -> None:
        """Add (or extend) a service: ``{method: (request_cls, handler)}``."""
        self.services.setdefault(service, {}).update(methods)

    # -- listening
    @property
    def listener(self) -> socket.socket | None:
        return self._listener

    def bind(self) -> None:
        """Create the socket (replacing a stale one) and listen."""
        self._listener = sockets.bind_unix(self.socket_path, mode=self.mode)

    def serve_forever(self) -> None:
        """Accept connections until ``close()``; binds first if needed."""
        if self._listener is None:
            self.bind()
        listener = self._listener
        while not self._closed.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                if self._closed.is_set():
                    return
                raise
            conn.set_inheritable(False)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve_conn, args=(conn,), daemon=True,
                             name="ttrpc-conn").start()

    def start(self) -> "Server":
        """Serve in a background thread."""
        if self._listener is None:
            self.bind()
        self._accept_thread = threading.Thread(target=self.serve_forever, daemon=True,
                                               name="ttrpc-accept")
        self._accept_thread.start()
        return self

    def close(self, unlink: bool = True) -> None:
        """Stop accepting, drop the connections and remove the socket file."""
        self._closed.set()
        if unlink:
            # first: serve_forever returns as soon as the listener closes, and its
            # caller may end the process right then
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- one connection
    def _serve_conn(self, conn: socket.socket) -> None:
        wlock = threading.Lock()
        try:
            while True:
                got = read_frame(conn)
                if got is None:
                    return
                stream_id, mtype, flags, data = got
                if isinstance(data, _Oversized):
                    self._reply(conn, wlock, stream_id, 8,
                                f"message length {data.length} exceed maximum message size "
                                f"of {MAX_MESSAGE_SIZE}", b"")
                    continue
                if mtype != TYPE_REQUEST:
                    # Data frames only belong to streams, which no pallet service opens.
                    log.debug("ttrpc: ignoring frame type %d on stream %d", mtype, stream_id)
                    continue
                if stream_id % 2 != 1:
                    self._reply(conn, wlock, stream_id, 3,
                                "stream id must be odd for client initiated streams", b"")
                    continue
                if self.ordered:
                    self._dispatch(conn, wlock, stream_id, flags, data)
                else:
                    threading.Thread(target=self._dispatch, daemon=True, name="ttrpc-call",
                                     args=(conn, wlock, stream_id, flags, data)).start()
        except (OSError, ProtocolError) as e:
            if not self._closed.is_set():
                log.debug("ttrpc connection ended: %s", e)
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _dispatch(self, conn, wlock, stream_id: int, flags: int, data: bytes) -> None:
        _reply_hooks.hooks = hooks = []
        payload = b""
        try:
            code, message, payload = self._call(flags, data)
        except BaseException as e:  # every failure travels back as a status
            code, message = status_of(e)
            if code == 2:
                log.exception("ttrpc handler failed")
        finally:
            _reply_hooks.hooks = None
        self._reply(conn, wlock, stream_id, code, message, payload)
        for fn in hooks:
            try:
                fn()
            except Exception:
                log.exception("ttrpc after-reply hook failed")

    def _call(self, flags: int, data: bytes) -> tuple[int, str, bytes]:
        try:
            req = decode_request(data)
        except ProtocolError as e:
            return 3, f"invalid ttrpc request: {e}", b""
        if flags & FLAG_REMOTE_OPEN:
            return 12, f"{req.service}/{req.method}: streaming is not supported", b""
        service = self.services.get(req.service)
        if service is None:
            return 12, f"service {req.service} is not served", b""
        entry = service.get(req.method)
        if entry is None:
            return 12, f"method {req.service}/{req.method} is not served", b""
        request_cls, handler = entry
        if request_cls is None:
            msg = req.payload
        else:
            msg = request_cls()
            try:
                msg.ParseFromString(req.payload)
            except Exception as e:
                return 3, f"decode {req.service}/{req.method} request: {e}", b""
        result = handler(msg)
        if result is None:
            out = b""
        elif isinstance(result, (bytes, bytearray)):
            out = bytes(result)
        else:
            out = result.SerializeToString()
        return 0, "", out

    def _reply(self, conn, wlock, stream_id: int, code: int, message: str, payload: bytes) -> None:
        body = encode_response(code, message, payload)
        if len(body) > MAX_MESSAGE_SIZE:
            body = encode_response(8, f"response of {len(body)} bytes exceeds the maximum "
                                      f"message size of {MAX_MESSAGE_SIZE}", b"")
        data = HEADER.pack(len(body), stream_id, TYPE_RESPONSE, 0) + body
        try:
            with wlock:
                conn.sendall(data)
        except OSError as e:
            log.debug("ttrpc: cannot send response on stream %d: %s", stream_id, e)


# --- client --------------------------------------------------------------------

def socket_path_of(address: str) -> str:
    """The file path of a ``unix://`` address (a bare path is accepted too)."""
    if address.startswith("unix://"):
        return address[len("unix://"):]
    if "://" in address:
        raise errors.InvalidArgument(f"ttrpc address {address}: only unix:// is supported")
    return address


class _Pending:
    __slots__ = ("event", "result")

    def __init__(self):
        self.event = threading.Event()
        self.result = None


class Client:
    """A synchronous ttrpc client on one unix connection, safe to share between threads.

    ``call`` sends a request on a fresh odd stream id and waits for its
    response; a reader thread hands each response to the caller waiting on
    its stream, so several callers can wait at once (one in Wait, others in
    State or Kill).
    """

    def __init__(self, address: str, *, connect_timeout: float = 10.0, on_close=None,
                 metadata: tuple[tuple[str, str], ...] = ()):
        self.address = address
        self.metadata = tuple(metadata)
        self._on_close = on_close
        path = socket_path_of(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(connect_timeout)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            reason = (e.strerror or str(e)).lower()
            raise errors.Unavailable(f"connect to ttrpc server {path}: {reason}") from None
        sock.settimeout(None)
        self._sock = sock
        self._wlock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._closed = False
        self._close_reason = "connection closed"
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name="ttrpc-client")
        self._reader.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def call(self, service: str, method: str, request_msg, response_cls=None,
             timeout: float | None = None):
        """Call ``service/method`` and return the decoded response.

        ``request_msg`` is a protobuf message (or bytes); ``response_cls`` the
        class to parse the answer into (None returns the raw bytes).  A non-OK
        status raises the matching ``pallet.core.errors`` class; a lost
        connection raises Unavailable.
        """
        payload = request_msg if isinstance(request_msg, (bytes, bytearray)) \
            else request_msg.SerializeToString()
        timeout_nano = int(timeout * 1e9) if timeout else 0
        body = encode_request(service, method, bytes(payload), timeout_nano, self.metadata)
        pending = _Pending()
        with self._lock:
            if self._closed:
                raise errors.Unavailable(f"ttrpc {self.address}: {self._close_reason}")
            stream_id = self._next_id
            self._next_id += 2
            self._pending[stream_id] = pending
        try:
            data = frame(stream_id, TYPE_REQUEST, 0, body)
            with self._wlock:
                self._sock.sendall(data)
        except OSError as e:
            with self._lock:
                self._pending.pop(stream_id, None)
            raise errors.Unavailable(
                f"ttrpc {service}/{method}: send: {(e.strerror or str(e)).lower()}") from None
        except errors.PalletError:
            with self._lock:
                self._pending.pop(stream_id, None)
            raise
        if not pending.event.wait(timeout):
            with self._lock:
                self._pending.pop(stream_id, None)
            raise errors.PalletError(f"ttrpc {service}/{method}: deadline exceeded")
        result = pending.result
        if isinstance(result, errors.PalletError):
            raise result
        code, message, out = result
        if code != 0:
            raise error_of(code, message)
        if response_cls is None:
            return out
        msg = response_cls()
        try:
            msg.ParseFromString(out)
        except Exception as e:
            raise errors.PalletError(f"decode {service}/{method} response: {e}") from None
        return msg

    def _read_loop(self) -> None:
        reason = "connection closed"
        try:
            while True:
                got = read_frame(self._sock)
                if got is None:
                    break
                stream_id, mtype, _flags, data = got
                with self._lock:
                    pending = self._pending.pop(stream_id, None) if mtype == TYPE_RESPONSE else None
                if pending is None:
                    continue
                if isinstance(data, _Oversized):
                    pending.result = (8, f"response of {data.length} bytes exceeds the maximum "
                                         f"message size of {MAX_MESSAGE_SIZE}", b"")
                else:
                    try:
                        pending.result = decode_response(data)
                    except ProtocolError as e:
                        pending.result = (13, f"invalid ttrpc response: {e}", b"")
                pending.event.set()
        except (OSError, ProtocolError) as e:
            reason = f"connection lost: {e}"
        self._shutdown(reason)

    def _shutdown(self, reason: str) -> None:
        with self._lock:
            if self._closed and not self._pending:
                return
            first = not self._closed
            self._closed = True
            self._close_reason = reason
            pending, self._pending = self._pending, {}
        for p in pending.values():
            p.result = errors.Unavailable(f"ttrpc {self.address}: {reason}")
            p.event.set()
        if first and self._on_close is not None:
            try:
                self._on_close()
            except Exception:
                log.exception("ttrpc on_close callback failed")

    def close(self) -> None:
        """Close the connection; callers still waiting get Unavailable."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._shutdown("client closed")
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=5)
        self._sock.close()
