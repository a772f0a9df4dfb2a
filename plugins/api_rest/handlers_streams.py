"""Streams of a container: ``/logs``, the hijacked ``/attach`` and ``/attach/ws``."""
from __future__ import annotations

import asyncio

from aiohttp import web

from pallet.core import errors
from pallet.plugins.api_rest import streams
from pallet.engine import logdrivers
from pallet.engine.detach import EscapeFilter, parse_keys
from pallet.engine.logs import follow as follow_log, parse_time, rfc3339nano
from pallet.plugins.api_rest.server import qbool


def _svc(request):
    return request.app["service"].containers


def time_param(request, name: str) -> int | None:
    """``since``/``until``: unix seconds (with fraction) as the docker CLI sends them,
    or an RFC 3339 time."""
    v = request.query.get(name)
    if not v or v == "0":
        return None
    secs, dot, frac = v.partition(".")
    if secs.lstrip("-").isdigit() and (not dot or frac.isdigit()):
        # exact to the nanosecond (a float would round it)
        return int(secs) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])
    try:
        return int(float(v) * 1e9)
    except ValueError:
        try:
            return parse_time(v)
        except ValueError:
            raise errors.InvalidArgument(f"invalid value for {name}: {v!r}") from None


async def logs(request: web.Request):
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    want = {s for s in ("stdout", "stderr") if qbool(request, s)}
    if not want:
        raise errors.InvalidArgument("Bad parameters: you must choose at least one stream")
    path, kind = logdrivers.read_source(c)  # 501 for a driver that keeps nothing
    tail = request.query.get("tail", "all")
    if tail in ("all", ""):
        ntail = None
    else:
        try:
            ntail = int(tail)
        except ValueError:
            raise errors.InvalidArgument(f"invalid value for tail: {tail!r}") from None
        if ntail < 0:
            ntail = None
    timestamps = qbool(request, "timestamps")
    follow = qbool(request, "follow")
    since = time_param(request, "since") or 0
    until = time_param(request, "until")
    entries = follow_log(svc.log_of(c) if follow else c.log, path, streams=want,
                         tail=ntail, since_ns=since, until_ns=until, follow=follow,
                         running=lambda: c.running, kind=kind)
    tty = c.tty
    resp = web.StreamResponse(status=200, headers={
        "Content-Type": streams.RAW if tty else streams.MULTIPLEXED})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        async for batch in entries:
            if timestamps:
                await resp.write(b"".join(
                    streams.encode(e.stream, rfc3339nano(e.time_ns).encode() + b" " + e.data, tty)
                    for e in batch))
            else:
                await resp.write(b"".join(streams.encode(e.stream, e.data, tty) for e in batch))
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    finally:
        await entries.aclose()
    return resp


def _attach_checks(request):
    """The container and what both attach endpoints refuse before answering."""
    c = _svc(request).get(request.match_info["id"])
    if c.state.get("Status") == "restarting":
        raise errors.Conflict("You cannot attach to a restarting container, wait until it is "
                              "running")
    return c


