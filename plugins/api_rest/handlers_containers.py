"""``/containers/...``: parse, call one service method, serialise.  Streams
(logs, attach) are in ``handlers_streams``, files (archive, export, changes)
in ``handlers_archive``."""
from __future__ import annotations

import json

from aiohttp import web

from pallet.core import errors
from pallet.engine import stats as statsmod
from pallet.plugins.api_rest.server import (api_version, json_body, json_response, qbool, qfilters,
                                           qint)


def _svc(request):
    return request.app["service"].containers


async def create(request: web.Request):
    from pallet.engine.createconfig import cgroup_version
    from pallet.plugins.api_rest.versions import create_body

    body = await json_body(request)
    create_body(body, api_version(request), cgroup_v1=cgroup_version() == 1)
    name = request.query.get("name") or None
    result = await _svc(request).create(body, name)
    return json_response(result, status=201)


async def list_(request: web.Request):
    limit = qint(request, "limit")
    if limit is None and qint(request, "last") not in (None, -1):
        limit = qint(request, "last")
    out = await _svc(request).list(all=qbool(request, "all"), limit=limit,
                                   filters=qfilters(request), size=qbool(request, "size"))
    return json_response(out)


async def inspect(request: web.Request):
    svc = _svc(request)
    data = svc.inspect(request.match_info["id"])
    if qbool(request, "size"):
        data.update(await svc.sizes(svc.get(request.match_info["id"])))
    return json_response(data)


async def start(request: web.Request):
    if request.query.get("detachKeys"):
        from pallet.engine.detach import parse_keys
        parse_keys(request.query["detachKeys"])
    await _svc(request).start(request.match_info["id"])
    return web.Response(status=204)


def _timeout(request) -> int | None:
    timeout = qint(request, "t")
    return qint(request, "timeout") if timeout is None else timeout


async def stop(request: web.Request):
    await _svc(request).stop(request.match_info["id"], _timeout(request),
                             request.query.get("signal") or None)
    return web.Response(status=204)


async def restart(request: web.Request):
    await _svc(request).restart(request.match_info["id"], _timeout(request),
                                request.query.get("signal") or None)
    return web.Response(status=204)


async def kill(request: web.Request):
    await _svc(request).kill(request.match_info["id"], request.query.get("signal") or "KILL")
    return web.Response(status=204)


async def pause(request: web.Request):
    await _svc(request).pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause(request: web.Request):
    await _svc(request).unpause(request.match_info["id"])
    return web.Response(status=204)


async def rename(request: web.Request):
    name = request.query.get("name")
    if name is None:
        raise errors.InvalidArgument("Neither old nor new names may be empty")
    await _svc(request).rename(request.match_info["id"], name)
    return web.Response(status=204)


async def update(request: web.Request):
    body = await json_body(request)
    return json_response(await _svc(request).update(request.match_info["id"], body))


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
    if qbool(request, "link"):
        await _svc(request).remove_link(request.match_info["id"])
        return web.Response(status=204)
    await _svc(request).remove(request.match_info["id"], force=qbool(request, "force"),
                               volumes=qbool(request, "v"))
    return web.Response(status=204)


async def prune(request: web.Request):
    return json_response(await _svc(request).prune(qfilters(request)))


async def resize(request: web.Request):
    await _svc(request).resize(request.match_info["id"], qint(request, "h", 0),
                               qint(request, "w", 0))
    return web.Response(status=200)


async def top(request: web.Request):
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    if not c.running:
        raise errors.Conflict(f"Container {c.id} is not running")
    pids = [p.pid for p in await svc.ctrd.task_pids(c.id)]
    out = await statsmod.top(pids, request.query.get("ps_args") or "-ef")
    svc.emit(c, "top")
    return json_response(out)


async def stats(request: web.Request):
    c = _svc(request).get(request.match_info["id"])
    stream = qbool(request, "stream", True)
    one_shot = qbool(request, "one-shot")
    if one_shot and stream:
        raise errors.InvalidArgument("cannot have stream=true and one-shot=true")
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    readings = statsmod.stats(c, stream=stream, one_shot=one_shot)
    try:
        async for s in readings:
            if not resp.prepared:
                await resp.prepare(request)
            await resp.write(json.dumps(s).encode() + b"\n")
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    finally:
        await readings.aclose()
    return resp


def register(routes) -> None:
    from pallet.plugins.api_rest import handlers_archive, handlers_streams

    routes.add("POST", "/containers/create", create)
    routes.add("GET", "/containers/json", list_)
    routes.add("POST", "/containers/prune", prune)
    routes.add("GET", "/containers/{id}/json", inspect)
    routes.add("POST", "/containers/{id}/start", start)
    routes.add("POST", "/containers/{id}/stop", stop)
    routes.add("POST", "/containers/{id}/restart", restart)
    routes.add("POST", "/containers/{id}/kill", kill)
    routes.add("POST", "/containers/{id}/pause", pause)
    routes.add("POST", "/containers/{id}/unpause", unpause)
    routes.add("POST", "/containers/{id}/rename", rename)
    routes.add("POST", "/containers/{id}/update", update)
    routes.add("POST", "/containers/{id}/wait", wait)
    routes.add("DELETE", "/containers/{id}", delete)
    routes.add("DELETE", "/containers/{id:.+}", delete)  # a link: /PARENT/ALIAS
    routes.add("POST", "/containers/{id}/resize", resize)
    routes.add("GET", "/containers/{id}/top", top)
    routes.add("GET", "/containers/{id}/stats", stats)
    handlers_streams.register(routes)
    handlers_archive.register(routes)
