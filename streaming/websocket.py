"""The WebSocket protocol (RFC 6455) for the server side, sans I/O.

The opening handshake answers ``Sec-WebSocket-Key`` with the SHA-1 of the
key and the protocol's GUID (section 4.2.2).  Every frame a client sends
is masked (section 5.3; an unmasked one is a protocol error); the server's
are not.  Messages may come fragmented (section 5.4): :class:`Reader`
reassembles them and hands control frames (ping, pong, close) over as they
arrive, between fragments if need be.
"""
from __future__ import annotations

import base64
import hashlib
import struct

import attrs

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# close codes (section 7.4.1)
NORMAL_CLOSURE, GOING_AWAY, PROTOCOL_ERROR, UNSUPPORTED_DATA = 1000, 1001, 1002, 1003
MESSAGE_TOO_BIG, INTERNAL_ERROR = 1009, 1011

#: the largest message accepted (Kubernetes' clients send at most 32 KiB of stdin at once)
MAX_MESSAGE = 16 << 20


class ProtocolError(Exception):
    """The client broke the framing; ``code`` is the close code to answer with."""

    def __init__(self, message: str, code: int = PROTOCOL_ERROR):
        super().__init__(message)
        self.code = code


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key.strip() + GUID).encode()).digest()).decode()


def encode(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = None
           ) -> bytes:
    """One frame (unmasked, as a server sends; ``mask`` for a client's)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head = struct.pack(">BB", first, mbit | n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", first, mbit | 126, n)
    else:
        head = struct.pack(">BBQ", first, mbit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + _unmask(payload, mask)


def close_frame(code: int = NORMAL_CLOSURE, reason: str = "") -> bytes:
    return encode(CLOSE, struct.pack(">H", code) + reason.encode()[:123])


def _unmask(data: bytes, mask: bytes) -> bytes:
    # XOR with the 4-byte key repeated: done on whole integers rather than per byte
    n = len(data)
    if not n:
        return b""
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


@attrs.frozen
class Message:
    """A whole message (TEXT or BINARY) or a control frame."""

    opcode: int
    data: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode == CLOSE and len(self.data) >= 2:
            return struct.unpack_from(">H", self.data, 0)[0]
        return None


class Reader:
    """Turns the client's bytes into messages."""

    def __init__(self, *, require_mask: bool = True, max_message: int = MAX_MESSAGE):
        self.require_mask = require_mask
        self.max_message = max_message
        self._buf = bytearray()
        self._parts: list[bytes] = []
        self._opcode = None

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while True:
            frame = self._frame()
            if frame is None:
                return out
            fin, opcode, payload = frame
            if opcode >= 0x8:
                if not fin or len(payload) > 125:
                    raise ProtocolError("control frames must be whole and short")
                out.append(Message(opcode, payload))
                continue
            if opcode == CONTINUATION:
                if self._opcode is None:
                    raise ProtocolError("continuation without a message to continue")
            else:
                if self._opcode is not None:
                    raise ProtocolError("new message before the last one ended")
                if opcode not in (TEXT, BINARY):
                    raise ProtocolError(f"unknown opcode {opcode}")
                self._opcode = opcode
            self._parts.append(payload)
            if sum(map(len, self._parts)) > self.max_message:
                raise ProtocolError("message too big", MESSAGE_TOO_BIG)
            if fin:
                out.append(Message(self._opcode, b"".join(self._parts)))
                self._parts, self._opcode = [], None

    def _frame(self):
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        if b0 & 0x70:
            raise ProtocolError("reserved bits set without an extension")
        masked, n, pos = b1 & 0x80, b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            (n,), pos = struct.unpack_from(">H", buf, 2), 4
        elif n == 127:
            if len(buf) < 10:
                return None
            (n,), pos = struct.unpack_from(">Q", buf, 2), 10
        if n > self.max_message:
            raise ProtocolError("frame too big", MESSAGE_TOO_BIG)
        if self.require_mask and not masked:
            raise ProtocolError("client frames must be masked")
        key = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            key, pos = bytes(buf[pos:pos + 4]), pos + 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        if masked:
            payload = _unmask(payload, key)
        return bool(b0 & 0x80), b0 & 0x0F, payload
