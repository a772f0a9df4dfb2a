"""``docker pull``, ``docker login`` (``POST /auth``) and the progress streams
of long image operations.

palletd pulls as dockerd 20.10 does with containerd: on its own side of the
chain, through containerd's API (the image store's registry client and
:class:`~pallet.distribution.targets.ContainerdTarget`), under a
lease, naming the image last.  A pull is a job of the daemon: it runs to the
end even when the client that asked goes away, and its progress messages
(docker's JSON lines) are copied to the client while it listens.
"""
from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from pallet.core import errors
from pallet.distribution.reference import Reference
from pallet.engine.images import emit

log = logging.getLogger("pallet.api_rest.pull")

_DONE = object()


# --- progress streams -------------------------------------------------------------------

class Jobs:
    """Background work of the daemon that outlives the request that started it."""

    def __init__(self):
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def stream_job(request: web.Request, jobs: Jobs, work, *, hold: int = 0,
                     quiet=None) -> web.StreamResponse:
    """Run ``work(progress)`` as a daemon job and stream its messages as JSON lines.

    The answer starts once more than ``hold`` messages came (pull holds its
    first, "Pulling from", so that an unknown image is a plain HTTP error as
    with dockerd); a failure after that is the stream's last message
    (``errorDetail``).  ``quiet(msg)`` drops messages.  When the client goes
    away the job goes on; its messages are then dropped.
    """
    queue: asyncio.Queue = asyncio.Queue()
    listening = True

    def progress(msg: dict) -> None:
        if listening and not (quiet and quiet(msg)):
            queue.put_nowait(msg)

    async def run():
        try:
            return await work(progress)
        finally:
            queue.put_nowait(_DONE)
    task = jobs.spawn(run())
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    pending: list[dict] = []

    async def send(msgs) -> None:
        if not resp.prepared:
            await resp.prepare(request)
        await resp.write(b"".join(json.dumps(m).encode() + b"\n" for m in msgs))
    try:
        while True:
            msg = await queue.get()
            if msg is _DONE:
                break
            if not resp.prepared:
                pending.append(msg)
                if len(pending) <= hold:
                    continue
                msgs, pending = pending, []
                await send(msgs)
            else:
                await send([msg])
        await asyncio.shield(task)
    except (ConnectionError, asyncio.CancelledError):
        listening = False
        raise
    except errors.PalletError as e:
        if not resp.prepared:
            raise
        await send([_error_msg(e.message)])
    except Exception as e:  # noqa: BLE001 — reported in the stream, as dockerd does
        log.exception("%s %s failed", request.method, request.path)
        if not resp.prepared:
            raise
        await send([_error_msg(f"{type(e).__name__}: {e}")])
    if not resp.prepared or pending:
        await send(pending)
    await resp.write_eof()
    return resp


def _error_msg(text: str) -> dict:
    from pallet.distribution.progress import error_message
    return error_message(text)


# --- registries ---------------------------------------------------------------------------

def registry_options(kernel):
    """dockerd's registry options from ``[engine.registry]`` (keys as
    in daemon.json: ``insecure-registries``, ``registry-mirrors``,
    ``max-concurrent-downloads``...); loopback registries are always insecure."""
    from pallet.distribution.registry import RegistryOptions

    section = dict(kernel.config.section("engine").get("registry") or {})
    try:
        return RegistryOptions.from_config(section)
    except errors.InvalidArgument as e:
        raise errors.ConfigError(f"[engine.registry]: {e.message}") from None


def credentials(request: web.Request):
    """The ``X-Registry-Auth`` header's credentials (None: anonymous)."""
    from pallet.distribution.auth import decode_registry_auth
    return decode_registry_auth(request.headers.get("X-Registry-Auth"))


def naming_target(images):
    """A ContainerdTarget whose names go through the image service (so that a
    moved name leaves the old image dangling, as in docker)."""
    from pallet.containerd.target import ContainerdTarget

    class NamingTarget(ContainerdTarget):
        async def put_image(self, name, target, labels=None):
            await images.repoint(name, target.to_oci(), dict(labels or {}))

    return NamingTarget(images.ctrd, snapshotter=images.snapshotter)


