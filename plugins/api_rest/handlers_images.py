"""``/images/...``: parse, call one service method, serialise."""
from __future__ import annotations

import json

from aiohttp import web

from pallet.core import errors
from pallet.plugins.api_rest.server import json_response, qbool, qfilters


def _svc(request):
    return request.app["service"].images


async def list_(request: web.Request):
    filters = qfilters(request)
    for key in filters:
        if key not in ("reference", "dangling", "label", "before", "since"):
            raise errors.InvalidArgument(f"invalid filter '{key}'")
    records = await _svc(request).all()
    in_use = request.app["service"].containers._users_of
    out = []
    for rec in records:
        if "reference" in filters:
            import fnmatch
            tags = rec.repo_tags
            if not any(fnmatch.fnmatch(t, pat) or fnmatch.fnmatch(t.split(":")[0], pat)
                       for t in tags for pat in filters["reference"]):
                continue
        if "dangling" in filters:
            dangling = not rec.repo_tags
            if any(v.lower() in ("true", "1") for v in filters["dangling"]) != dangling:
                continue
        if "label" in filters:
            labels = (rec.config.get("config") or {}).get("Labels") or {}
            ok = True
            for v in filters["label"]:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    ok = False
            if not ok:
                continue
        summary = rec.summary(len(in_use(rec.id)) if qbool(request, "shared-size") else -1)
        if not rec.repo_tags and not qbool(request, "all"):
            summary["RepoTags"] = []
        out.append(summary)
    return json_response(out)


async def inspect(request: web.Request):
    rec = await _svc(request).get(request.match_info["name"])
    return json_response(rec.inspect())


async def delete(request: web.Request):
    out = await _svc(request).delete(request.match_info["name"], force=qbool(request, "force"))
    return json_response(out)


async def load(request: web.Request):
    """``docker load``: JSON-lines progress, errors as ``{"errorDetail": ...}`` once
    the answer has started, as dockerd does."""
    quiet = qbool(request, "quiet")
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    lines: list[bytes] = []

    async def progress(msg: dict) -> None:
        if quiet and "stream" not in msg and "error" not in msg:
            return
        data = json.dumps(msg).encode() + b"\n"
        if resp.prepared:
            await resp.write(data)
        else:
            lines.append(data)

    try:
        await _svc(request).load(request.content, progress)
    except errors.PalletError as e:
        if not resp.prepared and not lines:
            raise
        await progress({"errorDetail": {"message": e.message}, "error": e.message})
    await resp.prepare(request)
    for data in lines:
        await resp.write(data)
    await resp.write_eof()
    return resp


def register(routes) -> None:
    routes.add("GET", "/images/json", list_)
    routes.add("POST", "/images/load", load)
    routes.add("GET", "/images/{name:.+}/json", inspect)
    routes.add("DELETE", "/images/{name:.+}", delete)
