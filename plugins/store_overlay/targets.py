"""Where pull writes and push reads: one small async interface, two backends.

containerd 1.6 pulls on the client side: ``ctr`` and dockerd fetch blobs
into the Content service and then unpack them through the Snapshots and Diff
services.  pallet's pull and push (:mod:`.pull`, :mod:`.push`) are written
against :class:`ContentTarget`, so that the same code runs

* next to the store, in the process that owns it (:class:`LocalTarget`
  over an :class:`~.store.ImageStore` and a containerd namespace; blocking
  work runs in threads), and
* anywhere else through containerd's gRPC API (:class:`ContainerdTarget`
  over :class:`pallet.core.containerd.Containerd`: palletd, pallet-ctr).
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import uuid
from typing import AsyncIterator, Awaitable, Callable, Mapping, Protocol

from pallet.core.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,
                                PalletError, Unavailable)
from pallet.core.models import Descriptor

#: containerd's lease expiry label (RFC 3339 UTC); GC drops expired leases
LABEL_GC_EXPIRE = "containerd.io/gc.expire"
#: the process that holds a lease of the local store, ``<pid>:<start time>``:
#: GC drops the lease once that process is gone (a daemon killed mid-pull)
LABEL_LEASE_OWNER = "pallet.io/lease.owner"
#: containerd's label naming where a blob came from (used to mount on push)
LABEL_DISTRIBUTION_SOURCE = "containerd.io/distribution.source."
LABEL_GC_REF_CONTENT = "containerd.io/gc.ref.content."

#: how long a writer waits for a blob that another process is writing
LOCKED_WAIT = 600.0


class BlobSource(Protocol):
    """An open download (see :class:`.registry.BlobStream`)."""

    offset: int

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


OpenStream = Callable[[int], Awaitable[BlobSource]]
OnBytes = Callable[[int], Awaitable[None]]


class ContentTarget(Protocol):
    """What pull and push need of a content store and a snapshotter."""

    async def exists(self, digest: str) -> bool: ...

    async def read(self, digest: str) -> bytes: ...

    def read_iter(self, digest: str) -> AsyncIterator[bytes]: ...

    async def labels(self, digest: str) -> dict[str, str]: ...

    async def set_labels(self, digest: str, labels: Mapping[str, str]) -> None: ...

    async def write(self, ref: str, desc: Descriptor, open_stream: OpenStream,
                    labels: Mapping[str, str] | None = None,
                    on_bytes: OnBytes | None = None) -> bool: ...

    async def get_image(self, name: str) -> Descriptor | None: ...

    async def put_image(self, name: str, target: Descriptor,
                        labels: Mapping[str, str] | None = None) -> None: ...

    async def unpack_layer(self, layer: Descriptor, diff_id: str, chain_id: str,
                           parent: str | None, snapshotter: str | None) -> bool: ...

    async def snapshot_exists(self, chain_id: str, snapshotter: str | None) -> bool: ...

    def lease(self) -> contextlib.AbstractAsyncContextManager: ...


def owner_label() -> str:
    """This process as a lease owner: pid and start time (clock ticks since
    boot, field 22 of /proc/PID/stat), so that a reused pid does not count."""
    return f"{os.getpid()}:{process_start(os.getpid())}"


def process_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return ""
    # the command name may hold spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2:].split()
    return fields[19].decode() if len(fields) > 19 else ""


def owner_alive(value: str) -> bool:
    """Whether the process named by a :data:`LABEL_LEASE_OWNER` value still runs."""
    pid, _, start = value.partition(":")
    try:
        pid_n = int(pid)
    except ValueError:
        return False
    current = process_start(pid_n)
    return bool(current) and current == start


def _expire_label(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


def _too_big(desc: Descriptor, got: int) -> InvalidArgument:
    return InvalidArgument(f"blob {desc.digest}: registry sent more than the {desc.size} "
                           f"bytes the manifest announces ({got})")


def mismatch_error(desc: Descriptor, detail: str) -> InvalidArgument:
    return InvalidArgument(f"filesystem layer verification failed for digest {desc.digest}: "
                           f"{detail}")


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
        from .metadata import LeaseResource
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
        from .metadata import ImageRecord
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
        from .images import unpack_layer
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
        from .images import label_unpacked
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
                        {LABEL_GC_EXPIRE: _expire_label(self.lease_ttl),
                         LABEL_LEASE_OWNER: owner_label()})
        self._lease = lease
        try:
            yield lease
        finally:
            self._lease = None
            with contextlib.suppress(NotFound):
                await self._run(self.store.metadata.delete_lease, self.namespace, lease)


# --- containerd's gRPC API ---------------------------------------------------------------------

class ContainerdTarget:
    """A :class:`ContentTarget` over containerd's API (pallet-containerd or the
    real containerd): ``client`` is a :class:`pallet.core.containerd.Containerd`
    bound to the namespace to work in (``moby`` for palletd)."""

    def __init__(self, client, *, snapshotter: str | None = None, lease_ttl: float = 3600):
        self.client = client
        self.snapshotter_name = snapshotter or getattr(client, "snapshotter", None) or "overlayfs"
        self.lease_ttl = lease_ttl
        self._leased = None

    @property
    def _c(self):
        return self._leased or self.client

    async def exists(self, digest: str) -> bool:
        try:
            await self._c.content_info(digest)
            return True
        except NotFound:
            return False

    async def read(self, digest: str) -> bytes:
        return await self._c.content_read(digest)

    async def read_iter(self, digest: str) -> AsyncIterator[bytes]:
        async for data in self._c.content_read_iter(digest):
            yield data

    async def labels(self, digest: str) -> dict[str, str]:
        try:
            return dict((await self._c.content_info(digest)).labels)
        except NotFound:
            return {}

    async def set_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        await self._c.content_update(digest, dict(labels))

    async def write(self, ref: str, desc: Descriptor, open_stream: OpenStream,
                    labels: Mapping[str, str] | None = None,
                    on_bytes: OnBytes | None = None) -> bool:
        if await self.exists(desc.digest):
            if labels:
                with contextlib.suppress(PalletError):
                    await self.set_labels(desc.digest, labels)
            return False
        stream = await open_stream(0)

        async def data():
            written = 0
            async for chunk in stream.chunks():
                written += len(chunk)
                if written > desc.size:
                    raise _too_big(desc, written)
                yield chunk
                if on_bytes is not None:
                    await on_bytes(written)
        try:
            await self._c.content_write(ref, data(), expected=desc.digest, size=desc.size,
                                        labels=dict(labels or {}))
        except (FailedPrecondition, InvalidArgument) as e:
            if "digest" in e.message or "size" in e.message:
                with contextlib.suppress(PalletError):
                    await self._c.content_abort(ref)
                raise mismatch_error(desc, e.message) from None
            raise
        finally:
            stream.close()
        return True

    async def ingest(self, ref: str, chunks: AsyncIterator[bytes], media_type: str,
                     labels: Mapping[str, str] | None = None) -> Descriptor:
        import hashlib
        h = hashlib.sha256()
        size = 0

        async def data():
            nonlocal size
            async for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                yield chunk
        digest = await self._c.content_write(ref, data(), labels=dict(labels or {}))
        want = "sha256:" + h.hexdigest()
        if digest and digest != want:
            raise InvalidArgument(f"ingest {ref}: stored as {digest}, computed {want}")
        return Descriptor(media_type, want, size)

    async def get_image(self, name: str) -> Descriptor | None:
        from pallet.core.containerd import descriptor_to_dict
        try:
            img = await self._c.image_get(name)
        except NotFound:
            return None
        return Descriptor.from_oci(descriptor_to_dict(img.target))

    async def put_image(self, name: str, target: Descriptor,
                        labels: Mapping[str, str] | None = None) -> None:
        await self._c.image_put(name, target.to_oci(), dict(labels or {}) or None)

    async def snapshot_exists(self, chain_id: str, snapshotter: str | None = None) -> bool:
        try:
            info = await self._c.snapshot_stat(chain_id,
                                               snapshotter=snapshotter or self.snapshotter_name)
        except NotFound:
            return False
        return info.kind == 3 or str(getattr(info, "kind", "")).upper().endswith("COMMITTED")

    async def unpack_layer(self, layer: Descriptor, diff_id: str, chain_id: str,
                           parent: str | None, snapshotter: str | None = None) -> bool:
        sn = snapshotter or self.snapshotter_name
        c = self._c
        try:
            await c.snapshot_stat(chain_id, snapshotter=sn)
            return False
        except NotFound:
            pass
        key = f"extract-{time.time_ns()}-{uuid.uuid4().hex[:8]} {chain_id}"
        mounts = await c.snapshot_prepare(key, parent or "", snapshotter=sn,
                                          labels={"containerd.io/snapshot.ref": chain_id})
        committed = False
        try:
            applied = await c.diff_apply(layer.to_oci(), mounts)
            if applied.digest != diff_id:
                raise InvalidArgument(f"layer {layer.digest}: uncompressed digest "
                                      f"{applied.digest} does not match diff ID {diff_id}")
            try:
                await c.snapshot_commit(chain_id, key, snapshotter=sn,
                                        labels={"containerd.io/snapshot.ref": chain_id})
            except AlreadyExists:
                committed = True
                await c.snapshot_remove(key, snapshotter=sn)
                return False
            committed = True
            return True
        finally:
            if not committed:
                with contextlib.suppress(PalletError):
                    await c.snapshot_remove(key, snapshotter=sn)

    async def label_unpacked(self, config_digest: str, top: str,
                             snapshotter: str | None = None) -> None:
        key = f"containerd.io/gc.ref.snapshot.{snapshotter or self.snapshotter_name}"
        with contextlib.suppress(NotFound):
            await self._c.content_update(config_digest, {key: top})

    @contextlib.asynccontextmanager
    async def lease(self):
        if self._leased is not None:
            yield None
            return
        from pallet.core.errors import NotImplementedYet
        try:
            lease = await self.client.lease_create(expire=self.lease_ttl)
        except NotImplementedYet:
            yield None
            return
        self._leased = self.client.with_lease(lease)
        try:
            yield lease
        finally:
            self._leased = None
            with contextlib.suppress(PalletError):
                await self.client.lease_delete(lease)
