"""``docker load``: an archive read by the image store's reader, its blobs
pushed into containerd (Content.Write), its images named (Images.Create or
Update) and unpacked into snapshots."""
from __future__ import annotations

import asyncio
import json

from pallet.core import errors
from pallet.core.models import familiar_name

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
LABEL_REF = "containerd.io/gc.ref.content."
DANGLING = "moby-dangling"


def _gc_labels(blob) -> dict[str, str]:
    """The labels that make containerd's GC keep a manifest's or index's children
    (as containerd's importer sets them)."""
    if blob.media_type not in INDEX_TYPES + MANIFEST_TYPES or blob.size > 4 << 20:
        return {}
    with blob.open() as f:
        try:
            doc = json.loads(f.read())
        except ValueError:
            return {}
    labels = {}
    if "config" in doc and isinstance(doc["config"], dict):
        labels[LABEL_REF + "config"] = doc["config"].get("digest", "")
    for i, layer in enumerate(doc.get("layers") or []):
        labels[f"{LABEL_REF}l.{i}"] = layer.get("digest", "")
    for i, m in enumerate(doc.get("manifests") or []):
        labels[f"{LABEL_REF}m.{i}"] = m.get("digest", "")
    return {k: v for k, v in labels.items() if v}


def _reader(blob):
    """The blob's bytes in 1 MiB chunks, read in a worker thread."""
    async def gen():
        loop = asyncio.get_running_loop()
        f = await loop.run_in_executor(None, blob.open)
        try:
            while True:
                chunk = await loop.run_in_executor(None, f.read, 1 << 20)
                if not chunk:
                    return
                yield chunk
        finally:
            f.close()
    return gen()


async def load_archive(images, path: str, progress) -> None:
    """Load the archive at ``path`` through ``images`` (an ImageService)."""
    loop = asyncio.get_running_loop()
    store = images.kernel.provide("image_store")
    archive = await loop.run_in_executor(None, store.read_archive, path)
    ctrd = images.ctrd
    lease = None
    try:
        try:
            lease = await ctrd.lease_create(expire=3600)
            client = ctrd.with_lease(lease)
        except errors.NotImplementedYet:
            client = ctrd
        for blob in archive.blobs():
            labels = await loop.run_in_executor(None, _gc_labels, blob)
            await client.content_write(f"load-{blob.digest}", _reader(blob),
                                       expected=blob.digest, size=blob.size, labels=labels)
        loaded = archive.images()
        if not loaded:
            raise errors.InvalidArgument("archive holds no image")
        for img in loaded:
            target = img.target.to_oci()
            name = img.name or f"{DANGLING}@{img.target.digest}"
            await client.image_put(name, target)
            rec = await images._record(await client.image_get(name), [name])
            await client.unpack(name, images.snapshotter)
            if img.name:
                await progress({"stream": f"Loaded image: {familiar_name(img.name)}\n"})
            else:
                await progress({"stream": f"Loaded image ID: {rec.id}\n"})
            images.kernel.notify("image_loaded", name=name, digest=img.target.digest)
    finally:
        await loop.run_in_executor(None, archive.close)
        if lease:
            try:
                await ctrd.lease_delete(lease)
            except errors.PalletError:
                pass
