"""A typed client of containerd's v1 gRPC API (asyncio, plus a thin sync wrapper).

It speaks to the real containerd 1.6 and to pallet-containerd alike.  Every
call carries the ``containerd-namespace`` metadata header of the client (and
``containerd-lease`` when a lease is set); every gRPC failure is raised as a
:mod:`pallet.core.errors` class carrying the server's message.

Usage (asyncio)::

    async with Containerd("/run/pallet/containerd/containerd.sock", "moby") as c:
        print(await c.version())
        top = await c.unpack("docker.io/library/busybox:latest")

Usage (threads or scripts)::

    with SyncContainerd(address, "default") as c:
        for ns in c.namespaces():
            print(ns.name)

Results are the protobuf messages of :mod:`pallet.proto` (``Image``,
``Container``, ``Process``, ``Mount``...), whose field names are containerd's.
Arguments accept either those messages or plain dicts where noted.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
import time
from typing import AsyncIterator, Iterable, Mapping, Sequence

import grpc
import grpc.aio
from google.protobuf import any_pb2, empty_pb2, field_mask_pb2

from pallet.core import errors
# media types, GC labels, platforms and chain IDs are distribution's (re-exported
# here for the client's callers)
from pallet.distribution.mediatypes import (  # noqa: F401
    INDEX_TYPES,
    LABEL_GC_EXPIRE,
    LABEL_GC_REF_SNAPSHOT,
    MANIFEST_TYPES)
from pallet.distribution.digests import sha256_digest
from pallet.distribution.platforms import chain_ids, host_platform, select_manifest  # noqa: F401
from pallet.distribution.targets import expire_label
from pallet.proto.containerd.events import container_pb2 as ev_container_pb2
from pallet.proto.containerd.events import content_pb2 as ev_content_pb2
from pallet.proto.containerd.events import image_pb2 as ev_image_pb2
from pallet.proto.containerd.events import namespace_pb2 as ev_namespace_pb2
from pallet.proto.containerd.events import snapshot_pb2 as ev_snapshot_pb2
from pallet.proto.containerd.events import task_pb2 as ev_task_pb2
from pallet.proto.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from pallet.proto.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from pallet.proto.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from pallet.proto.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from pallet.proto.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from pallet.proto.containerd.services.introspection.v1 import (
    introspection_pb2,
    introspection_pb2_grpc)
from pallet.proto.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from pallet.proto.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from pallet.proto.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from pallet.proto.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from pallet.proto.containerd.services.version.v1 import version_pb2_grpc
from pallet.proto.containerd.types import descriptor_pb2, mount_pb2

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
DEFAULT_SNAPSHOTTER = "overlayfs"
DEFAULT_RUNTIME = "io.containerd.runc.v2"
#: containerd's own default (16 MiB) for both directions
MAX_MESSAGE = 16 << 20
#: chunk size of content writes (containerd's client uses 1 MiB buffers)
WRITE_CHUNK = 1 << 20


_rpc_log = logging.getLogger("pallet.containerd.rpc")

# containerd events travel as Any whose type_url is the message's full name
EVENT_TYPES = {
    m.DESCRIPTOR.full_name: m
    for mod in (ev_container_pb2, ev_content_pb2, ev_image_pb2, ev_namespace_pb2,
                ev_snapshot_pb2, ev_task_pb2)
    for m in (getattr(mod, n) for n in mod.DESCRIPTOR.message_types_by_name)
}

# re-exported so that callers need not know the generated module paths
Mount = mount_pb2.Mount
Descriptor = descriptor_pb2.Descriptor
Container = containers_pb2.Container
Image = images_pb2.Image


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

def error_from_rpc(exc: grpc.RpcError, what: str = "") -> errors.PalletError:
    """Map a gRPC failure to the pallet error class of its status code."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    name = code.name if code is not None else "UNKNOWN"
    message = details or name.lower().replace("_", " ")
    if name == "UNAVAILABLE" and what:
        message = f"{what}: {message}"
    return errors.from_grpc_code(name, message)


# --------------------------------------------------------------------------
# conversions
# --------------------------------------------------------------------------

def to_mount(m: Mount | Mapping) -> Mount:
    """A Mount message from a Mount or a dict (type, source, target, options)."""
    if isinstance(m, mount_pb2.Mount):
        return m
    return mount_pb2.Mount(type=m.get("type", ""), source=m.get("source", ""),
                           target=m.get("target", ""), options=list(m.get("options", ())))


def mount_to_dict(m: Mount) -> dict:
    """A dict (type, source, target, options) from a Mount message."""
    return {"type": m.type, "source": m.source, "target": m.target, "options": list(m.options)}


def to_descriptor(d: Descriptor | Mapping) -> Descriptor:
    """A Descriptor message from a Descriptor or an OCI descriptor dict.

    Dicts may use the OCI JSON names (``mediaType``) or the proto ones
    (``media_type``).
    """
    if isinstance(d, descriptor_pb2.Descriptor):
        return d
    return descriptor_pb2.Descriptor(
        media_type=d.get("mediaType", d.get("media_type", "")),
        digest=d["digest"], size=int(d.get("size", 0)),
        annotations=dict(d.get("annotations") or {}))


def descriptor_to_dict(d: Descriptor) -> dict:
    """An OCI descriptor dict (mediaType, digest, size[, annotations])."""
    out = {"mediaType": d.media_type, "digest": d.digest, "size": d.size}
    if d.annotations:
        out["annotations"] = dict(d.annotations)
    return out


def spec_any(spec: Mapping | bytes | str, type_url: str = SPEC_TYPE_URL) -> any_pb2.Any:
    """An Any holding an OCI runtime spec (or process) as JSON, as containerd stores it."""
    if isinstance(spec, Mapping):
        value = json.dumps(spec, separators=(",", ":")).encode()
    elif isinstance(spec, str):
        value = spec.encode()
    else:
        value = bytes(spec)
    return any_pb2.Any(type_url=type_url, value=value)


