"""``/build``, ``/build/prune``, ``/build/cancel`` and ``/commit``: parse, call
the builder role (``kernel.provide("builder")``) or the engine's commit,
serialise.

A build answers with docker's JSON progress stream, started at its first
message: an error before it (a bad Dockerfile, a missing one) is a plain
HTTP error, one after it is the stream's last message.  A build stops (and
leaves nothing half-made) when its client goes away.
"""
from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from pallet.core import errors
from pallet.plugins.api_rest.server import api_version, json_body, json_response, qbool, qint

log = logging.getLogger("pallet.api_rest.build")

_DONE = object()


def _builder(request: web.Request):
    return request.app["kernel"].provide("builder")


def _error_msg(exc: BaseException) -> dict:
    message = exc.message if isinstance(exc, errors.PalletError) else \
        f"{type(exc).__name__}: {exc}"
    detail = {"message": message}
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code:
        detail = {"code": code, "message": message}
    return {"errorDetail": detail, "error": message}


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def build(request: web.Request):
    from pallet.engine.build_options import parse_query

    query = {k: request.query.getall(k) for k in request.query}
    options = parse_query(query, api_version=api_version(request),
                          registry_header=request.headers.get("X-Registry-Config"))
    engine = request.app["service"]
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.get_running_loop().create_task(
        _builder(request).build(engine, options, request.content.iter_chunked(1 << 20),
                                queue.put_nowait))
    task.add_done_callback(lambda _t: queue.put_nowait(_DONE))
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})

    async def send(msgs) -> None:
        if not resp.prepared:
            await resp.prepare(request)
        await resp.write(b"".join(json.dumps(m).encode() + b"\r\n" for m in msgs))

    async def watch() -> None:
        # the client went away: the build stops, as dockerd's does
        while not task.done():
            await asyncio.sleep(0.25)
            if _gone(request):
                task.cancel()
                return
    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        while True:
            msg = await queue.get()
            if msg is _DONE:
                break
            await send([msg])
        try:
            await task
        except asyncio.CancelledError:
            if not resp.prepared:
                raise errors.PalletError("build cancelled") from None
            await send([{"stream": "Build cancelled\n"}, _error_msg(
                errors.PalletError("Build cancelled"))])
        except Exception as e:  # noqa: BLE001 — reported in the stream, as dockerd does
            if not resp.prepared:
                raise
            if not isinstance(e, errors.PalletError):
                log.exception("build failed")
            await send([_error_msg(e)])
    except (ConnectionError, asyncio.CancelledError):
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not resp.prepared:
        await resp.prepare(request)
    await resp.write_eof()
    return resp


async def prune(request: web.Request):
    from pallet.plugins.api_rest.server import qfilters

    keep = qint(request, "keep-storage", 0)
    out = await _builder(request).prune(request.app["service"], {
        "all": qbool(request, "all"), "keep_storage": keep, "filters": qfilters(request)})
    return json_response(out)


async def cancel(request: web.Request):
    _builder(request).cancel(request.query.get("id", ""))
    return web.Response(status=200)


async def commit(request: web.Request):
    from pallet.engine.commit import commit as do_commit

    body = await json_body(request, optional=True)
    if body is not None and not isinstance(body, dict):
        raise errors.InvalidArgument("invalid container config: JSON object expected")
    image_id = await do_commit(
        request.app["service"], request.query.get("container", ""),
        repo=request.query.get("repo", ""), tag=request.query.get("tag", ""),
        comment=request.query.get("comment", ""), author=request.query.get("author", ""),
        pause=qbool(request, "pause", True), changes=request.query.getall("changes", []),
        config=body)
    return json_response({"Id": image_id}, status=201)


def register(routes) -> None:
    routes.add("POST", "/build", build)
    routes.add("POST", "/build/prune", prune)
    routes.add("POST", "/build/cancel", cancel)
    routes.add("POST", "/commit", commit)
