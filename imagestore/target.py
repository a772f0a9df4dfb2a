"""Pull and push next to the store: the :class:`~pallet.distribution.targets.ContentTarget`
over an :class:`~.store.ImageStore` in the process that owns it (blocking work
runs in threads)."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from typing import AsyncIterator, Mapping

from pallet.core.errors import (AlreadyExists, InvalidArgument, NotFound,
                                PalletError, Unavailable)
from pallet.core.models import Descriptor
from pallet.distribution.mediatypes import LABEL_GC_EXPIRE
from pallet.distribution.targets import (
    LABEL_LEASE_OWNER,
    LOCKED_WAIT,
    BlobSource,
    OnBytes,
    OpenStream,
    _too_big,
    expire_label,
    mismatch_error,
    owner_label)


# --- the local store ------------------------------------------------------------------------

class LocalTarget:
    """A :class:`ContentTarget` over an :class:`~.store.ImageStore` in this process.

    ``lease_ttl``: expiry of the lease a pull holds (it is also dropped by GC as
    soon as this process is gone).
    """

    def __init__(self, store, namespace: str, *, snapshotter: str | None = None,
                 lease_ttl: float = 24 * 3600):
        self.store = store
        self.namespace = namespace
        self.snapshotter_name = snapshotter or store.default_snapshotter
        self.lease_ttl = lease_ttl
        self._lease: str | None = None

    async def _run(self, fn, *args, **kw):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args, **kw))

    def _hold(self, kind: str, ident: str) -> None:
        """Put a resource under the current lease (blocking; call in a thread)."""
        if self._lease is None:
            return
        from pallet.imagestore.metadata import LeaseResource
        self.store.metadata.add_lease_resource(self.namespace, self._lease,
                                               LeaseResource(ident, kind))

    # content
    async def exists(self, digest: str) -> bool:
        return await self._run(self.store.content.exists, digest)

    async def read(self, digest: str) -> bytes:
        return await self._run(self.store.content.read, digest)

    async def read_iter(self, digest: str) -> AsyncIterator[bytes]:
        f = await self._run(self.store.content.open, digest)
        try:
            while True:
                data = await self._run(f.read, 1 << 20)
                if not data:
                    return
                yield data
        finally:
            f.close()

    async def labels(self, digest: str) -> dict[str, str]:
        try:
            return dict((await self._run(self.store.content.info, digest)).labels)
        except NotFound:
            return {}

    async def set_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        await self._run(self.store.content.update, digest, dict(labels),
                        [f"labels.{k}" for k in labels])

    async def write(self, ref: str, desc: Descriptor, open_stream: OpenStream,
                    labels: Mapping[str, str] | None = None,
                    on_bytes: OnBytes | None = None) -> bool:
        """Download a blob into the store, resuming a partial ingest of the same
        ref; checked by size and digest before it is committed.  Returns False
        when the blob was there already (or written meanwhile by another writer)."""
        content = self.store.content
        await self._run(self._hold, "content", desc.digest)
        await self._run(self._hold, "ingests", ref)
        deadline = time.monotonic() + LOCKED_WAIT
        while True:
            try:
                w = await self._run(content.writer, ref, desc.digest, desc.size)
                break
            except AlreadyExists:
                if labels:
                    await self.set_labels(desc.digest, labels)
                return False
            except Unavailable:
                # another process (or thread) is writing this blob: wait for it
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        bad = None
        try:
            if w.offset > desc.size:
                await self._run(w.truncate, 0)
            stream = await open_stream(w.offset) if w.offset < desc.size or desc.size == 0 \
                else None
            if stream is not None:
                try:
                    if stream.offset != w.offset:
                        await self._run(w.truncate, 0)
                    if on_bytes is not None:
                        await on_bytes(w.offset)
                    await self._copy(w, desc, stream, on_bytes)
                except InvalidArgument as e:
                    bad = e
                    raise
                finally:
                    stream.close()
            try:
                await self._run(w.commit, desc.size, desc.digest, dict(labels or {}))
            except AlreadyExists:
                return False
            except InvalidArgument as e:
                bad = mismatch_error(desc, e.message.split(": ", 1)[-1])
                raise bad from None
            return True
        finally:
            w.close()
            if bad is not None:
                # a bad blob is dropped at once: nothing of it stays
                with contextlib.suppress(PalletError):
                    await self._run(content.abort, ref)

    async def _copy(self, w, desc: Descriptor, stream: BlobSource,
                    on_bytes: OnBytes | None) -> None:
        """Copy the stream into the writer, one write in flight while the next
        chunk arrives (network and disk overlap)."""
        loop = asyncio.get_running_loop()
        pending: asyncio.Future | None = None
        written = w.offset
        try:
            async for chunk in stream.chunks():
                written += len(chunk)
                if written > desc.size:
                    raise _too_big(desc, written)
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(None, w.write, chunk)
                if on_bytes is not None:
                    await on_bytes(written)
            if pending is not None:
                await pending
                pending = None
        finally:
            if pending is not None:
                with contextlib.suppress(Exception):
                    await pending

    async def ingest(self, ref: str, chunks: AsyncIterator[bytes], media_type: str,
                     labels: Mapping[str, str] | None = None) -> Descriptor:
        """Store a blob whose digest is not known beforehand (an import)."""
        content = self.store.content
        await self._run(self._hold, "ingests", ref)
        w = await self._run(content.writer, ref)
        try:
            if w.offset:
                await self._run(w.truncate, 0)
            async for data in chunks:
                await self._run(w.write, data)
            size, digest = w.offset, w.digest()
            await self._run(self._hold, "content", digest)
            try:
                await self._run(w.commit, size, None, dict(labels or {}))
            except AlreadyExists:
                pass
        finally:
            w.close()
        return Descriptor(media_type, digest, size)

    # images
    async def get_image(self, name: str) -> Descriptor | None:
        try:
            return (await self._run(self.store.metadata.get_image, self.namespace, name)).target
        except NotFound:
            return None

    async def put_image(self, name: str, target: Descriptor,
                        labels: Mapping[str, str] | None = None) -> None:
        from pallet.imagestore.metadata import ImageRecord
        await self._run(self.store.metadata.put_image, self.namespace,
                        ImageRecord(name, target, dict(labels or {})))

    # snapshots
    def _view(self, snapshotter: str | None):
        return self.store.snapshotter(snapshotter or self.snapshotter_name).namespaced(
            self.namespace)

    async def snapshot_exists(self, chain_id: str, snapshotter: str | None = None) -> bool:
        try:
            info = await self._run(self._view(snapshotter).stat, chain_id)
        except NotFound:
            return False
        return info.kind == "committed"

    async def unpack_layer(self, layer: Descriptor, diff_id: str, chain_id: str,
                           parent: str | None, snapshotter: str | None = None) -> bool:
        from pallet.imagestore.images import unpack_layer
        name = snapshotter or self.snapshotter_name
        view = self._view(name)

        def run() -> bool:
            self._hold(f"snapshots/{name}", chain_id)
            return unpack_layer(view, self.store.applier, layer, diff_id, chain_id,
                                parent or None,
                                on_key=lambda key: self._hold(f"snapshots/{name}", key))
        return await self._run(run)

    async def label_unpacked(self, config_digest: str, top: str,
                             snapshotter: str | None = None) -> None:
        from pallet.imagestore.images import label_unpacked
        await self._run(label_unpacked, self.store.content, config_digest,
                        snapshotter or self.snapshotter_name, top)

    @contextlib.asynccontextmanager
    async def lease(self):
        """Hold a lease over what the block writes (nested calls share it)."""
        if self._lease is not None:
            yield self._lease
            return
        lease = f"pallet-pull-{uuid.uuid4().hex[:16]}"
        await self._run(self.store.metadata.create_lease, self.namespace, lease,
                        {LABEL_GC_EXPIRE: expire_label(self.lease_ttl),
                         LABEL_LEASE_OWNER: owner_label()})
        self._lease = lease
        try:
            yield lease
        finally:
            self._lease = None
            with contextlib.suppress(NotFound):
                await self._run(self.store.metadata.delete_lease, self.namespace, lease)
