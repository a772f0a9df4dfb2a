"""``/networks/...``: parse, call the network role's object, serialise."""
from __future__ import annotations

import asyncio

from aiohttp import web

from pallet.core import errors
from pallet.engine import networking
from pallet.plugins.api_rest.server import json_body, json_response, qfilters


def _net(request):
    kernel = request.app["kernel"]
    if not kernel.has_role("network"):
        raise errors.NotImplementedYet("no network plugin is loaded")
    return kernel.provide("network")


async def list_(request: web.Request):
    return json_response(await asyncio.to_thread(_net(request).list_networks,
                                                 qfilters(request)))


async def inspect(request: web.Request):
    return json_response(await asyncio.to_thread(_net(request).inspect_network,
                                                 request.match_info["id"]))


async def create(request: web.Request):
    body = await json_body(request)
    return json_response(await networking.create_network(request.app["kernel"], body),
                         status=201)


async def remove(request: web.Request):
    await networking.remove_network(request.app["kernel"], request.match_info["id"])
    return web.Response(status=204)


async def prune(request: web.Request):
    removed = await asyncio.to_thread(_net(request).prune_networks, qfilters(request))
    return json_response({"NetworksDeleted": removed})


def _container(request, body) -> object:
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid request: JSON object expected")
    ref = body.get("Container")
    if not isinstance(ref, str) or not ref:
        raise errors.InvalidArgument("container is required")
    return request.app["service"].containers.get(ref)


async def connect(request: web.Request):
    body = await json_body(request)
    c = _container(request, body)
    epcfg = body.get("EndpointConfig") or {}
    if not isinstance(epcfg, dict):
        raise errors.InvalidArgument("invalid EndpointConfig")
    await networking.connect(request.app["kernel"], c, request.match_info["id"], epcfg)
    return web.Response(status=200)


async def disconnect(request: web.Request):
    body = await json_body(request)
    c = _container(request, body)
    await networking.disconnect(request.app["kernel"], c, request.match_info["id"],
                                bool(body.get("Force")))
    return web.Response(status=200)


def register(routes) -> None:
    routes.add("GET", "/networks", list_)
    routes.add("POST", "/networks/create", create)
    routes.add("POST", "/networks/prune", prune)
    routes.add("GET", "/networks/{id}", inspect)
    routes.add("DELETE", "/networks/{id}", remove)
    routes.add("POST", "/networks/{id}/connect", connect)
    routes.add("POST", "/networks/{id}/disconnect", disconnect)
