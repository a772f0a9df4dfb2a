"""System endpoints: _ping, version, info."""
from __future__ import annotations

from aiohttp import web

from pallet.plugins.api_rest.server import API_VERSION, json_response

PING_HEADERS = {
    "API-Version": API_VERSION, "Ostype": "linux", "Docker-Experimental": "false",
    "Builder-Version": "1", "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


async def ping(request: web.Request):
    body = b"" if request.method == "HEAD" else b"OK"
    return web.Response(body=body, headers=PING_HEADERS,
                        content_type="text/plain", charset="utf-8")


async def version(request: web.Request):
    return json_response(await request.app["service"].system.version())


async def info(request: web.Request):
    return json_response(await request.app["service"].system.info())


def register(routes) -> None:
    routes.add("GET", "/_ping", ping)
    routes.add("HEAD", "/_ping", ping)
    routes.add("GET", "/version", version)
    routes.add("GET", "/info", info)
