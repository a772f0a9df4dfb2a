"""Image archives and tarballs through palletd: ``docker load`` (a docker-save
or OCI layout archive read by :mod:`pallet.distribution.archive`, its blobs pushed into
containerd with Content.Write, named, unpacked), ``docker save`` (one
docker-save tarball for several images, its blobs read back through
Content.Read), and ``docker import`` (a rootfs tarball as a one-layer image).

The archive writers and readers of the store are blocking; they run in a
worker thread, bridged to the event loop by :class:`ThreadSink` (their output,
to the HTTP answer) and :class:`RemoteBlob` (blobs read from containerd).
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import threading

from pallet.core import errors
from pallet.core.models import Descriptor
from pallet.distribution.mediatypes import MT_DOCKER_MANIFEST
from pallet.distribution.reference import Reference, familiar_name
from pallet.engine.images import emit

DANGLING = "moby-dangling"


# --- load ---------------------------------------------------------------------------------

def _is_layer(media_type: str) -> bool:
    return "layer" in media_type or "rootfs" in media_type


def _loading(p, sid: str, total: int):
    """docker's ``Loading layer`` byte counts of one layer."""
    async def on_bytes(n: int) -> None:
        await p.update("Loading layer", sid, n, total)
    return on_bytes


def not_an_archive(path: str) -> str:
    """dockerd's message for a load of something that is no tar stream (its
    untar runs in a child process, hence the exit status; Go's archive/tar
    says why: a header that does not parse, or fewer bytes than one)."""
    import os

    why = "unexpected EOF" if 0 < os.path.getsize(path) < 512 else "archive/tar: invalid tar header"
    return f"Error processing tar file(exit status 1): {why}"


async def load_archive(images, path: str, progress) -> None:
    """Load the archive at ``path`` through ``images`` (an ImageService);
    ``progress`` gets ``Loading layer`` byte counts and the ``Loaded image``
    lines."""
    from pallet.distribution.archive import read_archive
    from pallet.distribution.progress import Progress, short_id

    loop = asyncio.get_running_loop()
    try:
        archive = await loop.run_in_executor(None, read_archive, path)
    except errors.InvalidArgument as e:
        if not e.message.startswith("archive: not a tar file"):
            raise
        raise errors.InvalidArgument(not_an_archive(path)) from None
    ctrd = images.ctrd
    p = Progress(progress)
    try:
        async with ctrd.leased() as client:
            for blob in archive.blobs():
                labels = await loop.run_in_executor(None, blob.gc_labels)
                on_bytes = None
                if _is_layer(blob.media_type):
                    sid = short_id(blob.digest)
                    on_bytes = _loading(p, sid, blob.size)
                    try:
                        await client.content_info(blob.digest)
                        await p.update("Loading layer", sid, blob.size, blob.size, force=True)
                        continue
                    except errors.NotFound:
                        pass
                await client.content_write(f"load-{blob.digest}", blob.chunks(on_bytes),
                                           expected=blob.digest, size=blob.size, labels=labels)
            loaded = archive.images()
            if not loaded:
                raise errors.InvalidArgument("archive holds no image")
            for img in loaded:
                target = img.target.to_oci()
                name = img.name or f"{DANGLING}@{img.target.digest}"
                if img.name:
                    await images.repoint(name, target)
                else:
                    await client.image_put(name, target)
                rec = await images._record(await client.image_get(name), [name])
                await client.unpack(name, images.snapshotter)
                if img.name:
                    await p.send({"stream": f"Loaded image: {familiar_name(img.name)}\n"})
                else:
                    await p.send({"stream": f"Loaded image ID: {rec.id}\n"})
                images.kernel.notify("image_loaded", name=name, digest=img.target.digest)
                emit(images.kernel, "load", rec.id, rec.id)
    finally:
        await loop.run_in_executor(None, archive.close)


# --- thread bridges -----------------------------------------------------------------------

