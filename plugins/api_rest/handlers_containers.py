"""``/containers/...``: parse, call one service method, serialise."""
from __future__ import annotations

import asyncio
import json

from aiohttp import web

from pallet.core import errors
from pallet.plugins.api_rest import streams
from pallet.plugins.api_rest.logs import follow as follow_log, parse_time
from pallet.plugins.api_rest.server import json_body, json_response, qbool, qfilters, qint


def _svc(request):
    return request.app["service"].containers


async def create(request: web.Request):
    body = await json_body(request)
    name = request.query.get("name") or None
    result = await _svc(request).create(body, name)
    return json_response(result, status=201)


async def list_(request: web.Request):
    limit = qint(request, "limit")
    if limit is None and qint(request, "last") not in (None, -1):
        limit = qint(request, "last")
    out = _svc(request).list(all=qbool(request, "all"), limit=limit,
                             filters=qfilters(request))
    return json_response(out)


async def inspect(request: web.Request):
    data = _svc(request).inspect(request.match_info["id"])
    if qbool(request, "size"):
        data["SizeRw"] = 0
        data["SizeRootFs"] = 0
    return json_response(data)


async def start(request: web.Request):
    await _svc(request).start(request.match_info["id"])
    return web.Response(status=204)


async def stop(request: web.Request):
    timeout = qint(request, "t")
    if timeout is None:
        timeout = qint(request, "timeout")
    await _svc(request).stop(request.match_info["id"], timeout, request.query.get("signal"))
    return web.Response(status=204)


async def kill(request: web.Request):
    await _svc(request).kill(request.match_info["id"], request.query.get("signal") or "KILL")
    return web.Response(status=204)


async def wait(request: web.Request):
    """Headers go out at once (the docker CLI waits for them before it starts the
    container), the body when the condition is met."""
    fut = await _svc(request).wait(request.match_info["id"],
                                   request.query.get("condition") or "not-running")
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        code = await fut
        body = {"StatusCode": code}
    except errors.PalletError as e:
        body = {"StatusCode": -1, "Error": {"Message": e.message}}
    try:
        await resp.write(json.dumps(body).encode() + b"\n")
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    return resp


async def delete(request: web.Request):
    await _svc(request).remove(request.match_info["id"], force=qbool(request, "force"),
                               volumes=qbool(request, "v"))
    return web.Response(status=204)


def _time_param(request, name: str) -> int | None:
    """``since``/``until``: unix seconds (with fraction) as the docker CLI sends them."""
    v = request.query.get(name)
    if not v or v == "0":
        return None
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
    entries = follow_log(svc.log_of(c) if follow else c.log, c.log_path, streams=want,
                         tail=ntail, since_ns=_time_param(request, "since") or 0,
                         until_ns=_time_param(request, "until"), follow=follow,
                         running=lambda: c.running)
    tty = c.tty
    resp = web.StreamResponse(status=200, headers={
        "Content-Type": streams.RAW if tty else streams.MULTIPLEXED})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    from pallet.plugins.api_rest.logs import rfc3339nano
    try:
        async for e in entries:
            data = e.data
            if timestamps:
                data = rfc3339nano(e.time_ns).encode() + b" " + data
            await resp.write(streams.encode(e.stream, data, tty))
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    finally:
        await entries.aclose()
    return resp


async def attach(request: web.Request):
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    want = {s for s in ("stdout", "stderr") if qbool(request, s)}
    use_stdin = qbool(request, "stdin")
    stream = qbool(request, "stream")
    with_logs = qbool(request, "logs")
    if not (stream or with_logs):
        raise errors.InvalidArgument("Bad parameters: you must choose at least one stream")
    tty = c.tty
    clog = svc.log_of(c)
    # subscribe before answering: the CLI starts the container as soon as it has
    # the answer, and every byte from then on must reach it
    queue = clog.subscribe_raw() if stream else None
    conn = streams.Hijacked(request, streams.RAW if tty else streams.MULTIPLEXED)
    try:
        await conn.start()
        if with_logs:
            async for e in follow_log(None, c.log_path, streams=want, tail=None):
                await conn.write(streams.encode(e.stream, e.data, tty))
        stdin_task = None
        if use_stdin and stream and c.data["Config"].get("OpenStdin"):
            stdin_task = asyncio.get_running_loop().create_task(_pump_stdin(svc, c, conn))
        if queue is not None:
            while True:
                item = await queue.get()
                if item is None:
                    break
                name, data = item
                if name in want and not await conn.write(streams.encode(name, data, tty)):
                    break
        if stdin_task is not None:
            stdin_task.cancel()
    finally:
        if queue is not None:
            clog.unsubscribe_raw(queue)
        await conn.close()
    # the prepared response: aiohttp writes nothing more on the hijacked connection
    return conn.response


async def _pump_stdin(svc, c, conn: streams.Hijacked) -> None:
    """The client's stdin to the container's; the CLI sends it as soon as it is
    attached, before the start, so wait for the task's FIFO."""
    while True:
        data = await conn.stdin.read(65536)
        while c.io is None and c.id in svc.store.by_id and c.state.get("Status") != "exited":
            await asyncio.sleep(0.02)
        if c.io is None:
            return
        if not data:
            break
        await c.io.write_stdin(data)
    if c.data["Config"].get("StdinOnce"):
        await svc.close_stdin(c)


async def resize(request: web.Request):
    await _svc(request).resize(request.match_info["id"], qint(request, "h", 0),
                               qint(request, "w", 0))
    return web.Response(status=200)


def register(routes) -> None:
    routes.add("POST", "/containers/create", create)
    routes.add("GET", "/containers/json", list_)
    routes.add("GET", "/containers/{id}/json", inspect)
    routes.add("POST", "/containers/{id}/start", start)
    routes.add("POST", "/containers/{id}/stop", stop)
    routes.add("POST", "/containers/{id}/kill", kill)
    routes.add("POST", "/containers/{id}/wait", wait)
    routes.add("DELETE", "/containers/{id}", delete)
    routes.add("GET", "/containers/{id}/logs", logs)
    routes.add("POST", "/containers/{id}/attach", attach)
    routes.add("POST", "/containers/{id}/resize", resize)
