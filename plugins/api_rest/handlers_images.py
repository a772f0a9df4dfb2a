"""``/images/...`` and ``/auth``: parse, call one service function, serialise.
(``/system/df`` is the system service's; its image part is
:meth:`ImageService.df`.)"""
from __future__ import annotations

from aiohttp import web

from pallet.core import errors
from pallet.plugins.api_rest.server import json_body, json_response, qbool, qfilters


def _svc(request):
    return request.app["service"].images


def _running(request):
    """Whether a container runs (for rmi's conflicts)."""
    containers = request.app["service"].containers

    def running(cid: str) -> bool:
        try:
            return bool(containers.get(cid).state.get("Running"))
        except errors.PalletError:
            return False
    return running


async def list_(request: web.Request):
    out = await _svc(request).list(qfilters(request), all_=qbool(request, "all"),
                                   shared_size=qbool(request, "shared-size"))
    return json_response(out)


async def inspect(request: web.Request):
    rec = await _svc(request).get(request.match_info["name"])
    return json_response(rec.inspect())


async def history(request: web.Request):
    return json_response(await _svc(request).history(request.match_info["name"]))


async def delete(request: web.Request):
    out = await _svc(request).delete(request.match_info["name"], force=qbool(request, "force"),
                                     running=_running(request))
    return json_response(out)


async def tag(request: web.Request):
    await _svc(request).tag(request.match_info["name"], request.query.get("repo", ""),
                            request.query.get("tag") or None)
    return web.Response(status=201)


async def prune(request: web.Request):
    return json_response(await _svc(request).prune(qfilters(request)))


async def create(request: web.Request):
    """``POST /images/create``: a pull (``fromImage``) or an import (``fromSrc``)."""
    from pallet.engine import pull

    dist = pull.distribution(request)
    q = request.query
    if q.get("fromSrc"):
        return await _import(request, dist)
    image = q.get("fromImage", "")
    if not image:
        raise errors.InvalidArgument("fromImage or fromSrc is required")
    ref = pull.parse_pull_reference(image, q.get("tag"))  # bad input: a 400 at once
    creds = pull.credentials(request)
    platform = q.get("platform") or None

    async def work(progress):
        return await dist.pull(str(ref) if (ref.tag or ref.digest) else image, "",
                               platform=platform, creds=creds, progress=progress)
    return await pull.stream_job(request, dist.jobs, work, hold=1)


async def _import(request: web.Request, dist):
    from pallet.engine import loader, pull

    q = request.query
    if q["fromSrc"] != "-":
        raise errors.NotImplementedYet("import from a URL is not supported: "
                                       "send the tarball as the request body (fromSrc=-)")
    images = _svc(request)
    # the body is read before the answer starts, so that it is not cut short
    path = await images.spool(request.content, "import")

    async def work(progress):
        import os
        try:
            with open(path, "rb") as f:
                return await loader.import_image(
                    images, f, repo=q.get("repo", ""), tag=q.get("tag", ""),
                    changes=q.getall("changes", []), message=q.get("message", ""),
                    platform=q.get("platform") or None, progress=progress)
        finally:
            os.unlink(path)
    return await pull.stream_job(request, dist.jobs, work)


async def push(request: web.Request):
    from pallet.engine import pull

    dist = pull.distribution(request)
    name = request.match_info["name"]
    tag = request.query.get("tag", "")
    creds = pull.credentials(request)

    async def work(progress):
        await dist.push(name, tag, creds=creds, progress=progress)
    return await pull.stream_job(request, dist.jobs, work)


async def auth(request: web.Request):
    from pallet.engine import pull

    body = await json_body(request)
    return json_response(await pull.distribution(request).login(body))


async def load(request: web.Request):
    """``docker load``: JSON-lines progress, errors as ``{"errorDetail": ...}`` once
    the answer has started, as dockerd does."""
    from pallet.engine import pull

    quiet = qbool(request, "quiet")
    images = _svc(request)
    path = await images.spool(request.content, "load")

    async def work(progress):
        import os

        from pallet.engine import loader
        try:
            if os.path.getsize(path) == 0:
                raise errors.InvalidArgument("empty export - not a tar archive")
            await loader.load_archive(images, path, progress)
        finally:
            os.unlink(path)

    def drop(msg: dict) -> bool:
        return quiet and "stream" not in msg
    return await pull.stream_job(request, pull.distribution(request).jobs, work, quiet=drop,
                                 start=True)


async def save(request: web.Request):
    from pallet.engine import loader

    names = request.query.getall("names", [])
    if "name" in request.match_info:
        names = [request.match_info["name"]]
    return await loader.save(request, _svc(request), names)


def register(routes) -> None:
    routes.add("GET", "/images/json", list_)
    routes.add("POST", "/images/create", create)
    routes.add("POST", "/images/load", load)
    routes.add("GET", "/images/get", save)
    routes.add("POST", "/images/prune", prune)
    routes.add("GET", "/images/{name:.+}/get", save)
    routes.add("GET", "/images/{name:.+}/json", inspect)
    routes.add("GET", "/images/{name:.+}/history", history)
    routes.add("POST", "/images/{name:.+}/push", push)
    routes.add("POST", "/images/{name:.+}/tag", tag)
    routes.add("DELETE", "/images/{name:.+}", delete)
    routes.add("POST", "/auth", auth)
