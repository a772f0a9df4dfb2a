"""``docker push``: an image of a :class:`~.targets.ContentTarget` to a registry.

For each layer, as dockerd does: ``Preparing``; a ``HEAD`` to see whether the
repository has the blob (``Layer already exists``); else a cross-repository
mount from the repository the blob was pulled from or pushed to on the same
registry (containerd's ``distribution.source`` labels; ``Mounted from
NAME``); else an upload (monolithic, or chunked with ``upload-chunk-size``),
with ``Pushing`` progress, then ``Pushed``.  Then the config, and the manifest
under the tag, exactly as stored (so its digest does not change).  The last
lines are docker's ``TAG: digest: DIGEST size: SIZE`` and the ``aux``
message with the same facts.

An image whose target is an index is pushed as the manifest for this
platform (as docker 20.10's store does), or as the whole index when every
manifest it lists is present.
"""
from __future__ import annotations

import asyncio
import json

import attrs

from pallet.core.errors import InvalidArgument, NotFound
from pallet.core.models import Descriptor
from pallet.distribution.reference import Reference

from pallet.distribution.mediatypes import INDEX_TYPES, MANIFEST_TYPES
from pallet.distribution.platforms import Platform, select_manifest
from pallet.distribution.progress import Progress, ProgressCallback, short_id
from pallet.distribution.pull import _descriptor, parse_platform
from pallet.distribution.registry import Registry, RegistryOptions
from pallet.distribution.targets import LABEL_DISTRIBUTION_SOURCE


@attrs.frozen
class PushResult:
    tag: str
    digest: str
    size: int


async def _collect(target, desc: Descriptor, platform: Platform, what: str):
    """(manifests to push, in order children first, as (desc, bytes, doc)),
    and the descriptor to PUT under the tag."""
    data = await target.read(desc.digest)
    doc = json.loads(data)
    if desc.media_type in INDEX_TYPES or ("manifests" in doc and "layers" not in doc):
        children = []
        complete = True
        for m in doc.get("manifests") or []:
            d = _descriptor(m, what)
            if not await target.exists(d.digest):
                complete = False
                break
        if complete:
            for m in doc.get("manifests") or []:
                d = _descriptor(m, what)
                sub, _ = await _collect(target, d, platform, what)
                children.extend(sub)
            return children + [(desc, data, doc)], desc
        chosen = _descriptor(select_manifest(doc, platform, what), what)
        return await _collect(target, chosen, platform, what)
    if desc.media_type not in MANIFEST_TYPES and "config" not in doc:
        raise InvalidArgument(f"{what}: unsupported manifest media type {desc.media_type!r}")
    return [(desc, data, doc)], desc