async def _forward(queue: asyncio.Queue, want: set, write, detached: asyncio.Event) -> None:
    """The container's output from ``queue`` to ``write`` (which says False when
    the client is gone) until the output ends, the client leaves or detaches."""
    while not detached.is_set():
        getter = asyncio.ensure_future(queue.get())
        stop = asyncio.ensure_future(detached.wait())
        done, _ = await asyncio.wait({getter, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if getter not in done:
            getter.cancel()
            return
        item = getter.result()
        if item is None:
            return
        name, data = item
        if name in want and not await write(name, data):
            return


async def attach(request: web.Request):
    svc = _svc(request)
    c = _attach_checks(request)
    want = {s for s in ("stdout", "stderr") if qbool(request, s)}
    use_stdin = qbool(request, "stdin")
    stream = qbool(request, "stream")
    with_logs = qbool(request, "logs")
    keys = parse_keys(request.query.get("detachKeys"))
    if not (stream or with_logs):
        raise errors.InvalidArgument("Bad parameters: you must choose at least one stream")
    tty = c.tty
    clog = svc.log_of(c)
    # subscribe before answering: the CLI starts the container as soon as it has
    # the answer, and every byte from then on must reach it
    queue = clog.subscribe_raw() if stream else None
    conn = streams.Hijacked(request, streams.RAW if tty else streams.MULTIPLEXED)
    detached = asyncio.Event()
    try:
        await conn.start()
        svc.emit(c, "attach")
        if with_logs and c.log_path:
            async for batch in follow_log(None, c.log_path, streams=want, tail=None):
                await conn.write(b"".join(streams.encode(e.stream, e.data, tty) for e in batch))
        stdin_task = None
        if use_stdin and stream and c.data["Config"].get("OpenStdin"):
            stdin_task = asyncio.get_running_loop().create_task(
                _pump_stdin(svc, c, lambda: conn.stdin.read(65536), EscapeFilter(keys),
                            detached))
        if queue is not None:
            await _forward(queue, want, lambda name, data: conn.write(
                streams.encode(name, data, tty)), detached)
        if stdin_task is not None:
            stdin_task.cancel()
    finally:
        if queue is not None:
            clog.unsubscribe_raw(queue)
        await conn.close()
        if detached.is_set():
            svc.emit(c, "detach")
    # the prepared response: aiohttp writes nothing more on the hijacked connection
    return conn.response


async def attach_ws(request: web.Request):
    """``/containers/{id}/attach/ws``: the attach over a websocket.  Output goes
    unframed (the websocket keeps the messages apart), in binary messages from
    API 1.28 on and text ones before; every message the client sends is stdin.
    Before API 1.42 the stdin/stdout/stderr parameters are ignored (all on)."""
    from aiohttp import WSMsgType

    from pallet.plugins.api_rest.server import api_version, version_at_least

    svc = _svc(request)
    c = _attach_checks(request)
    version = api_version(request)
    if version_at_least(version, "1.42"):
        want = {s for s in ("stdout", "stderr") if qbool(request, s)}
        use_stdin = qbool(request, "stdin")
    else:
        want, use_stdin = {"stdout", "stderr"}, True
    stream = qbool(request, "stream")
    with_logs = qbool(request, "logs")
    keys = parse_keys(request.query.get("detachKeys"))
    opcode = WSMsgType.BINARY if version_at_least(version, "1.28") else WSMsgType.TEXT
    clog = svc.log_of(c)
    queue = clog.subscribe_raw() if stream else None
    ws = web.WebSocketResponse(autoping=True)
    detached = asyncio.Event()
    stdin_task = None
    try:
        await ws.prepare(request)
        request["hijacked"] = True  # errors can no longer be answered in HTTP
        svc.emit(c, "attach")

        async def send(name, data) -> bool:
            if ws.closed:
                return False
            try:
                await ws.send_frame(data, opcode)
            except (ConnectionError, RuntimeError):
                return False
            return True

        if with_logs and c.log_path:
            async for batch in follow_log(None, c.log_path, streams=want, tail=None):
                if not await send(None, b"".join(e.data for e in batch)):
                    return ws
        gone = asyncio.Event()

        async def receive() -> bytes:
            """The client's next message as stdin; b"" when it has closed."""
            while True:
                msg = await ws.receive()
                if msg.type == WSMsgType.BINARY:
                    return msg.data
                if msg.type == WSMsgType.TEXT:
                    return msg.data.encode()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                                WSMsgType.ERROR):
                    gone.set()
                    return b""

        if use_stdin and stream and c.data["Config"].get("OpenStdin"):
            stdin_task = asyncio.get_running_loop().create_task(
                _pump_stdin(svc, c, receive, EscapeFilter(keys), detached))
        else:
            # still read: control frames (ping, close) arrive as messages
            stdin_task = asyncio.get_running_loop().create_task(_drain(receive, detached))
        if queue is not None:
            ended = asyncio.ensure_future(gone.wait())
            forward = asyncio.ensure_future(_forward(queue, want, send, detached))
            await asyncio.wait({forward, ended}, return_when=asyncio.FIRST_COMPLETED)
            for t in (forward, ended):
                t.cancel()
    finally:
        if stdin_task is not None:
            stdin_task.cancel()
        if queue is not None:
            clog.unsubscribe_raw(queue)
        if ws.prepared and not ws.closed:
            try:
                await ws.close()
            except (ConnectionError, RuntimeError):
                pass
        if detached.is_set():
            svc.emit(c, "detach")
    return ws


async def _drain(receive, detached: asyncio.Event) -> None:
    while await receive():
        pass


async def _pump_stdin(svc, c, read, escape: EscapeFilter, detached: asyncio.Event) -> None:
    """The client's stdin (``read()`` gives the next bytes, b"" at the end) to
    the container's; the CLI sends it as soon as it is attached, before the
    start, so wait for the task's FIFO.  The detach keys end the attach and
    leave the container (and its stdin) alone."""
    while True:
        data = await read()
        while c.io is None and c.id in svc.store.by_id and c.state.get("Status") not in (
                "exited", "dead"):
            await asyncio.sleep(0.02)
        if c.io is None:
            return
        if not data:
            break
        data = escape.feed(data)
        if data:
            await c.io.write_stdin(data)
        if escape.detached:
            detached.set()
            return
    # as dockerd: the end of the client's input ends the container's only without
    # a terminal (a client that leaves a terminal session must not end it)
    if c.data["Config"].get("StdinOnce") and not c.tty:
        await svc.close_stdin(c)


def register(routes) -> None:
    routes.add("GET", "/containers/{id}/logs", logs)
    routes.add("POST", "/containers/{id}/attach", attach)
    routes.add("GET", "/containers/{id}/attach/ws", attach_ws)