def spec_of(container: Container) -> dict:
    """The OCI runtime spec of a container, decoded from its Any."""
    if not container.HasField("spec") or not container.spec.value:
        return {}
    return json.loads(container.spec.value)


def decode_event(envelope: events_pb2.Envelope):
    """The typed event message inside an Envelope (TaskExit, ImageCreate, ...).

    An event of unknown type is returned as the raw Any.
    """
    cls = EVENT_TYPES.get(envelope.event.type_url.rsplit("/", 1)[-1])
    if cls is None:
        return envelope.event
    msg = cls()
    msg.ParseFromString(envelope.event.value)
    return msg


def event_any(event) -> any_pb2.Any:
    """Pack an event message as containerd does (type_url = full message name)."""
    return any_pb2.Any(type_url=event.DESCRIPTOR.full_name, value=event.SerializeToString())


class CallStats:
    """How many calls of each gRPC method a client made and how long they took.

    Every call of :class:`Containerd` (and of its views) is recorded here,
    keyed by the full method name (``/containerd.services.tasks.v1.Tasks/Create``);
    a stream counts once, for its whole length.  Each call is also logged at
    debug level on the ``pallet.containerd.rpc`` logger.
    """

    def __init__(self):
        self._calls: dict[str, list] = {}   # method -> [count, seconds, failures]
        #: callables ``(method, seconds, failed)`` told of every call (palletd's metrics)
        self.observers: list = []

    def record(self, method: str, seconds: float, failed: bool = False) -> None:
        entry = self._calls.get(method)
        if entry is None:
            entry = self._calls[method] = [0, 0.0, 0]
        entry[0] += 1
        entry[1] += seconds
        entry[2] += failed
        _rpc_log.debug("rpc %s %.3f ms%s", method, seconds * 1000, " (failed)" if failed else "")
        for observe in self.observers:
            observe(method, seconds, failed)

    def snapshot(self) -> dict[str, dict]:
        """``{method: {"count", "seconds", "failures"}}`` so far."""
        return {m: {"count": c, "seconds": t, "failures": f}
                for m, (c, t, f) in sorted(self._calls.items())}

    def total(self) -> int:
        """How many calls were made, every method together."""
        return sum(entry[0] for entry in self._calls.values())


class _Method:
    """A gRPC multi-callable that knows its full method name (for :class:`CallStats`)."""

    __slots__ = ("name", "_callable")

    def __init__(self, name, callable_):
        self.name = name.decode() if isinstance(name, bytes) else name
        self._callable = callable_

    def __call__(self, *args, **kwargs):
        return self._callable(*args, **kwargs)


class _NamingChannel:
    """What a generated stub is built on: the channel's multi-callables, each
    wrapped in a :class:`_Method` that carries the method's name."""

    def __init__(self, channel):
        self._channel = channel

    def unary_unary(self, method, *args, **kwargs):
        return _Method(method, self._channel.unary_unary(method, *args, **kwargs))

    def unary_stream(self, method, *args, **kwargs):
        return _Method(method, self._channel.unary_stream(method, *args, **kwargs))

    def stream_unary(self, method, *args, **kwargs):
        return _Method(method, self._channel.stream_unary(method, *args, **kwargs))

    def stream_stream(self, method, *args, **kwargs):
        return _Method(method, self._channel.stream_stream(method, *args, **kwargs))


def _address_target(address: str) -> str:
    if address.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        return address
    if "://" in address:
        raise errors.InvalidArgument(f"unsupported containerd address {address}")
    return "unix://" + os.path.abspath(address)


# --------------------------------------------------------------------------
# the asyncio client
# --------------------------------------------------------------------------

