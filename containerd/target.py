"""Pull and push through containerd's gRPC API (pallet-containerd or the real
containerd): the :class:`~pallet.distribution.targets.ContentTarget` of palletd
and pallet-ctr, client-side as containerd 1.6 pulls."""
from __future__ import annotations

import contextlib
import time
import uuid
from typing import AsyncIterator, Mapping

from pallet.core.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,
                                PalletError)
from pallet.core.models import Descriptor
from pallet.distribution.targets import (
    OnBytes, OpenStream, _too_big, mismatch_error)


# --- containerd's gRPC API ---------------------------------------------------------------------

class ContainerdTarget:
    """A :class:`ContentTarget` over containerd's API (pallet-containerd or the
    real containerd): ``client`` is a :class:`pallet.containerd.client.Containerd`
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
        try:
            digest = await self._c.content_write(ref, data(), labels=dict(labels or {}))
        except AlreadyExists:
            # the same bytes are stored already (a tarball imported twice):
            # containerd ends the write at commit with ALREADY_EXISTS
            digest = ""
        want = "sha256:" + h.hexdigest()
        if digest and digest != want:
            raise InvalidArgument(f"ingest {ref}: stored as {digest}, computed {want}")
        return Descriptor(media_type, want, size)

    async def get_image(self, name: str) -> Descriptor | None:
        from pallet.containerd.client import descriptor_to_dict
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
