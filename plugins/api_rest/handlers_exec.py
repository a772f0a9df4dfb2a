"""``/containers/{id}/exec`` and ``/exec/{id}/...``."""
from __future__ import annotations

import asyncio

from aiohttp import web

from pallet.core import errors
from pallet.plugins.api_rest import streams
from pallet.engine.detach import EscapeFilter, parse_keys
from pallet.plugins.api_rest.server import json_body, json_response, qint


def _svc(request):
    return request.app["service"].execs


async def create(request: web.Request):
    body = await json_body(request)
    return json_response(_svc(request).create(request.match_info["id"], body), status=201)


async def inspect(request: web.Request):
    return json_response(_svc(request).get(request.match_info["id"]).inspect())


async def resize(request: web.Request):
    await _svc(request).resize(request.match_info["id"], qint(request, "h", 0),
                               qint(request, "w", 0))
    return web.Response(status=200)


async def start(request: web.Request):
    svc = _svc(request)
    body = await json_body(request, optional=True) or {}
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid exec start config: JSON object expected")
    detach = bool(body.get("Detach"))
    tty = body.get("Tty")
    if tty is not None and not isinstance(tty, bool):
        raise errors.InvalidArgument(f"invalid Tty: {tty!r}")
    size = body.get("ConsoleSize")
    if size is not None and (not isinstance(size, list) or len(size) != 2 or
                             not all(isinstance(x, int) and x >= 0 for x in size)):
        raise errors.InvalidArgument("invalid ConsoleSize: [height, width] expected")
    rec = svc.check_start(request.match_info["id"])
    keys = parse_keys(rec.cfg.get("DetachKeys"))
    if detach:
        await svc.start(rec, detach=True, tty=tty, console_size=size)
        return web.Response(status=200, headers={"Content-Type": "application/json"})
    use_tty = rec.tty if tty is None else tty  # framing; the process keeps the create's
    conn = streams.Hijacked(request, streams.RAW if use_tty else streams.MULTIPLEXED)
    await conn.start()
    stdin_task = None
    try:
        await svc.start(rec, detach=False, tty=tty, console_size=size)
        if rec.cfg.get("AttachStdin") and rec.running:
            stdin_task = asyncio.get_running_loop().create_task(
                _pump_stdin(svc, rec, conn, EscapeFilter(keys)))
        want = {s for s, key in (("stdout", "AttachStdout"), ("stderr", "AttachStderr"))
                if rec.cfg.get(key, True)}
        while True:
            getter = asyncio.ensure_future(rec.output.get())
            waits = {getter} | ({stdin_task} if stdin_task is not None else set())
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                if stdin_task.result() == "detached":
                    break
                stdin_task = None
                continue
            item = getter.result()
            if item is None:
                break
            name, data = item
            if name in want and not await conn.write(streams.encode(name, data, use_tty)):
                break
    except errors.PalletError as e:
        await conn.write(streams.encode("stdout", (e.message + "\r\n").encode(), use_tty))
    finally:
        if stdin_task is not None and not stdin_task.done():
            stdin_task.cancel()
        await conn.close()
    return conn.response


async def _pump_stdin(svc, rec, conn: streams.Hijacked, escape: EscapeFilter) -> str:
    while True:
        data = await conn.stdin.read(65536)
        if not data:
            if not rec.tty:  # a terminal session outlives its client, as with dockerd
                await svc.close_stdin(rec)
            return "eof"
        data = escape.feed(data)
        if data:
            await svc.write_stdin(rec, data)
        if escape.detached:
            return "detached"


def register(routes) -> None:
    routes.add("POST", "/containers/{id}/exec", create)
    routes.add("POST", "/exec/{id}/start", start)
    routes.add("POST", "/exec/{id}/resize", resize)
    routes.add("GET", "/exec/{id}/json", inspect)