class _Pusher:
    def __init__(self, ref: Reference, target, registry: Registry, progress: Progress):
        self.ref = ref
        self.target = target
        self.registry = registry
        self.progress = progress
        self.host = ref.domain
        self.path = ref.path
        self.sem = asyncio.Semaphore(registry.options.max_concurrent_uploads)
        self.done: dict[str, asyncio.Task] = {}

    async def blob(self, desc: Descriptor, show: bool) -> None:
        """Make sure the repository has ``desc``; shared by the manifests of an index."""
        task = self.done.get(desc.digest)
        if task is None:
            task = asyncio.ensure_future(self._blob(desc, show))
            self.done[desc.digest] = task
        await task

    async def _blob(self, desc: Descriptor, show: bool) -> None:
        p = self.progress
        sid = short_id(desc.digest)
        if self.sem.locked() and show:
            await p.status("Waiting", sid)
        async with self.sem:
            if await self.registry.blob_size(self.host, self.path, desc.digest,
                                             push=True) is not None:
                if show:
                    await p.status("Layer already exists", sid)
                await self._label(desc)
                return
            if not await self.target.exists(desc.digest):
                raise NotFound(f"push {self.ref.familiar}: content {desc.digest} is missing "
                               "from the store")
            mounted, location = await self._try_mount(desc)
            if mounted is not None:
                if show:
                    await p.status(f"Mounted from {mounted}", sid)
                await self._label(desc)
                return
            sent = 0

            async def reader():
                nonlocal sent
                async for data in self.target.read_iter(desc.digest):
                    sent += len(data)
                    if show:
                        await p.update("Pushing", sid, sent, desc.size)
                    yield data
            await self.registry.upload_blob(self.host, self.path, desc, reader,
                                            location=location)
            if show:
                await p.status("Pushed", sid)
            await self._label(desc)

    async def _try_mount(self, desc: Descriptor) -> tuple[str | None, str | None]:
        """Mount from another repository of the same registry the blob is known
        to be in; returns (source repository or None, upload location to reuse)."""
        labels = await self.target.labels(desc.digest)
        sources = [repo for repo in
                   labels.get(LABEL_DISTRIBUTION_SOURCE + self.host, "").split(",") if repo]
        location = None
        for repo in sources:
            if repo == self.path:
                continue
            try:
                mounted, loc = await self.registry.start_upload(self.host, self.path,
                                                                mount=desc.digest,
                                                                mount_from=repo)
            except NotFound:
                continue
            if mounted:
                return repo, None
            location = loc  # the registry started an upload instead: use it
            break
        return None, location

    async def _label(self, desc: Descriptor) -> None:
        """Remember that the blob is in this repository (for later mounts)."""
        key = LABEL_DISTRIBUTION_SOURCE + self.host
        try:
            labels = await self.target.labels(desc.digest)
            repos = [r for r in labels.get(key, "").split(",") if r]
            if self.path not in repos:
                repos.append(self.path)
                await self.target.set_labels(desc.digest, {key: ",".join(repos)})
        except (NotFound, InvalidArgument):
            pass

    async def run(self, name: str, platform: Platform) -> PushResult:
        p = self.progress
        repo_display = self.ref.repository if self.ref.domain == "docker.io" \
            else self.ref.familiar_repository
        await p.status(f"The push refers to repository [{repo_display}]")
        image = await self.target.get_image(name)
        if image is None:
            raise NotFound(f"An image does not exist locally with the tag: "
                           f"{self.ref.familiar_repository}")
        manifests, top = await _collect(self.target, image, platform, self.ref.familiar)
        layers: list[Descriptor] = []
        configs: list[Descriptor] = []
        for desc, _, doc in manifests:
            if "config" in doc:
                configs.append(_descriptor(doc["config"], self.ref.familiar))
                for layer in doc.get("layers") or []:
                    d = _descriptor(layer, self.ref.familiar)
                    if d.digest not in {x.digest for x in layers}:
                        layers.append(d)
        # docker lists the top layer first
        for layer in reversed(layers):
            await p.status("Preparing", short_id(layer.digest))
        tasks = [asyncio.ensure_future(self.blob(layer, True)) for layer in reversed(layers)]
        tasks += [asyncio.ensure_future(self.blob(c, False)) for c in configs]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        tag = self.ref.tag or ""
        for desc, data, _ in manifests:
            is_top = desc.digest == top.digest
            reference = tag if (is_top and tag) else desc.digest
            await self.registry.put_manifest(self.host, self.path, reference, desc.media_type,
                                             data)
            await self._label(desc)
        shown = tag or top.digest
        await p.send({"status": f"{shown}: digest: {top.digest} size: {top.size}"})
        await p.send({"progressDetail": {}, "aux": {"Tag": tag, "Digest": top.digest,
                                                    "Size": top.size}})
        return PushResult(tag, top.digest, top.size)


async def push(ref: str | Reference, target, *, registry: Registry | None = None,
               options: RegistryOptions | None = None, credentials=None,
               auth_file: str | None = None, progress: ProgressCallback | None = None,
               name: str | None = None, platform: str | Platform | None = None) -> PushResult:
    """Push the image named ``name`` (default: ``ref`` normalised) of ``target``
    to the repository and tag of ``ref``; return the tag, digest and size that
    docker prints.  ``progress`` receives docker's JSON messages."""
    if not isinstance(ref, Reference):
        ref = Reference.parse(ref)
    plat = platform if isinstance(platform, Platform) else parse_platform(platform)
    async with Registry.given_or_own(registry, options, credentials, auth_file) as registry:
        pusher = _Pusher(ref, target, registry, Progress(progress))
        return await pusher.run(name or str(ref), plat)


async def login(server: str | None, credentials, *, options: RegistryOptions | None = None,
                auth_file: str | None = None, store: bool = False) -> dict:
    """Check credentials against a registry as ``POST /auth`` does; answer
    docker's body ``{"Status": "Login Succeeded", "IdentityToken": ""}``.
    With ``store``, also save them in ``auth_file`` (the CLI's side)."""
    from pallet.distribution.auth import AuthConfigFile, normalize_server

    host = normalize_server(server)
    async with Registry(options, credentials) as registry:
        await registry.check_login(host)
    if store:
        AuthConfigFile(auth_file).store(host, credentials)
    return {"Status": "Login Succeeded", "IdentityToken": ""}
