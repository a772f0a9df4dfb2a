"""``docker pull`` / ``ctr images pull``: an image from a registry into a
:class:`~.targets.ContentTarget`, unpacked, with docker's progress messages.

Order of work, as containerd's client does it, so that a pull interrupted
at any point (even by SIGKILL) leaves no half image, only leased or
unreferenced content that GC removes:

1. resolve the reference to a manifest (or an index, then this platform's
   manifest) and fetch the config;
2. fetch the layers in parallel (``max_concurrent_downloads``), each into an
   ingest named ``layer-<digest>`` (resumed with ``Range`` after an error or
   a crash), verified by size and digest before it is committed; while later
   layers download, each finished one is unpacked in order into the
   snapshot named by its chain ID;
3. write config, manifest and index with containerd's GC reference labels;
4. only then create (or re-point) the image name, and label the config with
   its top snapshot.

Everything happens under a lease, so that a GC running meanwhile keeps the
new content.  Two pulls of the same blobs in one process share the downloads
(and unpacks); across processes the ingest lock makes the second one wait for
the first and find the blob committed.
"""
from __future__ import annotations

import asyncio
import json
from typing import Mapping

import attrs

from pallet.core.errors import InvalidArgument, PalletError, Unavailable
from pallet.core.models import Descriptor
from pallet.distribution.reference import Reference

from pallet.distribution.mediatypes import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MT_DOCKER_LAYER,
    MT_DOCKER_LAYER_FOREIGN,
    MT_DOCKER_LAYER_GZIP,
    MT_OCI_LAYER,
    MT_OCI_LAYER_GZIP,
    MT_OCI_LAYER_ZSTD)
from pallet.distribution.manifests import gc_labels
from pallet.distribution.platforms import (  # noqa: F401 (parse_platform, platform_text: callers')
    Platform,
    chain_ids,
    parse_platform,
    platform_text,
    select_manifest)
from pallet.distribution.progress import Progress, ProgressCallback, short_id
from pallet.distribution.registry import Registry, RegistryOptions, TransientError, _backoff
from pallet.distribution.targets import LABEL_DISTRIBUTION_SOURCE