class Containerd:
    """A connection to containerd's gRPC API, in one containerd namespace.

    ``Containerd(address, namespace)``; ``address`` is a socket path or a
    ``unix://`` target.  The channel opens on first use; ``close()`` (or
    ``async with``) closes it.  :meth:`with_namespace` and :meth:`with_lease`
    return views that share the channel.
    """

    def __init__(self, address: str, namespace: str = "default", *,
                 timeout: float | None = None, lease: str | None = None,
                 snapshotter: str = DEFAULT_SNAPSHOTTER, _shared: "Containerd | None" = None):
        if not namespace:
            raise errors.InvalidArgument("containerd namespace is required")
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self.lease = lease
        self.snapshotter = snapshotter
        self._shared = _shared
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[str, object] = {}
        self.stats = _shared.stats if _shared is not None else CallStats()

    # ---- plumbing -----------------------------------------------------------
    def with_namespace(self, namespace: str) -> "Containerd":
        """A view of this client in another namespace, sharing the channel."""
        return Containerd(self.address, namespace, timeout=self.timeout, lease=self.lease,
                          snapshotter=self.snapshotter, _shared=self._root())

    def with_lease(self, lease: str | None) -> "Containerd":
        """A view whose calls carry ``containerd-lease: lease`` (GC protection)."""
        return Containerd(self.address, self.namespace, timeout=self.timeout, lease=lease,
                          snapshotter=self.snapshotter, _shared=self._root())

    def _root(self) -> "Containerd":
        return self._shared._root() if self._shared is not None else self

    def channel(self) -> grpc.aio.Channel:
        root = self._root()
        if root._channel is None:
            root._channel = grpc.aio.insecure_channel(
                _address_target(self.address),
                options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                         ("grpc.max_send_message_length", MAX_MESSAGE),
                         # containerd's unix socket has no authority; keep the
                         # default ("localhost") out of the :authority header
                         ("grpc.default_authority", "localhost")])
        return root._channel

    def _stub(self, cls):
        root = self._root()
        stub = root._stubs.get(cls.__name__)
        if stub is None:
            stub = root._stubs[cls.__name__] = cls(_NamingChannel(self.channel()))
        return stub

    def _md(self, namespace: str | None = None) -> tuple:
        md = [(NAMESPACE_HEADER, namespace or self.namespace)]
        if self.lease:
            md.append((LEASE_HEADER, self.lease))
        return tuple(md)

    async def _call(self, method, request, *, timeout: float | None = ..., namespace=None):
        t = self.timeout if timeout is ... else timeout
        start = time.perf_counter()
        try:
            response = await method(request, metadata=self._md(namespace), timeout=t)
        except grpc.RpcError as exc:
            self.stats.record(method.name, time.perf_counter() - start, True)
            raise error_from_rpc(exc, f"containerd at {self.address}") from None
        self.stats.record(method.name, time.perf_counter() - start)
        return response

    async def _stream(self, method, request, *, timeout: float | None = None):
        start = time.perf_counter()
        failed = False
        call = method(request, metadata=self._md(), timeout=timeout)
        try:
            async for item in call:
                yield item
        except grpc.RpcError as exc:
            failed = True
            raise error_from_rpc(exc, f"containerd at {self.address}") from None
        finally:
            call.cancel()
            self.stats.record(method.name, time.perf_counter() - start, failed)

    async def close(self) -> None:
        """Close the channel (views share it: close the first client only)."""
        if self._shared is None and self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stubs.clear()

    async def __aenter__(self) -> "Containerd":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---- version, introspection ---------------------------------------------
    async def version(self) -> dict:
        """``{"version": ..., "revision": ...}`` of the server."""
        r = await self._call(self._stub(version_pb2_grpc.VersionStub).Version, empty_pb2.Empty())
        return {"version": r.version, "revision": r.revision}

    async def plugins(self, filters: Iterable[str] = ()) -> list:
        """The server's plugins (Introspection.Plugins), as Plugin messages."""
        r = await self._call(self._stub(introspection_pb2_grpc.IntrospectionStub).Plugins,
                             introspection_pb2.PluginsRequest(filters=list(filters)))
        return list(r.plugins)

    async def server_uuid(self) -> str:
        """The server's UUID (Introspection.Server)."""
        r = await self._call(self._stub(introspection_pb2_grpc.IntrospectionStub).Server,
                             empty_pb2.Empty())
        return r.uuid

    # ---- namespaces ---------------------------------------------------------
    async def namespaces(self) -> list:
        """Every namespace (Namespace messages: name, labels)."""
        r = await self._call(self._stub(namespace_pb2_grpc.NamespacesStub).List,
                             namespace_pb2.ListNamespacesRequest())
        return list(r.namespaces)

    async def namespace_get(self, name: str):
        r = await self._call(self._stub(namespace_pb2_grpc.NamespacesStub).Get,
                             namespace_pb2.GetNamespaceRequest(name=name))
        return r.namespace

    async def namespace_create(self, name: str, labels: Mapping[str, str] | None = None):
        r = await self._call(self._stub(namespace_pb2_grpc.NamespacesStub).Create,
                             namespace_pb2.CreateNamespaceRequest(
                                 namespace=namespace_pb2.Namespace(name=name, labels=labels or {})))
        return r.namespace

    async def namespace_delete(self, name: str) -> None:
        await self._call(self._stub(namespace_pb2_grpc.NamespacesStub).Delete,
                         namespace_pb2.DeleteNamespaceRequest(name=name))

    # ---- leases ---------------------------------------------------------------
    async def lease_create(self, lease_id: str | None = None, *, expire: float | None = 3600,
                           labels: Mapping[str, str] | None = None) -> str:
        """Create a lease (protects what is written under it from GC); returns its id."""
        labels = dict(labels or {})
        if expire:
            labels[LABEL_GC_EXPIRE] = expire_label(expire)
        lease_id = lease_id or f"pallet-{secrets.token_hex(8)}"
        r = await self._call(self._stub(leases_pb2_grpc.LeasesStub).Create,
                             leases_pb2.CreateRequest(id=lease_id, labels=labels))
        return r.lease.id

    @contextlib.asynccontextmanager
    async def leased(self, expire: float | None = 3600):
        """``async with client.leased() as view``: a view of this client whose
        writes a lease of their own holds from GC until the block ends (the
        lease then goes); this client itself where the server has no leases."""
        try:
            lease = await self.lease_create(expire=expire)
        except errors.NotImplementedYet:
            yield self
            return
        try:
            yield self.with_lease(lease)
        finally:
            with contextlib.suppress(errors.PalletError):
                await self.lease_delete(lease)

    async def lease_delete(self, lease_id: str, *, sync: bool = False) -> None:
        await self._call(self._stub(leases_pb2_grpc.LeasesStub).Delete,
                         leases_pb2.DeleteRequest(id=lease_id, sync=sync))

    async def lease_add_resource(self, lease_id: str, resource_id: str, rtype: str) -> None:
        """Hold a blob (``content``) or snapshot (``snapshots/<name>``) with a lease."""
        await self._call(self._stub(leases_pb2_grpc.LeasesStub).AddResource,
                         leases_pb2.AddResourceRequest(
                             id=lease_id, resource=leases_pb2.Resource(id=resource_id,
                                                                       type=rtype)))

    async def lease_delete_resource(self, lease_id: str, resource_id: str, rtype: str) -> None:
        await self._call(self._stub(leases_pb2_grpc.LeasesStub).DeleteResource,
                         leases_pb2.DeleteResourceRequest(
                             id=lease_id, resource=leases_pb2.Resource(id=resource_id,
                                                                       type=rtype)))

    async def leases(self, filters: Iterable[str] = ()) -> list:
        r = await self._call(self._stub(leases_pb2_grpc.LeasesStub).List,
                             leases_pb2.ListRequest(filters=list(filters)))
        return list(r.leases)

    # ---- content ------------------------------------------------------------
    async def content_info(self, digest: str):
        """Info (digest, size, created_at, updated_at, labels) of a committed blob."""
        r = await self._call(self._stub(content_pb2_grpc.ContentStub).Info,
                             content_pb2.InfoRequest(digest=digest))
        return r.info

    async def content_update(self, digest: str, labels: Mapping[str, str],
                             fields: Iterable[str] | None = None):
        """Set labels of a blob; ``fields`` defaults to ``labels.<key>`` for each key."""
        paths = list(fields) if fields is not None else [f"labels.{k}" for k in labels]
        r = await self._call(self._stub(content_pb2_grpc.ContentStub).Update,
                             content_pb2.UpdateRequest(
                                 info=content_pb2.Info(digest=digest, labels=dict(labels)),
                                 update_mask=field_mask_pb2.FieldMask(paths=paths)))
        return r.info

    async def content_list(self, filters: Iterable[str] = ()) -> list:
        """Info of every blob."""
        out = []
        async for r in self._stream(self._stub(content_pb2_grpc.ContentStub).List,
                                    content_pb2.ListContentRequest(filters=list(filters))):
            out.extend(r.info)
        return out

    async def content_delete(self, digest: str) -> None:
        await self._call(self._stub(content_pb2_grpc.ContentStub).Delete,
                         content_pb2.DeleteContentRequest(digest=digest))

    async def content_read_iter(self, digest: str, offset: int = 0,
                                size: int = 0) -> AsyncIterator[bytes]:
        """The bytes of a blob, chunk by chunk."""
        async for r in self._stream(self._stub(content_pb2_grpc.ContentStub).Read,
                                    content_pb2.ReadContentRequest(digest=digest, offset=offset,
                                                                   size=size)):
            yield r.data

    async def content_read(self, digest: str, offset: int = 0, size: int = 0) -> bytes:
        """The whole blob (or ``size`` bytes from ``offset``)."""
        parts = [chunk async for chunk in self.content_read_iter(digest, offset, size)]
        return b"".join(parts)

    async def content_read_json(self, digest: str) -> dict:
        data = await self.content_read(digest)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise errors.InvalidArgument(f"blob {digest} is not json: {exc}") from None

    async def content_status(self, ref: str):
        r = await self._call(self._stub(content_pb2_grpc.ContentStub).Status,
                             content_pb2.StatusRequest(ref=ref))
        return r.status

    async def content_abort(self, ref: str) -> None:
        await self._call(self._stub(content_pb2_grpc.ContentStub).Abort,
                         content_pb2.AbortRequest(ref=ref))

    async def content_write(self, ref: str, data, *, expected: str = "", size: int = 0,
                            labels: Mapping[str, str] | None = None) -> str:
        """Write a blob through Content.Write and commit it; returns its digest.

        ``data`` is bytes or an (async) iterable of bytes.  The stream holds
        the ref: STAT (with the expected digest and size, resuming where an
        earlier write of the same ref stopped), WRITE each chunk, COMMIT with
        the labels.  A blob already present (ALREADY_EXISTS on the expected
        digest) counts as written, as in containerd's ``content.WriteBlob``.
        """
        stub = self._stub(content_pb2_grpc.ContentStub)
        started, failed = time.perf_counter(), False
        call = stub.Write(metadata=self._md())
        STAT, WRITE, COMMIT = content_pb2.STAT, content_pb2.WRITE, content_pb2.COMMIT

        async def roundtrip(req):
            await call.write(req)
            resp = await call.read()
            if resp is grpc.aio.EOF:
                raise errors.Unavailable(f"content write {ref}: stream closed by server")
            return resp

        try:
            # STAT opens (or resumes) the ingest; writing from offset 0 restarts
            # whatever an interrupted earlier write of this ref left
            await roundtrip(content_pb2.WriteContentRequest(
                action=STAT, ref=ref, expected=expected, total=size))
            offset = 0
            async for chunk in _chunks(data):
                if not chunk:
                    continue
                resp = await roundtrip(content_pb2.WriteContentRequest(
                    action=WRITE, ref=ref, offset=offset, data=chunk))
                offset += len(chunk)
                if resp.offset != offset:
                    raise errors.PalletError(
                        f"content write {ref}: server is at offset {resp.offset}, expected {offset}")
            resp = await roundtrip(content_pb2.WriteContentRequest(
                action=COMMIT, ref=ref, offset=offset, total=size or offset, expected=expected,
                labels=dict(labels or {})))
            await call.done_writing()
            return resp.digest or expected
        except grpc.RpcError as exc:
            err = error_from_rpc(exc, f"containerd at {self.address}")
            failed = not isinstance(err, errors.AlreadyExists)
            if isinstance(err, errors.AlreadyExists) and expected:
                if labels:
                    try:
                        await self.content_update(expected, labels)
                    except errors.PalletError:
                        pass
                return expected
            raise err from None
        finally:
            call.cancel()
            self.stats.record(stub.Write.name, time.perf_counter() - started, failed)

    async def content_write_blob(self, data: bytes, *, media_type: str = "",
                                 labels: Mapping[str, str] | None = None,
                                 ref: str | None = None) -> Descriptor:
        """Write in-memory bytes, computing the digest; returns a Descriptor."""
        digest = sha256_digest(data)
        await self.content_write(ref or f"pallet-blob-{digest}", data, expected=digest,
                                 size=len(data), labels=labels)
        return descriptor_pb2.Descriptor(media_type=media_type, digest=digest, size=len(data))

    # ---- images ---------------------------------------------------------------
    async def image_get(self, name: str) -> Image:
        r = await self._call(self._stub(images_pb2_grpc.ImagesStub).Get,
                             images_pb2.GetImageRequest(name=name))
        return r.image

    async def images(self, filters: Iterable[str] = ()) -> list[Image]:
        r = await self._call(self._stub(images_pb2_grpc.ImagesStub).List,
                             images_pb2.ListImagesRequest(filters=list(filters)))
        return list(r.images)

    async def image_create(self, name: str, target: Descriptor | Mapping,
                           labels: Mapping[str, str] | None = None) -> Image:
        r = await self._call(self._stub(images_pb2_grpc.ImagesStub).Create,
                             images_pb2.CreateImageRequest(image=images_pb2.Image(
                                 name=name, target=to_descriptor(target), labels=labels or {})))
        return r.image

    async def image_update(self, name: str, target: Descriptor | Mapping | None = None,
                           labels: Mapping[str, str] | None = None,
                           fields: Iterable[str] | None = None) -> Image:
        """Update an image; ``fields`` is the update mask (default: what is given)."""
        image = images_pb2.Image(name=name, labels=labels or {})
        paths = []
        if target is not None:
            image.target.CopyFrom(to_descriptor(target))
            paths.append("target")
        if labels is not None:
            paths.append("labels")
        if fields is not None:
            paths = list(fields)
        r = await self._call(self._stub(images_pb2_grpc.ImagesStub).Update,
                             images_pb2.UpdateImageRequest(
                                 image=image, update_mask=field_mask_pb2.FieldMask(paths=paths)))
        return r.image

    async def image_put(self, name: str, target: Descriptor | Mapping,
                        labels: Mapping[str, str] | None = None) -> Image:
        """Create the image, or point an existing one at ``target`` (as ctr import does)."""
        try:
            return await self.image_create(name, target, labels)
        except errors.AlreadyExists:
            return await self.image_update(name, target, labels if labels else None)

    async def image_delete(self, name: str, *, sync: bool = False) -> None:
        await self._call(self._stub(images_pb2_grpc.ImagesStub).Delete,
                         images_pb2.DeleteImageRequest(name=name, sync=sync))

    # ---- snapshots ------------------------------------------------------------
    def _sn(self, snapshotter: str | None) -> str:
        return snapshotter or self.snapshotter

    async def snapshot_prepare(self, key: str, parent: str = "", *,
                               labels: Mapping[str, str] | None = None,
                               snapshotter: str | None = None) -> list[Mount]:
        r = await self._call(self._stub(snapshots_pb2_grpc.SnapshotsStub).Prepare,
                             snapshots_pb2.PrepareSnapshotRequest(
                                 snapshotter=self._sn(snapshotter), key=key, parent=parent,
                                 labels=labels or {}))
        return list(r.mounts)

    async def snapshot_view(self, key: str, parent: str = "", *,
                            labels: Mapping[str, str] | None = None,
                            snapshotter: str | None = None) -> list[Mount]:
        r = await self._call(self._stub(snapshots_pb2_grpc.SnapshotsStub).View,
                             snapshots_pb2.ViewSnapshotRequest(
                                 snapshotter=self._sn(snapshotter), key=key, parent=parent,
                                 labels=labels or {}))
        return list(r.mounts)

    async def snapshot_mounts(self, key: str, *, snapshotter: str | None = None) -> list[Mount]:
        r = await self._call(self._stub(snapshots_pb2_grpc.SnapshotsStub).Mounts,
                             snapshots_pb2.MountsRequest(snapshotter=self._sn(snapshotter),
                                                         key=key))
        return list(r.mounts)

    async def snapshot_commit(self, name: str, key: str, *,
                              labels: Mapping[str, str] | None = None,
                              snapshotter: str | None = None) -> None:
        await self._call(self._stub(snapshots_pb2_grpc.SnapshotsStub).Commit,
                         snapshots_pb2.CommitSnapshotRequest(
                             snapshotter=self._sn(snapshotter), name=name, key=key,
                             labels=labels or {}))

    async def snapshot_remove(self, key: str, *, snapshotter: str | None = None) -> None:
        await self._call(self._stub(snapshots_pb2_grpc.SnapshotsStub).Remove,
                         snapshots_pb2.RemoveSnapshotRequest(snapshotter=self._sn(snapshotter),
                                                             key=key))

    async def snapshot_stat(self, key: str, *, snapshotter: str | None = None):
        """Info (name, parent, kind, created_at, updated_at, labels) of a snapshot."""
        r = await self._call(self._stub(snapshots_pb2_grpc.SnapshotsStub).Stat,
                             snapshots_pb2.StatSnapshotRequest(snapshotter=self._sn(snapshotter),
                                                               key=key))
        return r.info

    async def snapshots(self, filters: Iterable[str] = (), *,
                        snapshotter: str | None = None) -> list:
        out = []
        async for r in self._stream(self._stub(snapshots_pb2_grpc.SnapshotsStub).List,
                                    snapshots_pb2.ListSnapshotsRequest(
                                        snapshotter=self._sn(snapshotter), filters=list(filters))):
            out.extend(r.info)
        return out

    async def snapshot_usage(self, key: str, *, snapshotter: str | None = None) -> dict:
        r = await self._call(self._stub(snapshots_pb2_grpc.SnapshotsStub).Usage,
                             snapshots_pb2.UsageRequest(snapshotter=self._sn(snapshotter), key=key))
        return {"size": r.size, "inodes": r.inodes}

    # ---- diff -----------------------------------------------------------------
    async def diff_apply(self, layer: Descriptor | Mapping, mounts: Sequence[Mount | Mapping],
                         payloads: Mapping[str, any_pb2.Any] | None = None) -> Descriptor:
        """Unpack a layer blob onto mounts; returns the uncompressed layer's descriptor."""
        r = await self._call(self._stub(diff_pb2_grpc.DiffStub).Apply,
                             diff_pb2.ApplyRequest(diff=to_descriptor(layer),
                                                   mounts=[to_mount(m) for m in mounts],
                                                   payloads=payloads or {}))
        return r.applied

    async def diff_compare(self, left: Sequence[Mount | Mapping],
                           right: Sequence[Mount | Mapping], *, media_type: str = "",
                           ref: str = "", labels: Mapping[str, str] | None = None,
                           timeout: float | None = None) -> Descriptor:
        """The changes from ``left`` to ``right`` as a layer blob in the content
        store (containerd's default media type is gzip); its descriptor."""
        r = await self._call(self._stub(diff_pb2_grpc.DiffStub).Diff,
                             diff_pb2.DiffRequest(left=[to_mount(m) for m in left],
                                                  right=[to_mount(m) for m in right],
                                                  media_type=media_type, ref=ref,
                                                  labels=dict(labels or {})),
                             timeout=timeout)
        return r.diff

    # ---- containers -------------------------------------------------------------
    async def container_create(self, container_id: str, *, spec: Mapping | bytes | None = None,
                               image: str = "", snapshot_key: str = "",
                               snapshotter: str | None = None,
                               runtime: str = DEFAULT_RUNTIME,
                               runtime_options: any_pb2.Any | None = None,
                               labels: Mapping[str, str] | None = None,
                               extensions: Mapping[str, any_pb2.Any] | None = None) -> Container:
        c = containers_pb2.Container(
            id=container_id, image=image, labels=labels or {},
            snapshotter=self._sn(snapshotter) if snapshot_key else (snapshotter or ""),
            snapshot_key=snapshot_key, extensions=extensions or {},
            runtime=containers_pb2.Container.Runtime(name=runtime))
        if runtime_options is not None:
            c.runtime.options.CopyFrom(runtime_options)
        if spec is not None:
            c.spec.CopyFrom(spec_any(spec))
        r = await self._call(self._stub(containers_pb2_grpc.ContainersStub).Create,
                             containers_pb2.CreateContainerRequest(container=c))
        return r.container

    async def container_get(self, container_id: str) -> Container:
        r = await self._call(self._stub(containers_pb2_grpc.ContainersStub).Get,
                             containers_pb2.GetContainerRequest(id=container_id))
        return r.container

    async def containers(self, filters: Iterable[str] = ()) -> list[Container]:
        r = await self._call(self._stub(containers_pb2_grpc.ContainersStub).List,
                             containers_pb2.ListContainersRequest(filters=list(filters)))
        return list(r.containers)

    async def container_update(self, container_id: str, *, spec: Mapping | bytes | None = None,
                               labels: Mapping[str, str] | None = None, image: str | None = None,
                               snapshot_key: str | None = None,
                               extensions: Mapping[str, any_pb2.Any] | None = None,
                               fields: Iterable[str] | None = None) -> Container:
        """Update the given fields (the update mask defaults to those given)."""
        c = containers_pb2.Container(id=container_id)
        paths = []
        if spec is not None:
            c.spec.CopyFrom(spec_any(spec))
            paths.append("spec")
        if labels is not None:
            c.labels.update(labels)
            paths.append("labels")
        if image is not None:
            c.image = image
            paths.append("image")
        if snapshot_key is not None:
            c.snapshot_key = snapshot_key
            paths.append("snapshotkey")
        if extensions is not None:
            for k, v in extensions.items():
                c.extensions[k].CopyFrom(v)
            paths.append("extensions")
        if fields is not None:
            paths = list(fields)
        r = await self._call(self._stub(containers_pb2_grpc.ContainersStub).Update,
                             containers_pb2.UpdateContainerRequest(
                                 container=c, update_mask=field_mask_pb2.FieldMask(paths=paths)))
        return r.container

    async def container_delete(self, container_id: str) -> None:
        await self._call(self._stub(containers_pb2_grpc.ContainersStub).Delete,
                         containers_pb2.DeleteContainerRequest(id=container_id))

    # ---- tasks --------------------------------------------------------------------
    async def task_create(self, container_id: str, *, rootfs: Sequence[Mount | Mapping] = (),
                          stdin: str = "", stdout: str = "", stderr: str = "",
                          terminal: bool = False, options: any_pb2.Any | None = None,
                          runtime_path: str = "") -> int:
        """Create the task of a container (stdio are FIFO paths); returns its pid."""
        req = tasks_pb2.CreateTaskRequest(
            container_id=container_id, rootfs=[to_mount(m) for m in rootfs],
            stdin=stdin, stdout=stdout, stderr=stderr, terminal=terminal,
            runtime_path=runtime_path)
        if options is not None:
            req.options.CopyFrom(options)
        r = await self._call(self._stub(tasks_pb2_grpc.TasksStub).Create, req)
        return r.pid

    async def task_start(self, container_id: str, exec_id: str = "") -> int:
        r = await self._call(self._stub(tasks_pb2_grpc.TasksStub).Start,
                             tasks_pb2.StartRequest(container_id=container_id, exec_id=exec_id))
        return r.pid

    async def task_kill(self, container_id: str, signal: int = 15, *, all: bool = False,
                        exec_id: str = "") -> None:
        await self._call(self._stub(tasks_pb2_grpc.TasksStub).Kill,
                         tasks_pb2.KillRequest(container_id=container_id, exec_id=exec_id,
                                               signal=int(signal), all=all))

    async def task_delete(self, container_id: str):
        """Delete a stopped task; returns DeleteResponse (id, pid, exit_status, exited_at)."""
        return await self._call(self._stub(tasks_pb2_grpc.TasksStub).Delete,
                                tasks_pb2.DeleteTaskRequest(container_id=container_id))

    async def process_delete(self, container_id: str, exec_id: str):
        return await self._call(self._stub(tasks_pb2_grpc.TasksStub).DeleteProcess,
                                tasks_pb2.DeleteProcessRequest(container_id=container_id,
                                                               exec_id=exec_id))

    async def task_wait(self, container_id: str, exec_id: str = "", *,
                        timeout: float | None = None) -> tuple[int, float]:
        """Wait for the task (or exec) to exit: ``(exit_status, exited_at as epoch seconds)``."""
        r = await self._call(self._stub(tasks_pb2_grpc.TasksStub).Wait,
                             tasks_pb2.WaitRequest(container_id=container_id, exec_id=exec_id),
                             timeout=timeout)
        return r.exit_status, r.exited_at.seconds + r.exited_at.nanos / 1e9

    async def task_get(self, container_id: str, exec_id: str = ""):
        """The Process (pid, status, exit_status...) of a task or exec."""
        r = await self._call(self._stub(tasks_pb2_grpc.TasksStub).Get,
                             tasks_pb2.GetRequest(container_id=container_id, exec_id=exec_id))
        return r.process

    async def tasks(self, filter: str = "") -> list:
        r = await self._call(self._stub(tasks_pb2_grpc.TasksStub).List,
                             tasks_pb2.ListTasksRequest(filter=filter))
        return list(r.tasks)

    async def task_pids(self, container_id: str) -> list:
        """ProcessInfo (pid, info) of every process of the task."""
        r = await self._call(self._stub(tasks_pb2_grpc.TasksStub).ListPids,
                             tasks_pb2.ListPidsRequest(container_id=container_id))
        return list(r.processes)

    async def task_exec(self, container_id: str, exec_id: str, process: Mapping | bytes, *,
                        stdin: str = "", stdout: str = "", stderr: str = "",
                        terminal: bool = False) -> None:
        """Add an exec process (an OCI Process dict); start it with task_start(id, exec_id)."""
        await self._call(self._stub(tasks_pb2_grpc.TasksStub).Exec,
                         tasks_pb2.ExecProcessRequest(
                             container_id=container_id, exec_id=exec_id, stdin=stdin,
                             stdout=stdout, stderr=stderr, terminal=terminal,
                             spec=spec_any(process, PROCESS_TYPE_URL)))

    async def task_resize(self, container_id: str, width: int, height: int,
                          exec_id: str = "") -> None:
        await self._call(self._stub(tasks_pb2_grpc.TasksStub).ResizePty,
                         tasks_pb2.ResizePtyRequest(container_id=container_id, exec_id=exec_id,
                                                    width=width, height=height))

    async def task_close_io(self, container_id: str, exec_id: str = "", *,
                            stdin: bool = True) -> None:
        await self._call(self._stub(tasks_pb2_grpc.TasksStub).CloseIO,
                         tasks_pb2.CloseIORequest(container_id=container_id, exec_id=exec_id,
                                                  stdin=stdin))

    async def task_update(self, container_id: str, resources: Mapping) -> None:
        """Apply OCI ``linux.resources`` to a running task (``docker update``);
        containerd applies only the fields given."""
        await self._call(self._stub(tasks_pb2_grpc.TasksStub).Update,
                         tasks_pb2.UpdateTaskRequest(
                             container_id=container_id,
                             resources=spec_any(resources, RESOURCES_TYPE_URL)))

    async def task_pause(self, container_id: str) -> None:
        await self._call(self._stub(tasks_pb2_grpc.TasksStub).Pause,
                         tasks_pb2.PauseTaskRequest(container_id=container_id))

    async def task_resume(self, container_id: str) -> None:
        await self._call(self._stub(tasks_pb2_grpc.TasksStub).Resume,
                         tasks_pb2.ResumeTaskRequest(container_id=container_id))

    # ---- events -------------------------------------------------------------------
    async def subscribe(self, filters: Iterable[str] = ()) -> AsyncIterator[events_pb2.Envelope]:
        """Envelopes (timestamp, namespace, topic, event) as they happen, of every namespace.

        Filters use containerd's syntax (``topic=="/tasks/exit"``,
        ``namespace==moby``); :func:`decode_event` gives the typed event.
        Break out of the loop (or close the generator) to unsubscribe.
        """
        async for env in self._stream(self._stub(events_pb2_grpc.EventsStub).Subscribe,
                                      events_pb2.SubscribeRequest(filters=list(filters))):
            yield env

    async def publish(self, topic: str, event) -> None:
        """Publish an event message (in this client's namespace)."""
        await self._call(self._stub(events_pb2_grpc.EventsStub).Publish,
                         events_pb2.PublishRequest(topic=topic, event=event_any(event)))

    # ---- images: manifests and unpack ---------------------------------------------
    async def resolve_manifest(self, target: Descriptor | Mapping,
                               want: Mapping | None = None) -> tuple[dict, dict]:
        """Follow an image target to its manifest: ``(manifest descriptor, manifest)``.

        An index (OCI or docker manifest list) is resolved to the manifest of
        the platform ``want`` (this machine by default), nested indexes too.
        """
        desc = descriptor_to_dict(to_descriptor(target))
        for _ in range(8):
            doc = await self.content_read_json(desc["digest"])
            media = desc.get("mediaType") or doc.get("mediaType", "")
            if media in INDEX_TYPES or (not media and "manifests" in doc):
                desc = select_manifest(doc, want)
                continue
            if "config" not in doc or "layers" not in doc:
                raise errors.InvalidArgument(
                    f"blob {desc['digest']} is not an image manifest ({media or 'no media type'})")
            return desc, doc
        raise errors.InvalidArgument(f"image index nesting too deep at {desc['digest']}")

    async def image_config(self, name: str, want: Mapping | None = None) -> tuple[dict, dict]:
        """``(manifest, config)`` of a named image, both as dicts."""
        image = await self.image_get(name)
        _, manifest = await self.resolve_manifest(image.target, want)
        config = await self.content_read_json(manifest["config"]["digest"])
        return manifest, config

    async def unpack(self, image_name: str, snapshotter: str | None = None, *,
                     want: Mapping | None = None) -> str:
        """Unpack a named image's layers into snapshots (:meth:`unpack_layers`);
        returns the top chain ID."""
        manifest, config = await self.image_config(image_name, want)
        try:
            return await self.unpack_layers(manifest, config, snapshotter)
        except errors.InvalidArgument as e:
            raise errors.InvalidArgument(f"image {image_name}: {e.message}") from None

    async def unpack_layers(self, manifest: Mapping, config: Mapping,
                            snapshotter: str | None = None) -> str:
        """Unpack an image's layers into snapshots, as containerd's client Unpack does.

        When the top layer's snapshot (its chain ID) exists, that is all (one
        Stat).  Otherwise, for each layer in order whose snapshot is missing:
        Prepare(random key, parent chain ID), Diff.Apply(layer, mounts), check
        the applied digest against the config's ``rootfs.diff_ids``,
        Commit(chain ID), all under a short lease when the server has Leases;
        then the config blob is labelled ``containerd.io/gc.ref.snapshot.<snapshotter>``
        so that GC keeps the snapshots while the image exists.  Returns the
        top chain ID (the parent of a container's rootfs snapshot); "" for an
        image without layers.
        """
        sn = self._sn(snapshotter)
        layers = manifest.get("layers") or []
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(layers) != len(diff_ids):
            raise errors.InvalidArgument(
                f"{len(layers)} layers but {len(diff_ids)} diff ids in config")
        if not layers:
            return ""
        chain = chain_ids(diff_ids)
        try:
            await self.snapshot_stat(chain[-1], snapshotter=sn)
            return chain[-1]
        except errors.NotFound:
            pass
        async with self.leased(expire=600) as client:
            parent = ""
            for layer, diff_id, chain_id in zip(layers, diff_ids, chain):
                await client._unpack_layer(layer, diff_id, chain_id, parent, sn)
                parent = chain_id
            try:
                await client.content_update(
                    manifest["config"]["digest"], {LABEL_GC_REF_SNAPSHOT + sn: chain[-1]})
            except (errors.NotImplementedYet, errors.NotFound):
                pass
            return chain[-1]

    async def _unpack_layer(self, layer: Mapping, diff_id: str, chain_id: str, parent: str,
                            sn: str) -> None:
        try:
            await self.snapshot_stat(chain_id, snapshotter=sn)
            return
        except errors.NotFound:
            pass
        key = f"extract-{secrets.token_hex(8)} {chain_id}"
        mounts = await self.snapshot_prepare(key, parent, snapshotter=sn)
        committed = False
        try:
            applied = await self.diff_apply(layer, mounts)
            if applied.digest != diff_id:
                raise errors.InvalidArgument(
                    f"layer {layer.get('digest')}: unpacked to {applied.digest}, "
                    f"config says {diff_id}")
            try:
                await self.snapshot_commit(chain_id, key, snapshotter=sn)
            except errors.AlreadyExists:
                pass  # unpacked meanwhile by someone else: theirs is as good
            committed = True
        finally:
            if not committed:
                try:
                    await self.snapshot_remove(key, snapshotter=sn)
                except errors.PalletError:
                    pass