class Distribution:
    """Pull, push and login for palletd (one per daemon)."""

    def __init__(self, kernel, images):
        self.kernel = kernel
        self.images = images
        self.options = registry_options(kernel)
        self.jobs = Jobs()

    def registry(self, creds):
        from pallet.distribution.registry import Registry
        return Registry(self.options, creds)

    async def pull(self, image: str, tag: str, *, platform: str | None, creds,
                   progress) -> list[str]:
        """``POST /images/create?fromImage=&tag=``: one tag or digest, or every
        tag of the repository when neither the image nor ``tag`` names one."""
        from pallet.distribution.pull import parse_platform, pull

        ref = parse_pull_reference(image, tag)
        plat = parse_platform(platform) if platform else None
        target = naming_target(self.images)
        async with self.registry(creds) as registry:
            if ref.tag is None and ref.digest is None:
                tags = await registry.tags(ref.domain, ref.path)
                if not tags:
                    raise errors.NotFound(f"no tags found for {ref.familiar_repository}")
                refs = [Reference(ref.domain, ref.path, t) for t in sorted(tags)]
            else:
                refs = [ref]
            names = []
            for r in refs:
                result = await pull(r, target, registry=registry, platform=plat,
                                    progress=progress, snapshotter=self.images.snapshotter)
                names.append(result.name)
                self.kernel.notify("image_loaded", name=result.name,
                                   digest=result.target.digest)
                emit(self.kernel, "pull", r.familiar, r.familiar_repository)
        return names

    async def push(self, name: str, tag: str, *, creds, progress) -> None:
        """``POST /images/{name}/push?tag=``: one tag, or every tag of the repository."""
        from pallet.distribution.push import push

        try:
            ref = Reference.parse(name, default_tag=False)
        except errors.InvalidArgument as e:
            raise errors.InvalidArgument(f"invalid reference format: {e.message}") from None
        if tag:
            try:
                ref = Reference.parse(f"{ref.repository}:{tag}") if not tag.startswith(
                    "sha256:") else Reference.parse(f"{ref.repository}@{tag}")
            except errors.InvalidArgument:
                raise errors.InvalidArgument(f"invalid tag format: {tag!r}") from None
        if ref.tag or ref.digest:
            refs = [ref]
        else:
            prefix = ref.repository + ":"
            refs = sorted((Reference.parse(i.name) for i in await self.images.ctrd.images()
                           if i.name.startswith(prefix)), key=str)
            if not refs:
                shown = ref.repository if ref.domain == "docker.io" else ref.familiar_repository
                progress({"status": f"The push refers to repository [{shown}]"})
                raise errors.NotFound(f"An image does not exist locally with the tag: "
                                      f"{ref.familiar_repository}")
        target = naming_target(self.images)
        async with self.registry(creds) as registry:
            for r in refs:
                await push(r, target, registry=registry, progress=progress, name=str(r))
                emit(self.kernel, "push", r.familiar, r.familiar_repository)

    async def login(self, body) -> dict:
        """``POST /auth``: check the credentials against the registry."""
        from pallet.distribution.auth import auth_config_from_body
        from pallet.distribution.push import login

        if not isinstance(body, dict):
            raise errors.InvalidArgument("auth config must be a JSON object")
        host, creds = auth_config_from_body(body)
        return await login(host, creds, options=self.options)


def parse_pull_reference(image: str, tag: str | None) -> Reference:
    """``fromImage`` and ``tag`` as dockerd combines them: the tag (or a
    digest) given apart wins; without either, no tag (all tags)."""
    if not image:
        raise errors.InvalidArgument("invalid reference format")
    try:
        ref = Reference.parse(image, default_tag=False)
    except errors.InvalidArgument as e:
        raise errors.InvalidArgument(e.message) from None
    if tag:
        text = f"{ref.repository}@{tag}" if ":" in tag else f"{ref.repository}:{tag}"
        try:
            ref = Reference.parse(text, default_tag=False)
        except errors.InvalidArgument:
            raise errors.InvalidArgument(f"invalid reference format: {text}") from None
    return ref


def distribution(request: web.Request) -> Distribution:
    """The daemon's Distribution (made on first use)."""
    images = request.app["service"].images
    dist = getattr(images, "distribution", None)
    if dist is None:
        dist = images.distribution = Distribution(images.kernel, images)
    return dist
