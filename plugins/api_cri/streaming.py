"""The streaming server of pallet-containerd: where the URLs of Exec, Attach
and PortForward lead, as kubelet's and containerd's streaming servers.

Exec, Attach and PortForward register the request under a one-time token
(valid a minute) and answer its URL; the client then upgrades an HTTP/1.1
connection to that URL to SPDY/3.1 (``Upgrade: SPDY/3.1``) or to WebSocket.
Over either, exec and attach speak Kubernetes' remotecommand protocol
(:mod:`pallet.streaming.channels`); port-forward speaks the port-forward
protocol over SPDY, WebSocket channels, or SPDY tunnelled in WebSocket
messages.  Everything runs on api_cri's I/O loop; calls into the service
layer go to the thread pool.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time

from pallet.core import errors
from pallet.linux import netns
from pallet.streaming import channels as ch, http1, spdy, websocket as ws

from pallet.plugins.api_cri import execs, logs
from pallet.plugins.api_cri.config import NAMESPACE

log = logging.getLogger("pallet.cri.streaming")

TOKEN_TTL = 60.0
STREAM_CREATION_TIMEOUT = 30.0
HEAD_TIMEOUT = 30.0
READ_SIZE = 64 * 1024


# --- byte and message links ------------------------------------------------------------------

class TcpLink:
    """The upgraded connection as a byte stream."""

    def __init__(self, reader, writer, pending: bytes = b""):
        self.reader, self.writer, self.pending = reader, writer, pending

    async def read(self) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        try:
            return await self.reader.read(READ_SIZE)
        except (ConnectionError, OSError):
            return b""

    def write(self, data: bytes) -> None:
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


class WsConn:
    """A WebSocket connection's messages (RFC 6455, the server's side)."""

    def __init__(self, link: TcpLink):
        self.link = link
        self.parser = ws.Reader()
        self.queue: list[ws.Message] = []
        self.closed = False

    async def recv(self) -> ws.Message | None:
        """The next data message (None: the connection ended); pings are answered."""
        while True:
            while self.queue:
                m = self.queue.pop(0)
                if m.opcode == ws.PING:
                    self.link.write(ws.encode(ws.PONG, m.data))
                elif m.opcode == ws.CLOSE:
                    log.debug("websocket: the client closed (%s)", m.close_code)
                    self.close(m.close_code or ws.NORMAL_CLOSURE)
                    return None
                elif m.opcode in (ws.BINARY, ws.TEXT):
                    return m
            data = await self.link.read()
            if not data:
                self.closed = True
                return None
            try:
                self.queue += self.parser.feed(data)
            except ws.ProtocolError as e:
                log.debug("websocket: %s", e)
                self.close(e.code, str(e))
                return None

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.link.write(ws.encode(ws.BINARY, data))

    def close(self, code: int = ws.NORMAL_CLOSURE, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self.link.write(ws.close_frame(code, reason))
        self.link.close()


class WsTunnel:
    """SPDY bytes carried in WebSocket binary messages (the byte-link interface)."""

    def __init__(self, conn: WsConn):
        self.conn = conn

    async def read(self) -> bytes:
        """The next bytes (b"" only at the end: Go's framer sends empty messages too)."""
        while True:
            m = await self.conn.recv()
            if m is None:
                return b""
            if m.data:
                return m.data

    def write(self, data: bytes) -> None:
        if data:
            self.conn.send(data)

    def close(self) -> None:
        self.conn.close()


# --- remotecommand channels ------------------------------------------------------------------

class Channels:
    """The roles of a remotecommand session (stdin, stdout, stderr, error,
    resize) over one transport.  What the client sends is kept until the
    runner takes it (it may come in the same read as the last stream's
    opening): stdin in :attr:`stdin` (``None`` at its end), terminal sizes
    until :meth:`on_resize` is set; ``closed`` is set when the client goes."""

    def __init__(self, version: str):
        self.version = version
        self.stdin: asyncio.Queue = asyncio.Queue()
        self.closed = asyncio.Event()
        self.sizes = ch.SizeDecoder()
        self._resize = None
        self._pending: list[tuple[int, int]] = []
        self._stdin_ended = False

    def on_resize(self, fn) -> None:
        self._resize = fn
        for w, h in self._pending:
            fn(w, h)
        self._pending.clear()

    def _resized(self, data: bytes) -> None:
        for w, h in self.sizes.feed(data):
            if self._resize is None:
                self._pending.append((w, h))
            else:
                self._resize(w, h)

    def _stdin_data(self, data: bytes) -> None:
        if data and not self._stdin_ended:
            self.stdin.put_nowait(data)

    def _stdin_end(self) -> None:
        if not self._stdin_ended:
            self._stdin_ended = True
            self.stdin.put_nowait(None)


class SpdyChannels(Channels):
    def __init__(self, version: str, link):
        super().__init__(version)
        self.link = link
        self.session = spdy.Session()
        self.roles: dict[str, int] = {}
        self.by_id: dict[int, str] = {}
        self._ready = asyncio.Event()
        self._expected: set[str] = set()

    async def open(self, expected: set[str]) -> None:
        """Accept the client's streams until every expected role is there."""
        self._expected = expected
        asyncio.get_running_loop().create_task(self._read())
        await asyncio.wait_for(self._ready.wait(), STREAM_CREATION_TIMEOUT)

    def _flush(self) -> None:
        self.link.write(self.session.data_to_send())

    async def _read(self) -> None:
        try:
            while True:
                data = await self.link.read()
                if not data:
                    break
                try:
                    events = self.session.receive(data)
                except spdy.ProtocolError as e:
                    log.debug("spdy: %s", e)
                    break
                for ev in events:
                    self._event(ev)
                self._flush()
                if self.session.gone_away:
                    break
        finally:
            self.closed.set()

    def _event(self, ev) -> None:
        if isinstance(ev, spdy.StreamOpened):
            role = (ev.headers.get(ch.STREAM_TYPE) or [""])[0]
            self.session.reply(ev.stream_id)
            self.roles[role] = ev.stream_id
            self.by_id[ev.stream_id] = role
            if self._expected <= set(self.roles):
                self._ready.set()
            if ev.fin and role == ch.STDIN:
                self._stdin_end()
        elif isinstance(ev, spdy.StreamData):
            role = self.by_id.get(ev.stream_id)
            if role == ch.STDIN:
                self._stdin_data(ev.data)
            elif role == ch.RESIZE:
                self._resized(ev.data)
        elif isinstance(ev, (spdy.StreamEnded, spdy.StreamReset)):
            if self.by_id.get(ev.stream_id) == ch.STDIN:
                self._stdin_end()

    def send(self, role: str, data: bytes) -> None:
        sid = self.roles.get(role)
        if sid is not None:
            self.session.send(sid, data)
            self._flush()

    def close_role(self, role: str) -> None:
        sid = self.roles.get(role)
        if sid is not None:
            self.session.close_stream(sid)
            self._flush()

    async def finish(self, error: bytes) -> None:
        if error:
            self.send(ch.ERROR, error)
        for role in (ch.STDOUT, ch.STDERR, ch.ERROR):
            self.close_role(role)
        self.session.go_away()
        self._flush()
        await asyncio.sleep(0)
        self.link.close()


class WsChannels(Channels):
    def __init__(self, version: str, conn: WsConn):
        super().__init__(version)
        self.conn = conn

    async def open(self, expected: set[str]) -> None:
        asyncio.get_running_loop().create_task(self._read())
        # an empty message on the first channel the server writes says the
        # session is up (kubelet does so)
        first = ch.STDOUT if ch.STDOUT in expected else ch.STDERR if ch.STDERR in expected \
            else ch.ERROR
        self.conn.send(bytes([ch.CHANNELS[first]]))

    async def _read(self) -> None:
        try:
            while True:
                m = await self.conn.recv()
                if m is None:
                    break
                if not m.data:
                    continue
                channel, data = m.data[0], m.data[1:]
                if channel == ch.CHANNELS[ch.STDIN]:
                    self._stdin_data(data)
                elif channel == ch.CHANNELS[ch.RESIZE]:
                    self._resized(data)
                elif channel == ch.CLOSE_CHANNEL and data[:1] == bytes([ch.CHANNELS[ch.STDIN]]):
                    self._stdin_end()
        finally:
            self.closed.set()

    def send(self, role: str, data: bytes) -> None:
        if data:
            self.conn.send(bytes([ch.CHANNELS[role]]) + data)

    def close_role(self, role: str) -> None:
        if ch.version_number(self.version) >= 5 and role != ch.ERROR:
            self.conn.send(bytes([ch.CLOSE_CHANNEL, ch.CHANNELS[role]]))

    async def finish(self, error: bytes) -> None:
        if error:
            self.send(ch.ERROR, error)
        self.conn.close()


# --- the server --------------------------------------------------------------------------------

class StreamServer:
    def __init__(self, cri_):
        self.cri = cri_
        self.cfg = cri_.cfg
        self._tokens: dict[str, tuple[float, str, object]] = {}
        self._server = None
        self.address = ""

    # -- tokens, from the gRPC threads
    def register(self, kind: str, request) -> str:
        """Keep ``request`` for one connection within a minute; its URL."""
        now = time.monotonic()
        token = secrets.token_urlsafe(6)
        self._tokens = {k: v for k, v in self._tokens.items() if v[0] > now}
        self._tokens[token] = (now + TOKEN_TTL, kind, request)
        return f"http://{self.address}/{kind}/{token}"

    def _take(self, kind: str, token: str):
        entry = self._tokens.pop(token, None)
        if entry is None or entry[1] != kind or entry[0] < time.monotonic():
            return None
        return entry[2]

    # -- lifecycle, on the loop
    async def start(self) -> None:
        host = self.cfg.stream_server_address or "127.0.0.1"
        self._server = await asyncio.start_server(self._serve, host, self.cfg.stream_server_port)
        port = self._server.sockets[0].getsockname()[1]
        shown = host if ":" not in host else f"[{host}]"
        self.address = f"{shown}:{port}"
        log.info("streaming server on %s", self.address)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader, writer) -> None:
        try:
            buf = b""
            while True:
                end = http1.head_end(buf)
                if end >= 0:
                    break
                chunk = await asyncio.wait_for(reader.read(8192), HEAD_TIMEOUT)
                if not chunk:
                    writer.close()
                    return
                buf += chunk
            req = http1.parse_head(buf[:end])
            link = TcpLink(reader, writer, buf[end:])
            await self._route(req, link)
        except (http1.BadRequest, asyncio.TimeoutError) as e:
            writer.write(http1.response(400, body=str(e).encode()))
            writer.close()
        except Exception:  # noqa: BLE001 — one session's failure stays there
            log.exception("streaming session failed")
            writer.close()

    async def _route(self, req: http1.Request, link: TcpLink) -> None:
        parts = req.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("exec", "attach", "portforward"):
            return self._refuse(link, 404, "not found")
        request = self._take(parts[0], parts[1])
        if request is None:
            return self._refuse(link, 404, "stream request not found or expired")
        if req.upgrade_to("websocket"):
            conn, protocol = self._websocket(req, link, parts[0])
            if conn is None:
                return
            if parts[0] == "portforward":
                if protocol.startswith(ch.SPDY_TUNNEL_PREFIX):
                    return await self._portforward_spdy(request, WsTunnel(conn))
                return await self._portforward_ws(request, conn, req.query.get("port") or [])
            return await self._command(parts[0], request, WsChannels(protocol, conn))
        if req.upgrade_to("SPDY/3.1"):
            offered = req.tokens("x-stream-protocol-version")
            supported = (ch.PORTFORWARD_V1,) if parts[0] == "portforward" else ch.SPDY_VERSIONS
            version = ch.negotiate(offered, supported)
            if version is None:
                return self._refuse(link, 403, f"unable to upgrade: unable to negotiate protocol: "
                                    f"client supports {offered}, server supports "
                                    f"{list(supported)}")
            link.write(http1.response(101, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                            "X-Stream-Protocol-Version": version}))
            if parts[0] == "portforward":
                return await self._portforward_spdy(request, link)
            return await self._command(parts[0], request, SpdyChannels(version, link))
        return self._refuse(link, 400, "unable to upgrade: missing upgrade headers in request")

    def _refuse(self, link, status: int, message: str) -> None:
        link.write(http1.response(status, body=message.encode()))
        link.close()

    def _websocket(self, req, link, kind: str):
        key = req.header("sec-websocket-key")
        offered = req.tokens("sec-websocket-protocol")
        if kind == "portforward":
            supported = (ch.SPDY_TUNNEL_PREFIX + ch.PORTFORWARD_V1,) + \
                ch.WEBSOCKET_PORTFORWARD_VERSIONS
        else:
            supported = ch.WEBSOCKET_VERSIONS
        protocol = ch.negotiate(offered, supported)
        if not key or protocol is None:
            self._refuse(link, 400, f"unable to upgrade: requested protocol(s) are not "
                                    f"supported: {offered}; supports {list(supported)}")
            return None, ""
        link.write(http1.response(101, {"Upgrade": "websocket", "Connection": "Upgrade",
                                        "Sec-WebSocket-Accept": ws.accept_key(key),
                                        "Sec-WebSocket-Protocol": protocol}))
        return WsConn(link), protocol

    # -- exec and attach
    async def _command(self, kind: str, request, chans: Channels) -> None:
        expected = {ch.ERROR}
        for role in (ch.STDIN, ch.STDOUT, ch.STDERR):
            if getattr(request, role):
                expected.add(role)
        if request.tty and ch.version_number(chans.version) >= 3:
            expected.add(ch.RESIZE)
        try:
            await chans.open(expected)
        except asyncio.TimeoutError:
            log.warning("%s: the client did not open its streams", kind)
            await chans.finish(b"")
            return
        if kind == "exec":
            await self._exec(request, chans)
        else:
            await self._attach(request, chans)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.cri.workers, fn, *args)

    async def _exec(self, request, chans: Channels) -> None:
        loop = asyncio.get_running_loop()
        try:
            c = self.cri.records.container(request.container_id)
            execs.check_running(c)
            ex = execs.Exec(self.cri, c, request.cmd, tty=request.tty, stdin=request.stdin)
        except errors.PalletError as e:
            await chans.finish(ch.error_payload(chans.version, message=e.message))
            return
        ex.pipes.create()
        output_done = asyncio.Event()
        remaining = {logs.STDOUT} | ({logs.STDERR} if not request.tty else set())

        def forward(stream, data):
            role = stream if request.tty is False else ch.STDOUT
            if data is None:
                remaining.discard(stream)
                chans.close_role(role)
                if not remaining:
                    output_done.set()
            elif getattr(request, role, False):
                chans.send(role, data)
        ex.pipes.subscribers.append(forward)
        ex.pipes.open()

        async def stdin_end():
            ex.pipes.close_stdin_fd()
            await self._run(ex.close_stdin)
        try:
            await self._run(ex.start)
        except errors.PalletError as e:
            ex.pipes.drain()
            await chans.finish(ch.error_payload(chans.version, message=e.message))
            self.cri.workers.submit(ex.cleanup)
            return
        writer = loop.create_task(execs.stdin_writer(ex.pipes, chans.stdin, stdin_end)) \
            if request.stdin else None
        chans.on_resize(lambda w, h: self.cri.workers.submit(ex.resize, w, h))
        waiting = loop.run_in_executor(self.cri.workers, ex.wait)
        gone_task = loop.create_task(chans.closed.wait())
        done, _ = await asyncio.wait({waiting, gone_task}, return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:
            ex.kill()   # the client went away: the process goes too, as with containerd
        try:
            code = await waiting
        except errors.PalletError as e:
            code, message = None, e.message
        gone_task.cancel()
        ex.pipes.drain()
        if writer is not None:
            writer.cancel()
        if code is None:
            payload = ch.error_payload(chans.version, message=message)
        else:
            payload = ch.error_payload(chans.version, code=code, command=ex.cmd)
        await chans.finish(payload)
        self.cri.workers.submit(ex.cleanup)

    async def _attach(self, request, chans: Channels) -> None:
        from pallet.plugins.api_cri.container import RUNNING

        try:
            c = self.cri.records.container(request.container_id)
            execs.check_running(c)
        except errors.PalletError as e:
            await chans.finish(ch.error_payload(chans.version, message=e.message))
            return
        pipes = c.io
        if pipes is None or pipes.closed:
            await chans.finish(ch.error_payload(chans.version, message="container is not "
                                                "running"))
            return
        ended = asyncio.Event()

        def forward(stream, data):
            role = ch.STDOUT if c.config.tty else stream
            if data is None:
                ended.set()
            elif getattr(request, role, False):
                chans.send(role, data)
        pipes.subscribers.append(forward)
        loop = asyncio.get_running_loop()

        async def stdin_end():
            if c.config.stdin_once:
                pipes.close_stdin_fd()
                await self._run(self._close_container_stdin, c)
        writer = loop.create_task(execs.stdin_writer(pipes, chans.stdin, stdin_end)) \
            if request.stdin and c.config.stdin else None
        chans.on_resize(lambda w, h: self.cri.workers.submit(self._resize, c, w, h))
        gone = chans.closed
        waiters = {loop.create_task(ended.wait()), loop.create_task(gone.wait())}
        if c.state != RUNNING:
            ended.set()
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for t in waiters:
            t.cancel()
        if forward in pipes.subscribers:
            pipes.subscribers.remove(forward)
        if writer is not None:
            if not gone.is_set():
                writer.cancel()
            elif c.config.stdin_once:
                chans._stdin_end()
        for role in (ch.STDOUT, ch.STDERR):
            chans.close_role(role)
        await chans.finish(ch.error_payload(chans.version, code=0)
                           if ch.version_number(chans.version) >= 4 else b"")

    def _close_container_stdin(self, c) -> None:
        from pallet.proto.containerd.services.tasks.v1 import tasks_pb2
        try:
            self.cri.services.tasks.close_io(NAMESPACE, tasks_pb2.CloseIORequest(
                container_id=c.id, stdin=True))
        except errors.PalletError as e:
            log.debug("close stdin of %s: %s", c.id, e)

    def _resize(self, c, w: int, h: int) -> None:
        from pallet.proto.containerd.services.tasks.v1 import tasks_pb2
        try:
            self.cri.services.tasks.resize_pty(NAMESPACE, tasks_pb2.ResizePtyRequest(
                container_id=c.id, width=w, height=h))
        except errors.PalletError as e:
            log.debug("resize %s: %s", c.id, e)

    # -- port forwarding
    def _connector(self, request):
        sb = self.cri.records.sandbox(request.pod_sandbox_id)
        path = sb.netns

        def connect(port: int) -> socket.socket:
            def make():
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(10)
                try:
                    s.connect(("127.0.0.1", port))
                except OSError as e:
                    s.close()
                    raise errors.PalletError(
                        f"failed to connect to localhost:{port} inside namespace {sb.id!r}, "
                        f"IPv4: {(e.strerror or str(e)).lower()}") from None
                s.setblocking(False)
                return s
            return netns.run_in(path, make) if path else make()
        return connect

    async def _portforward_spdy(self, request, link) -> None:
        try:
            connect = self._connector(request)
        except errors.PalletError as e:
            link.write(http1.response(404, body=e.message.encode()))
            link.close()
            return
        session = spdy.Session()
        loop = asyncio.get_running_loop()
        pairs: dict[str, dict] = {}
        conns: dict[int, _Forward] = {}

        def flush():
            link.write(session.data_to_send())

        async def pump(sid: int, error_sid: int | None, port: int):
            fwd = conns[sid]
            try:
                sock = await self._run(connect, port)
                reader, writer = await asyncio.open_connection(sock=sock)
            except errors.PalletError as e:
                if error_sid is not None:
                    session.send(error_sid, e.message.encode(), fin=True)
                session.close_stream(sid)
                flush()
                return
            fwd.attach(writer)
            try:
                while True:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        break
                    session.send(sid, data)
                    flush()
            except (ConnectionError, OSError):
                pass
            session.close_stream(sid)
            if error_sid is not None:
                session.close_stream(error_sid)
            flush()
            writer.close()

        while True:
            data = await link.read()
            if not data:
                log.debug("port-forward: the client closed the connection")
                break
            try:
                events = session.receive(data)
            except spdy.ProtocolError as e:
                log.debug("port-forward: %s", e)
                break
            for ev in events:
                log.debug("port-forward event %s", ev)
                if isinstance(ev, spdy.StreamOpened):
                    session.reply(ev.stream_id)
                    h = {k: v[0] for k, v in ev.headers.items()}
                    pair = pairs.setdefault(h.get(ch.REQUEST_ID_HEADER, ""), {})
                    pair[h.get(ch.STREAM_TYPE, "")] = ev.stream_id
                    if h.get(ch.STREAM_TYPE) == ch.DATA:
                        try:
                            port = int(h.get(ch.PORT_HEADER, ""))
                        except ValueError:
                            session.reset(ev.stream_id, spdy.PROTOCOL_ERROR)
                            continue
                        conns[ev.stream_id] = _Forward()
                        loop.create_task(pump(ev.stream_id, pair.get(ch.ERROR), port))
                elif isinstance(ev, spdy.StreamData):
                    fwd = conns.get(ev.stream_id)
                    if fwd is not None:
                        fwd.write(ev.data)
                elif isinstance(ev, spdy.StreamEnded):
                    fwd = conns.get(ev.stream_id)
                    if fwd is not None:
                        fwd.write_eof()
                elif isinstance(ev, spdy.StreamReset):
                    fwd = conns.pop(ev.stream_id, None)
                    if fwd is not None:
                        fwd.close()
            flush()
            if session.gone_away:
                break
        for fwd in conns.values():
            fwd.close()
        link.close()

    async def _portforward_ws(self, request, conn: WsConn, ports: list[str]) -> None:
        try:
            connect = self._connector(request)
            numbers = [int(p) for p in ports]
            if not numbers or any(not 0 < p < 65536 for p in numbers):
                raise errors.InvalidArgument(f"invalid port in {ports}")
        except (errors.PalletError, ValueError) as e:
            conn.close(ws.PROTOCOL_ERROR, str(e)[:100])
            return
        loop = asyncio.get_running_loop()
        conns = {i: _Forward() for i in range(len(numbers))}
        for i, port in enumerate(numbers):
            for channel in (2 * i, 2 * i + 1):
                conn.send(bytes([channel]) + ch.port_prefix(port))

        async def pump(i: int, port: int):
            try:
                sock = await self._run(connect, port)
                reader, writer = await asyncio.open_connection(sock=sock)
            except errors.PalletError as e:
                conn.send(bytes([2 * i + 1]) + e.message.encode())
                return
            conns[i].attach(writer)
            try:
                while True:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        break
                    conn.send(bytes([2 * i]) + data)
            except (ConnectionError, OSError):
                pass
        tasks = [loop.create_task(pump(i, p)) for i, p in enumerate(numbers)]
        while True:
            m = await conn.recv()
            if m is None:
                break
            if not m.data or m.data[0] % 2:
                continue
            fwd = conns.get(m.data[0] // 2)
            if fwd is not None:
                fwd.write(m.data[1:])
        for t in tasks:
            t.cancel()
        for fwd in conns.values():
            fwd.close()
        conn.close()



class _Forward:
    """One forwarded connection's way into the pod: what the client sends
    before the connection to the port is made waits here."""

    def __init__(self):
        self.writer = None
        self._pending: list[bytes] = []
        self._eof = False
        self._closed = False

    def attach(self, writer) -> None:
        self.writer = writer
        for data in self._pending:
            writer.write(data)
        self._pending.clear()
        if self._closed:
            writer.close()
        elif self._eof and writer.can_write_eof():
            writer.write_eof()

    def write(self, data: bytes) -> None:
        if self.writer is None:
            self._pending.append(data)
        elif not self.writer.is_closing():
            self.writer.write(data)

    def write_eof(self) -> None:
        self._eof = True
        if self.writer is not None and not self.writer.is_closing() and \
                self.writer.can_write_eof():
            self.writer.write_eof()

    def close(self) -> None:
        self._closed = True
        if self.writer is not None:
            self.writer.close()