async def _chunks(data) -> AsyncIterator[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        for i in range(0, len(view), WRITE_CHUNK):
            yield bytes(view[i:i + WRITE_CHUNK])
        return
    if hasattr(data, "__aiter__"):
        async for chunk in data:
            for i in range(0, len(chunk), WRITE_CHUNK):
                yield bytes(chunk[i:i + WRITE_CHUNK])
        return
    if hasattr(data, "read"):
        while True:
            chunk = data.read(WRITE_CHUNK)
            if not chunk:
                return
            yield chunk
    for chunk in data:
        for i in range(0, len(chunk), WRITE_CHUNK):
            yield bytes(chunk[i:i + WRITE_CHUNK])


# --------------------------------------------------------------------------
# the sync wrapper
# --------------------------------------------------------------------------

class SyncContainerd:
    """The same methods as :class:`Containerd`, callable from plain threads.

    A private event loop runs in a daemon thread; each method call runs the
    coroutine there and waits for it.  Methods that stream (``subscribe``,
    ``content_read_iter``) return ordinary generators.
    """

    def __init__(self, address: str, namespace: str = "default", **kwargs):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="containerd-client", daemon=True)
        self._thread.start()
        self._client = Containerd(address, namespace, **kwargs)

    @property
    def namespace(self) -> str:
        return self._client.namespace

    def _run(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _iter(self, agen):
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            try:
                self._run(agen.aclose(), timeout=5)
            except Exception:  # closing a cancelled stream: nothing left to report
                pass

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args, **kwargs):
            result = attr(*args, **kwargs)
            if asyncio.iscoroutine(result):
                return self._run(result)
            if hasattr(result, "__anext__"):
                return self._iter(result)
            return result

        call.__name__ = name
        call.__doc__ = attr.__doc__
        return call

    def with_namespace(self, namespace: str) -> "SyncContainerd":
        view = object.__new__(SyncContainerd)
        view._loop, view._thread = self._loop, self._thread
        view._client = self._client.with_namespace(namespace)
        return view

    def close(self) -> None:
        if self._client._shared is None and self._loop.is_running():
            try:
                self._run(self._client.close(), timeout=5)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=5)

    def __enter__(self) -> "SyncContainerd":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