class ThreadSink(io.RawIOBase):
    """A writable file for a worker thread whose bytes go to an asyncio queue
    (bounded: the writer waits for the reader).  :meth:`chunks` yields them on
    the loop; once the reader is gone (:meth:`abandon`), writes fail."""

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int = 8):
        super().__init__()
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue(depth)
        self._abandoned = threading.Event()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self._abandoned.is_set():
            raise BrokenPipeError("the client went away")
        data = bytes(b)
        if data:
            fut = asyncio.run_coroutine_threadsafe(self.queue.put(data), self.loop)
            while True:
                try:
                    fut.result(0.5)
                    break
                except TimeoutError:
                    if self._abandoned.is_set():
                        fut.cancel()
                        raise BrokenPipeError("the client went away") from None
        return len(data)

    def finish(self) -> None:
        """Called by the writer thread when it is done (or failed)."""
        asyncio.run_coroutine_threadsafe(self.queue.put(None), self.loop)

    def abandon(self) -> None:
        self._abandoned.set()
        while not self.queue.empty():
            self.queue.get_nowait()

    async def chunks(self):
        while True:
            data = await self.queue.get()
            if data is None:
                return
            yield data


async def stream_from_thread(request, write, *, content_type: str = "application/x-tar"):
    """Answer with what ``write(fileobj)`` (blocking, run in a thread) writes.

    An error before the first byte is a plain error answer; after it, the
    connection is cut (as dockerd does: a tarball cannot carry an error)."""
    from aiohttp import web

    loop = asyncio.get_running_loop()
    sink = ThreadSink(loop)
    result: dict = {}

    def run():
        try:
            with io.BufferedWriter(sink, 1 << 20) as out:
                write(out)
        except BaseException as e:  # noqa: BLE001 — handed to the loop below
            result["error"] = e
        finally:
            sink.finish()
    thread = loop.run_in_executor(None, run)
    resp = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    try:
        async for data in sink.chunks():
            if not resp.prepared:
                await resp.prepare(request)
            await resp.write(data)
        await thread
        err = result.get("error")
        if err is not None:
            if not resp.prepared:
                raise err
            request.transport.close() if request.transport else None
            return resp
        if not resp.prepared:
            await resp.prepare(request)
        await resp.write_eof()
        return resp
    finally:
        sink.abandon()
        if not thread.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(thread)


class RemoteBlob(io.RawIOBase):
    """A blob of containerd's content store, read from a worker thread in
    4 MiB requests (Content.Read) run on the event loop."""

    CHUNK = 4 << 20

    def __init__(self, loop, ctrd, digest: str, size: int):
        super().__init__()
        self.loop, self.ctrd, self.digest, self.size = loop, ctrd, digest, size
        self.offset = 0
        self._buf = b""

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        want = min(self.CHUNK, self.size - self.offset - len(self._buf))
        if want <= 0:
            return
        fut = asyncio.run_coroutine_threadsafe(
            self.ctrd.content_read(self.digest, self.offset + len(self._buf), want), self.loop)
        data = fut.result(300)
        if not data:
            raise errors.PalletError(f"read {self.digest}: short read at "
                                     f"{self.offset + len(self._buf)} of {self.size}")
        self._buf += data

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self.offset
        if not self._buf and self.offset < self.size:
            self._fill()
        data, self._buf = self._buf[:n], self._buf[n:]
        self.offset += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


# --- save ---------------------------------------------------------------------------------

