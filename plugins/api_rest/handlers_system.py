"""System endpoints: _ping, version, info, events, system/df."""
from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from pallet.engine import events as eventsmod
from pallet.plugins.api_rest.server import API_VERSION, json_response, qfilters

PING_HEADERS = {
    "API-Version": API_VERSION, "Ostype": "linux", "Docker-Experimental": "false",
    "Builder-Version": "1", "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


async def ping(request: web.Request):
    if request.method == "HEAD":
        resp = web.Response(headers=PING_HEADERS, content_type="text/plain", charset="utf-8")
        # said outright, as dockerd does: without it Go's HTTP client (the docker
        # CLI's) takes about a millisecond more before its next request
        resp.headers["Content-Length"] = "0"
        return resp
    return web.Response(body=b"OK", headers=PING_HEADERS,
                        content_type="text/plain", charset="utf-8")


async def version(request: web.Request):
    return json_response(await request.app["service"].system.version())


async def info(request: web.Request):
    return json_response(await request.app["service"].system.info())


async def df(request: web.Request):
    return json_response(await request.app["service"].system.df())


async def events(request: web.Request):
    """The event stream: the backlog since ``since``, then live events, until
    ``until`` (or the client leaves)."""
    from pallet.plugins.api_rest.handlers_streams import time_param

    filters = qfilters(request)
    eventsmod.check_filters(filters)
    since = time_param(request, "since")
    if since is None and request.query.get("since") == "0":
        since = 0  # from the start of the backlog
    until = time_param(request, "until")
    bus = eventsmod.bus_of(request.app["kernel"])
    backlog, queue = bus.subscribe()
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        now = time.time_ns()
        for msg in backlog:
            if since is not None and msg["timeNano"] >= since and \
                    (until is None or msg["timeNano"] <= until) and \
                    eventsmod.matches(msg, filters):
                await resp.write(json.dumps(msg).encode() + b"\n")
        if until is not None and until <= now:
            await resp.write_eof()
            return resp
        while True:
            timeout = None if until is None else max(0.0, (until - time.time_ns()) / 1e9)
            try:
                msg = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                break
            if until is not None and msg["timeNano"] > until:
                break
            if eventsmod.matches(msg, filters):
                await resp.write(json.dumps(msg).encode() + b"\n")
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    finally:
        bus.unsubscribe(queue)
    return resp


def register(routes) -> None:
    routes.add("GET", "/_ping", ping)
    routes.add("HEAD", "/_ping", ping)
    routes.add("GET", "/version", version)
    routes.add("GET", "/info", info)
    routes.add("GET", "/events", events)
    routes.add("GET", "/system/df", df)
