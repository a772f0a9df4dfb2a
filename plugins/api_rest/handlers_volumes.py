"""``/volumes/...``: parse, call the volume service, serialise."""
from __future__ import annotations


from aiohttp import web

from pallet.core import errors
from pallet.plugins.api_rest.server import json_body, json_response, qbool, qfilters


def _svc(request):
    return request.app["service"].volumes


async def list_(request: web.Request):
    vols = _svc(request).list(qfilters(request))
    return json_response({"Volumes": [v.inspect() for v in vols], "Warnings": None})


async def create(request: web.Request):
    body = await json_body(request, optional=True) or {}
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid volume config: JSON object expected")
    name = body.get("Name") or None
    if name is not None and not isinstance(name, str):
        raise errors.InvalidArgument(f"invalid Name: {name!r}")
    if body.get("Driver") is not None and not isinstance(body["Driver"], str):
        raise errors.InvalidArgument(f"invalid Driver: {body['Driver']!r}")
    v = await _svc(request).create(name, body.get("Driver"), labels=body.get("Labels"),
                                   options=body.get("DriverOpts"))
    return json_response(v.inspect(), status=201)


async def inspect(request: web.Request):
    return json_response(_svc(request).get(request.match_info["name"]).inspect())


async def remove(request: web.Request):
    await _svc(request).remove(request.match_info["name"], force=qbool(request, "force"))
    return web.Response(status=204)


async def prune(request: web.Request):
    return json_response(await _svc(request).prune(qfilters(request)))


async def update(request: web.Request):
    _svc(request).get(request.match_info["name"])
    raise errors.InvalidArgument("volume update is only supported for cluster volumes")


def register(routes) -> None:
    routes.add("GET", "/volumes", list_)
    routes.add("POST", "/volumes/create", create)
    routes.add("POST", "/volumes/prune", prune)
    routes.add("GET", "/volumes/{name}", inspect)
    routes.add("PUT", "/volumes/{name}", update)
    routes.add("DELETE", "/volumes/{name}", remove)