LAYER_TYPES = (MT_DOCKER_LAYER, MT_DOCKER_LAYER_GZIP, MT_OCI_LAYER, MT_OCI_LAYER_GZIP,
               MT_OCI_LAYER_ZSTD, "application/vnd.oci.image.layer.nondistributable.v1.tar",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")


@attrs.frozen
class PullResult:
    """What a pull stored: the image name and target, the platform's manifest,
    config and layers, and the top snapshot (``""`` when not unpacked)."""

    name: str
    target: Descriptor
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    chain_id: str
    #: False when the image was already there with the same target
    updated: bool


def _descriptor(d, what: str) -> Descriptor:
    if not isinstance(d, dict):
        raise InvalidArgument(f"{what}: invalid descriptor")
    try:
        desc = Descriptor.from_oci(d)
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument(f"{what}: invalid descriptor {d!r}") from None
    from pallet.distribution.digests import parse_digest
    parse_digest(desc.digest)
    if desc.size < 0:
        raise InvalidArgument(f"{what}: negative size in descriptor {desc.digest}")
    return desc


# --- sharing work between concurrent pulls of one process --------------------------------

_INFLIGHT: dict[tuple, asyncio.Future] = {}


async def _shared(key: tuple, make):
    """Run ``make()`` once for ``key`` among concurrent callers in this event
    loop; the others wait for its result (or its error).  Returns
    ``(result, ran_here)``."""
    loop = asyncio.get_running_loop()
    full = (id(loop), *key)
    fut = _INFLIGHT.get(full)
    if fut is not None:
        return await asyncio.shield(fut), False
    fut = loop.create_future()
    _INFLIGHT[full] = fut
    try:
        result = await make()
    except BaseException as e:
        if not fut.done():
            fut.set_exception(e)
            fut.exception()  # retrieved: nobody else may be waiting
        raise
    else:
        fut.set_result(result)
        return result, True
    finally:
        _INFLIGHT.pop(full, None)


def _target_identity(target) -> str:
    ident = getattr(target, "identity", None)
    if ident:
        return ident
    store = getattr(target, "store", None)
    if store is not None:
        return "local:" + store.content_root
    client = getattr(target, "client", None)
    if client is not None:
        return f"ctrd:{getattr(client, 'address', id(client))}"
    return f"obj:{id(target)}"


# --- the pull ---------------------------------------------------------------------------------

class _Puller:
    def __init__(self, ref: Reference, target, registry: Registry, progress: Progress,
                 platform: Platform, snapshotter: str | None, unpack: bool):
        self.ref = ref
        self.target = target
        self.registry = registry
        self.progress = progress
        self.platform = platform
        self.snapshotter = snapshotter
        self.unpack = unpack
        self.host = ref.domain
        self.path = ref.path
        self.ident = _target_identity(target)
        self.sem = asyncio.Semaphore(registry.options.max_concurrent_downloads)
        self.source_labels = {LABEL_DISTRIBUTION_SOURCE + _source_host(self.host): self.path}

    @property
    def display(self) -> str:
        return self.ref.familiar

    async def small_blob(self, desc: Descriptor, kind: str, labels: Mapping[str, str]) -> bytes:
        """Fetch (or read back) a config; verified and stored like any blob."""
        if not await self.target.exists(desc.digest):
            await self.fetch(desc, kind, labels, None)
        elif labels:
            await self._relabel(desc.digest, labels)
        return await self.target.read(desc.digest)

    async def _relabel(self, digest: str, labels: Mapping[str, str]) -> None:
        try:
            await self.target.set_labels(digest, labels)
        except PalletError:
            pass

    async def store_bytes(self, desc: Descriptor, data: bytes, kind: str,
                          labels: Mapping[str, str]) -> None:
        """Write a manifest or index we already hold (fetched and verified)."""
        class _Stream:
            offset = 0

            async def chunks(self_inner):
                yield data

            def close(self_inner):
                pass

        async def open_stream(offset: int):
            s = _Stream()
            return s
        if await self.target.exists(desc.digest):
            await self._relabel(desc.digest, labels)
            return
        await self.target.write(f"{kind}-{desc.digest}", desc, open_stream, labels)

    async def fetch(self, desc: Descriptor, kind: str, labels: Mapping[str, str],
                    on_bytes) -> bool:
        """Download a blob into the target with retries; shared with concurrent
        pulls of the same blob.  Returns whether it was downloaded here."""
        async def make():
            return await self._fetch_retrying(desc, kind, labels, on_bytes)
        _, here = await _shared(("blob", self.ident, desc.digest), make)
        if not here and labels:
            await self._relabel(desc.digest, labels)
        return here

    async def _fetch_retrying(self, desc, kind, labels, on_bytes) -> bool:
        retries = self.registry.options.retries
        for attempt in range(retries + 1):
            try:
                async def open_stream(offset: int):
                    return await self.registry.open_blob(self.host, self.path, desc, offset)
                return await self.target.write(f"{kind}-{desc.digest}", desc, open_stream,
                                               labels, on_bytes)
            except (TransientError, Unavailable):
                if attempt >= retries:
                    raise
                if await self.target.exists(desc.digest):
                    return False
                await _backoff(attempt)
                continue
        return False

    async def resolve(self) -> tuple[Descriptor, bytes, Descriptor, dict]:
        """(target descriptor, target bytes, manifest descriptor, manifest doc)."""
        reference = self.ref.digest or self.ref.tag or "latest"
        top = await self.registry.get_manifest(self.host, self.path, reference,
                                               display=self.display)
        desc, data = top.descriptor, top.data
        doc = top.json()
        manifest_desc, manifest_doc = desc, doc
        depth = 0
        while manifest_desc.media_type in INDEX_TYPES:
            depth += 1
            if depth > 4:
                raise InvalidArgument(f"{self.display}: image indexes nested too deep")
            chosen = _descriptor(select_manifest(manifest_doc, self.platform, self.display),
                                 f"{self.display} index")
            m = await self.registry.get_manifest(self.host, self.path, chosen.digest,
                                                 display=f"{self.ref.repository}@{chosen.digest}")
            manifest_doc = m.json()
            media = chosen.media_type or m.descriptor.media_type
            manifest_desc = Descriptor(media, m.descriptor.digest, m.descriptor.size)
            if manifest_desc.media_type not in INDEX_TYPES + MANIFEST_TYPES:
                manifest_desc = attrs.evolve(manifest_desc, media_type=m.descriptor.media_type)
            self._chain.append((manifest_desc, m.data))
        if manifest_desc.media_type not in MANIFEST_TYPES:
            raise InvalidArgument(f"{self.display}: unsupported manifest media type "
                                  f"{manifest_desc.media_type!r}")
        return desc, data, manifest_desc, manifest_doc

    async def run(self, name: str) -> PullResult:
        p = self.progress
        self._chain: list[tuple[Descriptor, bytes]] = []
        tag_id = self.ref.digest or self.ref.tag or "latest"
        await p.status(f"Pulling from {_familiar_path(self.ref)}", tag_id)
        target_desc, target_data, manifest_desc, manifest = await self.resolve()
        config_desc = _descriptor(manifest.get("config"), f"{self.display} config")
        layers = tuple(_descriptor(layer, f"{self.display} layer")
                       for layer in manifest.get("layers") or [])
        for layer in layers:
            if layer.media_type not in LAYER_TYPES and layer.media_type != \
                    MT_DOCKER_LAYER_FOREIGN:
                raise InvalidArgument(f"{self.display}: layer {layer.digest} has unsupported "
                                      f"media type {layer.media_type!r}")
        before = await self.target.get_image(name)
        async with self.target.lease():
            config_data = await self.small_blob(config_desc, "config", self.source_labels)
            try:
                config = json.loads(config_data)
            except ValueError as e:
                raise InvalidArgument(f"{self.display}: config is not valid JSON ({e})") \
                    from None
            diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
            if len(diff_ids) != len(layers):
                raise InvalidArgument(f"{self.display}: {len(layers)} layers but "
                                      f"{len(diff_ids)} diff IDs in the config")
            chains = chain_ids(diff_ids)
            top = await self.layers(layers, diff_ids, chains)
            for desc, data in [*reversed(self._chain), (target_desc, target_data)]:
                kind = "manifest" if desc.media_type in MANIFEST_TYPES else "index"
                await self.store_bytes(desc, data, kind,
                                       {**gc_labels(json.loads(data)), **self.source_labels})
            await self.target.put_image(name, target_desc)
            if top:
                await self.target.label_unpacked(config_desc.digest, top, self.snapshotter)
        await p.status(f"Digest: {target_desc.digest}")
        updated = before is None or before.digest != target_desc.digest or self.downloaded
        await p.status(f"Status: {'Downloaded newer image' if updated else 'Image is up to date'}"
                       f" for {self.display}")
        return PullResult(name, target_desc, manifest_desc, config_desc, layers, top, updated)

    async def layers(self, layers, diff_ids, chains) -> str:
        """Download every missing layer (in parallel) and unpack them in order."""
        p = self.progress
        self.downloaded = False
        present = []
        for layer in layers:
            present.append(await self.target.exists(layer.digest))
        for layer, here in zip(layers, present):
            await p.status("Already exists" if here else "Pulling fs layer", short_id(layer.digest))
        downloads: list[asyncio.Task | None] = []
        for layer, here in zip(layers, present):
            downloads.append(None if here else asyncio.ensure_future(self.download(layer)))
        top = ""
        try:
            for i, (layer, diff_id, chain) in enumerate(zip(layers, diff_ids, chains)):
                if downloads[i] is not None:
                    await downloads[i]
                if self.unpack:
                    await self.extract(layer, diff_id, chain, chains[i - 1] if i else None,
                                       announce=downloads[i] is not None)
                    top = chain
        except BaseException:
            for t in downloads:
                if t is not None and not t.done():
                    t.cancel()
            await asyncio.gather(*[t for t in downloads if t is not None],
                                 return_exceptions=True)
            raise
        return top

    async def download(self, layer: Descriptor) -> None:
        p = self.progress
        sid = short_id(layer.digest)
        if self.sem.locked():
            await p.status("Waiting", sid)
        async with self.sem:
            async def on_bytes(n: int) -> None:
                await p.update("Downloading", sid, n, layer.size)
            here = await self.fetch(layer, "layer", self.source_labels, on_bytes)
            if here:
                self.downloaded = True
                await p.status("Verifying Checksum", sid)
            await p.status("Download complete", sid)

    async def extract(self, layer, diff_id, chain, parent, announce: bool) -> None:
        p = self.progress
        sid = short_id(layer.digest)

        async def make():
            return await self.target.unpack_layer(layer, diff_id, chain, parent,
                                                  self.snapshotter)
        if announce:
            await p.update("Extracting", sid, 0, layer.size, force=True)
        if await self.target.snapshot_exists(chain, self.snapshotter):
            if announce:
                await p.status("Pull complete", sid)
            return
        await _shared(("unpack", self.ident, self.snapshotter or "", chain), make)
        if announce:
            await p.update("Extracting", sid, layer.size, layer.size, force=True)
            await p.status("Pull complete", sid)


def _familiar_path(ref: Reference) -> str:
    return ref.path


def _source_host(host: str) -> str:
    return host


def image_name(ref: Reference) -> str:
    """The name a pulled image is stored under: ``docker.io/library/busybox:latest``,
    or ``repo@sha256:...`` for a pull by digest."""
    if ref.digest:
        return f"{ref.repository}@{ref.digest}"
    return f"{ref.repository}:{ref.tag or 'latest'}"


async def pull(ref: str | Reference, target, *, registry: Registry | None = None,
               options: RegistryOptions | None = None, credentials=None,
               auth_file: str | None = None, platform: str | Platform | None = None,
               progress: ProgressCallback | None = None, unpack: bool = True,
               snapshotter: str | None = None, name: str | None = None) -> PullResult:
    """Pull ``ref`` into ``target`` (a :class:`~.targets.ContentTarget`).

    ``registry`` (or one made from ``options``, ``credentials`` and
    ``auth_file``) does the HTTP; ``progress`` receives docker's JSON
    progress messages (dicts; sync or async callable).  The image is named
    ``name`` (default :func:`image_name`), and its layers unpacked into
    ``snapshotter`` unless ``unpack`` is False.  Errors are core error
    classes with docker's wording; nothing is named on failure.
    """
    if not isinstance(ref, Reference):
        ref = Reference.parse(ref)
    plat = platform if isinstance(platform, Platform) else parse_platform(platform)
    async with Registry.given_or_own(registry, options, credentials, auth_file) as registry:
        puller = _Puller(ref, target, registry, Progress(progress), plat, snapshotter, unpack)
        return await puller.run(name or image_name(ref))


def pull_sync(ref: str | Reference, target, **kw) -> PullResult:
    """:func:`pull` from a plain thread (a private event loop)."""
    from pallet.distribution.registry import run_sync
    return run_sync(lambda: pull(ref, target, **kw))
