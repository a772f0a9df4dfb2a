"""The embedded DNS server containers on user-defined networks ask (127.0.0.11).

One UDP socket per sandbox, opened *inside* the sandbox's namespace on
127.0.0.11:53 (a socket keeps the namespace it was created in), served from
the daemon's asyncio loop.  A query is answered from the names of the
containers on the asking container's networks (name, aliases, short id,
``name.network``; A, AAAA and PTR records, an empty answer for a known
name without an address of the family asked, so that resolvers do not go
elsewhere); any other name is forwarded, from the host's
namespace, to the upstream servers the sandbox was given (``--dns`` or the
host's), and the answer relayed as is.  RFC 1035 sections 4.1.1-4.1.3 give
the message layout used here.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
import threading

log = logging.getLogger("pallet.net_bridge.dns")

TYPE_A, TYPE_PTR, TYPE_AAAA = 1, 12, 28
CLASS_IN = 1
RCODE_SERVFAIL, RCODE_NXDOMAIN = 2, 3
TTL = 600
UPSTREAM_TIMEOUT = 2.0
PORT = 53


def parse_question(data: bytes):
    """(qname, qtype, qclass, end of question) of a query, or None if malformed."""
    if len(data) < 12:
        return None
    flags, qdcount = struct.unpack_from("!HH", data, 2)
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, i = [], 12
    while True:
        if i >= len(data):
            return None
        n = data[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0 or i + n > len(data):
            return None
        labels.append(data[i:i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(data):
        return None
    qtype, qclass = struct.unpack_from("!HH", data, i)
    return ".".join(labels), qtype, qclass, i + 4


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii", "replace")[:63]
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def response(query: bytes, qend: int, rcode: int = 0, answers=()) -> bytes:
    """A reply to ``query``: same id and question, RA set, RD copied."""
    qid, flags = struct.unpack_from("!HH", query, 0)
    out_flags = 0x8000 | (flags & 0x7800) | (flags & 0x0100) | 0x0080 | (rcode & 0xF)
    head = struct.pack("!HHHHHH", qid, out_flags, 1, len(answers), 0, 0)
    body = bytearray(query[12:qend])
    for rtype, rdata in answers:
        body += struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, TTL, len(rdata)) + rdata
    return head + bytes(body)


def ptr_address(qname: str) -> str | None:
    """``2.0.18.172.in-addr.arpa`` -> ``172.18.0.2`` (and ``ip6.arpa`` nibbles
    -> an IPv6 address)."""
    suffix = ".in-addr.arpa"
    name = qname.lower().rstrip(".")
    if name.endswith(".ip6.arpa"):
        nibbles = name[:-len(".ip6.arpa")].split(".")
        if len(nibbles) != 32 or not all(len(x) == 1 for x in nibbles):
            return None
        digits = "".join(reversed(nibbles))
        try:
            return str(ipaddress.IPv6Address(int(digits, 16)))
        except ValueError:
            return None
    if not name.endswith(suffix):
        return None
    parts = name[:-len(suffix)].split(".")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(parts))))
    except ValueError:
        return None


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, server: "DNSServer", key: str):
        self.server, self.key = server, key
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        try:
            self.server.handle(self, data, addr)
        except Exception:  # noqa: BLE001 — one bad query must not stop the server
            log.exception("dns: query from %s", addr)

    def error_received(self, exc):
        pass


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, fut: asyncio.Future):
        self.fut = fut

    def datagram_received(self, data, addr):
        if not self.fut.done():
            self.fut.set_result(data)

    def error_received(self, exc):
        if not self.fut.done():
            self.fut.set_exception(exc)


class DNSServer:
    """Serves every sandbox's socket on one loop (palletd's, or its own thread's)."""

    def __init__(self, resolve):
        #: resolve(key, name, qtype) -> list of rdata-ready values, or None when
        #: the name is not one of ours (forward it)
        self.resolve = resolve
        self.loop: asyncio.AbstractEventLoop | None = None
        self._own_thread: threading.Thread | None = None
        self._listeners: dict[str, _Listener] = {}
        self._upstream: dict[str, list[str]] = {}
        self._tasks: set = set()

    # --- loop -------------------------------------------------------------------------
    def use_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve from ``loop`` (palletd's); call before the first ``serve``."""
        if self.loop is None:
            self.loop = loop

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None or self.loop.is_closed():
            loop = asyncio.new_event_loop()
            t = threading.Thread(target=loop.run_forever, name="pallet-dns", daemon=True)
            t.start()
            self.loop, self._own_thread = loop, t
        return self.loop

    def _call(self, fn, *args) -> None:
        loop = self._ensure_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    # --- sockets ----------------------------------------------------------------------
    def serve(self, key: str, sock, upstream: list[str]) -> None:
        """Answer on ``sock`` (bound in the sandbox) for sandbox ``key``."""
        self._upstream[key] = list(upstream)
        self._call(self._start, key, sock)

    def set_upstream(self, key: str, upstream: list[str]) -> None:
        self._upstream[key] = list(upstream)

    def _start(self, key: str, sock) -> None:
        old = self._listeners.pop(key, None)
        if old is not None and old.transport is not None:
            old.transport.close()
        listener = _Listener(self, key)
        self._listeners[key] = listener
        sock.setblocking(False)
        task = self.loop.create_task(self.loop.create_datagram_endpoint(lambda: listener,
                                                                        sock=sock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self, key: str) -> None:
        self._upstream.pop(key, None)
        if self.loop is not None and not self.loop.is_closed():
            self._call(self._stop, key)

    def _stop(self, key: str) -> None:
        listener = self._listeners.pop(key, None)
        if listener is not None and listener.transport is not None:
            listener.transport.close()

    def serving(self) -> set[str]:
        return set(self._listeners)

    def close(self) -> None:
        for key in list(self._listeners):
            self.stop(key)
        if self._own_thread is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)

    # --- queries ----------------------------------------------------------------------
    def handle(self, listener: _Listener, data: bytes, addr) -> None:
        q = parse_question(data)
        if q is None:
            return
        qname, qtype, qclass, qend = q
        answer = None
        if qclass == CLASS_IN:
            if qtype == TYPE_PTR:
                ip = ptr_address(qname)
                names = self.resolve(listener.key, ip, TYPE_PTR) if ip else None
                if names is not None:
                    answer = response(data, qend, 0, [(TYPE_PTR, encode_name(n)) for n in names])
            elif qtype in (TYPE_A, TYPE_AAAA):
                ips = self.resolve(listener.key, qname, TYPE_A)
                if ips is not None:
                    # a name with no address of the family asked is answered
                    # empty, not forwarded (a container of an IPv4-only network)
                    rr = [(qtype, ipaddress.ip_address(ip).packed) for ip in ips
                          if (":" in ip) == (qtype == TYPE_AAAA)]
                    answer = response(data, qend, 0, rr)
        if answer is not None:
            listener.transport.sendto(answer, addr)
            return
        task = self.loop.create_task(self._forward(listener, data, qend, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, listener: _Listener, data: bytes, qend: int, addr) -> None:
        for server in self._upstream.get(listener.key) or ():
            try:
                reply = await self._ask(server, data)
            except (OSError, asyncio.TimeoutError):
                continue
            if listener.transport is not None and not listener.transport.is_closing():
                listener.transport.sendto(reply, addr)
            return
        if listener.transport is not None and not listener.transport.is_closing():
            listener.transport.sendto(response(data, qend, RCODE_SERVFAIL), addr)

    async def _ask(self, server: str, data: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Upstream(fut),
                                                           remote_addr=(server, PORT))
        try:
            transport.sendto(data)
            return await asyncio.wait_for(fut, UPSTREAM_TIMEOUT)
        finally:
            transport.close()