async def save_plan(images, names: list[str]) -> list:
    """The images ``docker save NAME...`` writes (``ExportImage``s): a name
    without a tag means every tag of that repository; an ID, the image without
    names; one entry per image whatever the number of names."""
    from pallet.distribution.archive import ExportImage

    if not names:
        raise errors.InvalidArgument("no image names given")
    by_id: dict[str, tuple] = {}
    order = []

    def add(rec, name):
        if rec.id not in by_id:
            by_id[rec.id] = (rec, [])
            order.append(rec.id)
        if name and name not in by_id[rec.id][1]:
            by_id[rec.id][1].append(name)
    all_records = None
    for text in names:
        ref = None
        try:
            ref = Reference.parse(text, default_tag=False)
        except errors.InvalidArgument:
            pass
        if ref is not None and ref.tag is None and ref.digest is None:
            if all_records is None:
                all_records = await images.all()
            found = False
            for rec in all_records:
                for n in rec.ref_names:
                    if "@" not in n and Reference.parse(n).repository == ref.repository:
                        add(rec, n)
                        found = True
            if found:
                continue
        rec = await images.get(text)
        name = None
        if ref is not None:
            full = str(Reference.parse(text))
            if full in rec.names:
                name = full
        add(rec, name)
    out = []
    for image_id in order:
        rec, refs = by_id[image_id]
        manifest = Descriptor.from_oci({"mediaType": rec.manifest_desc.get("mediaType") or
                                        rec.manifest.get("mediaType") or MT_DOCKER_MANIFEST,
                                        "digest": rec.manifest_desc["digest"],
                                        "size": rec.manifest_desc["size"]})
        out.append(ExportImage(tuple(refs), manifest,
                               Descriptor.from_oci(rec.manifest["config"]),
                               tuple(Descriptor.from_oci(x)
                                     for x in rec.manifest.get("layers") or [])))
    return out


async def save(request, images, names: list[str]):
    """``GET /images/get?names=...``: the images as one docker-save tarball."""
    from pallet.distribution.archive import write_docker_archive

    plan = await save_plan(images, names)
    loop = asyncio.get_running_loop()
    sizes = {d.digest: d.size for img in plan for d in (img.manifest, img.config, *img.layers)}

    def opener(digest: str):
        return RemoteBlob(loop, images.ctrd, digest, sizes[digest])

    def write(out):
        write_docker_archive(out, plan, opener)
    resp = await stream_from_thread(request, write)
    for img in plan:
        emit(images.kernel, "save", img.config.digest, img.config.digest)
    return resp


# --- import ----------------------------------------------------------------------

async def import_image(images, body, *, repo: str, tag: str, changes: list[str],
                       message: str, platform: str | None, progress) -> str:
    """``POST /images/create?fromSrc=-``: the request body (a rootfs tarball,
    maybe compressed) becomes a one-layer image named ``repo:tag`` (dangling
    without a repo); returns its ID."""
    from pallet.engine.pull import naming_target
    from pallet.imagestore.imageops import import_rootfs, parse_changes
    from pallet.distribution.pull import parse_platform

    parse_changes(changes)  # a bad change is refused before reading the body
    name = None
    if repo:
        try:
            ref = Reference.parse(repo, default_tag=False)
        except errors.InvalidArgument as e:
            raise errors.InvalidArgument(e.message) from None
        if ref.digest:
            raise errors.InvalidArgument("cannot import digest reference")
        if tag:
            ref = Reference.parse(f"{ref.repository}:{tag}")
        elif not ref.tag:
            ref = Reference.parse(ref.repository)
        name = str(ref)
    target = naming_target(images)
    plat = parse_platform(platform) if platform else None
    async with target.lease():
        result = await import_rootfs(target, body, changes=changes, message=message,
                                     source="-", name=name, platform=plat,
                                     snapshotter=images.snapshotter)
        if name is None:
            await images.ctrd.image_put(f"{DANGLING}@{result.manifest.digest}",
                                        result.manifest.to_oci())
            await target.label_unpacked(result.config.digest, result.chain_id)
    images.kernel.notify("image_loaded", name=name or f"{DANGLING}@{result.manifest.digest}",
                         digest=result.manifest.digest)
    emit(images.kernel, "import", result.image_id, result.image_id)
    progress({"status": result.image_id})
    return result.image_id
