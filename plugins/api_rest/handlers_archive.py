"""A container's files: ``/archive`` (``docker cp`` both ways), ``/export``,
``/changes``."""
from __future__ import annotations

import asyncio
import os
import secrets

from aiohttp import web

from pallet.core import errors
from pallet.engine import archive, archive_put
from pallet.engine import changes as changes_mod
from pallet.plugins.api_rest.server import json_response, qbool

STAT_HEADER = "X-Docker-Container-Path-Stat"


def _svc(request):
    return request.app["service"].containers


def _path(request) -> str:
    path = request.query.get("path")
    if not path:
        raise errors.InvalidArgument("bad parameter: path cannot be empty")
    return path


async def _stat(svc, c, path: str, root: int) -> dict:
    try:
        return await asyncio.to_thread(archive.stat_path, root, path)
    except (FileNotFoundError, NotADirectoryError):
        raise archive._not_found(path, c) from None
    except OSError as e:
        raise errors.InvalidArgument(f"stat {path}: {(e.strerror or str(e)).lower()}") from None


async def head_archive(request: web.Request):
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    path = _path(request)
    async with archive.container_root(svc, c, writable=False) as root:
        info = await _stat(svc, c, path, root)
    return web.Response(status=200, headers={STAT_HEADER: archive.stat_header(info),
                                             "Content-Type": "application/json"})


async def get_archive(request: web.Request):
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    path = _path(request)
    async with archive.container_root(svc, c, writable=False) as root:
        info = await _stat(svc, c, path, root)
        resp = web.StreamResponse(status=200, headers={
            STAT_HEADER: archive.stat_header(info), "Content-Type": "application/x-tar"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            await archive.stream(lambda f: archive.write_path(root, path, f), resp.write)
            await resp.write_eof()
        except (ConnectionError, RuntimeError, OSError):
            pass
    svc.emit(c, "archive-path")
    return resp


async def put_archive(request: web.Request):
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    path = _path(request)
    no_overwrite = qbool(request, "noOverwriteDirNonDir")
    copy_ids = qbool(request, "copyUIDGID")
    tmpdir = os.path.join(svc.paths.exec_root, "tmp")
    os.makedirs(tmpdir, mode=0o700, exist_ok=True)
    spool = os.path.join(tmpdir, "put-" + secrets.token_hex(8))
    try:
        with open(spool, "wb") as f:
            async for chunk in request.content.iter_chunked(1 << 20):
                f.write(chunk)
        async with archive.container_root(svc, c, writable=True) as root:
            info = await _stat(svc, c, path, root)
            if not info["mode"] & archive._GO_DIR:
                raise errors.InvalidArgument("extraction point is not a directory")
            target = await asyncio.to_thread(_resolved, root, path)
            if c.data["HostConfig"].get("ReadonlyRootfs") and not _in_volume(c, target):
                raise archive.Forbidden("container rootfs is marked read-only")
            if not _writable(c, target):
                raise archive.Forbidden("mounted volume is marked read-only")
            await asyncio.to_thread(archive_put.extract, root, target, spool,
                                    no_overwrite_dir=no_overwrite, copy_uid_gid=copy_ids)
    finally:
        try:
            os.unlink(spool)
        except OSError:
            pass
    svc.emit(c, "extract-to-dir")
    return web.Response(status=200)


def _resolved(root: int, path: str) -> str:
    from pallet.engine import rootfs

    return rootfs.resolved_path(root, path)


def _mount_of(c, target: str):
    best = None
    for p in c.data.get("MountPoints") or ():
        d = p["Destination"]
        if target == d or target.startswith(d.rstrip("/") + "/"):
            if best is None or len(d) > len(best["Destination"]):
                best = p
    return best


def _in_volume(c, target: str) -> bool:
    return _mount_of(c, target) is not None


def _writable(c, target: str) -> bool:
    p = _mount_of(c, target)
    return p is None or bool(p.get("RW", True))


async def export(request: web.Request):
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    async with archive.container_root(svc, c, writable=False, live=False) as root:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            await archive.stream(lambda f: archive.write_export(root, f), resp.write)
            await resp.write_eof()
        except (ConnectionError, RuntimeError, OSError):
            pass
    svc.emit(c, "export")
    return resp


async def changes(request: web.Request):
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    mounts = await svc.ctrd.snapshot_mounts(c.id, snapshotter=svc.snapshotter)
    out = await asyncio.to_thread(changes_mod.changes, mounts)
    return json_response(out or None)


def register(routes) -> None:
    routes.add("HEAD", "/containers/{id}/archive", head_archive)
    routes.add("GET", "/containers/{id}/archive", get_archive)
    routes.add("PUT", "/containers/{id}/archive", put_archive)
    routes.add("GET", "/containers/{id}/export", export)
    routes.add("GET", "/containers/{id}/changes", changes)
