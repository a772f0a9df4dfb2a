"""The service layer of pallet-containerd, under the gRPC translators.

It owns the event exchange and the task manager, and reaches the image store
(content, and the metadata: namespaces, images, leases, containers, content
per namespace; snapshotters, applier) through its contract
(:class:`pallet.core.contracts.ImageStore`).  Changes publish containerd's
events, which also drive the container event hooks of pallet's plugins
(:mod:`.container_hooks`).

Configuration: the ``[containerd]`` section (``shim-debug``: shims log at
debug level; ``shim-memory-merge``: the kernel's same-page merging of the
shims' memory, see :mod:`pallet.shim.heap`; ``[containerd.runtimes]``:
runtime name -> shim, see :mod:`.shims`).
"""
from __future__ import annotations

import os
import threading
import logging
import uuid as _uuid

import attrs

from pallet.core import errors
from pallet.core.files import write_atomic
from pallet.proto.containerd.events import container_pb2 as ev_container
from pallet.proto.containerd.events import image_pb2 as ev_image
from pallet.proto.containerd.events import namespace_pb2 as ev_namespace

from pallet.containerd_services import convert, shims
from pallet.containerd_services.container_hooks import ContainerHooks
from pallet.containerd_services.containers import ContainerStore
from pallet.containerd_services.content import ContentNamespaces
from pallet.containerd_services.exchange import Exchange
from pallet.containerd_services.tasks import TaskManager
from pallet.shim import heap

log = logging.getLogger("pallet.containerd")

GRPC_SERVICES = ("containers", "content", "diff", "events", "images", "introspection",
                 "leases", "namespaces", "snapshots", "tasks", "version")


@attrs.frozen
class LeaseResource:
    id: str
    type: str


@attrs.frozen
class NamespaceView:
    name: str
    labels: dict


@attrs.frozen
class ImageSpec:
    """An image as a client gave it (the store's image record has these fields)."""

    name: str
    target: object
    labels: dict = attrs.field(factory=dict)


def pallet_version() -> tuple[str, str]:
    try:
        from importlib.metadata import version

        v = version("pallet")
    except Exception:  # not installed as a distribution (running from a checkout)
        v = "0.0.0"
    return f"v{v}", "pallet"


class Backend:
    """Everything the services call, for one pallet-containerd."""

    def __init__(self, kernel, address: str):
        self.kernel = kernel
        self.paths = kernel.paths
        self.address = address
        self.version, self.revision = pallet_version()
        settings = kernel.config.section("containerd")
        table = shims.ShimTable(settings.get("runtimes"))  # refused here when malformed
        heap.merge_setting(kernel.config)   # (applied by the shims' zygote) refused here too
        self._store = None
        self._store_lock = threading.Lock()
        self.exchange = Exchange()
        self.containers = ContainerStore(lambda: self.store)
        #: which namespace holds which blob (see :mod:`.content`)
        self.content_namespaces = ContentNamespaces(lambda: self.store)
        self.tasks = TaskManager(self.paths, self.containers, self.exchange, address,
                                 snapshots=self._snapshot_mounts,
                                 shim_debug=bool(settings.get("shim-debug", False)),
                                 shim_table=table)
        self.hooks = ContainerHooks(kernel, self.exchange, self.containers)
        self.uuid = self._load_uuid()
        self._ttrpc = None

    # ---- plumbing ---------------------------------------------------------------
    @property
    def store(self):
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    self._store = self.kernel.provide("image_store")
        return self._store

    @property
    def content(self):
        """The content store: blobs by digest, uploads."""
        return self.store.content

    @property
    def metadata(self):
        """Namespaces, images, leases, containers and content per namespace."""
        return self.store.metadata

    # ---- leases (the containerd-lease header) --------------------------------------
    def lease_add(self, ns: str, lease: str, rid: str, rtype: str) -> None:
        """Put a resource made under ``lease`` on it (NotFound if there is no such lease)."""
        try:
            self.metadata.add_lease_resource(ns, lease, self.lease_resource(rid, rtype))
        except errors.NotFound:
            raise errors.NotFound(f"lease {lease!r} does not exist: not found") from None

    def lease_remove(self, ns: str, lease: str, rid: str, rtype: str) -> None:
        try:
            self.metadata.delete_lease_resource(ns, lease, self.lease_resource(rid, rtype))
        except errors.NotFound:
            pass

    def snapshotter(self, ns: str, name: str):
        """The snapshotter ``name`` (empty: the store's default) seen from ``ns``."""
        return self.store.snapshotter(name or None).namespaced(ns)

    def _snapshot_mounts(self, ns: str, snapshotter: str, key: str):
        return [convert.mount_pb(m) for m in self.snapshotter(ns, snapshotter).mounts(key)]

    def _load_uuid(self) -> str:
        path = os.path.join(self.paths.containerd_root, "io.containerd.grpc.v1.introspection",
                            "uuid")
        try:
            with open(path) as f:
                value = f.read().strip()
            if value:
                return value
        except OSError:
            pass
        value = str(_uuid.uuid4())
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, value, fsync=False)
        return value

    def lease_resource(self, rid: str, rtype: str) -> LeaseResource:
        if not rid or not rtype:
            raise errors.InvalidArgument("resource id and type must be set: invalid argument")
        return LeaseResource(rid, rtype)

    def plugins(self) -> list[dict]:
        """What Introspection.Plugins reports: containerd's plugin types and ids."""
        from pallet.distribution.platforms import host_platform

        plat = host_platform()
        out = [{"type": "io.containerd.content.v1", "id": "content"},
               {"type": "io.containerd.metadata.v1", "id": "pallet",
                "requires": ["io.containerd.content.v1", "io.containerd.snapshotter.v1"]}]
        try:
            names = list(self.store.snapshotter_names())
            error = ""
        except errors.PalletError as e:
            names, error = ["overlayfs"], e.message
        for name in names:
            out.append({"type": "io.containerd.snapshotter.v1", "id": name,
                        "platforms": [plat], "error": error,
                        "exports": {"root": self.paths.snapshotter_root(name)}})
        out.append({"type": "io.containerd.differ.v1", "id": "walking",
                    "platforms": [plat], "requires": ["io.containerd.metadata.v1"]})
        out.append({"type": "io.containerd.runtime.v2", "id": "task", "platforms": [plat],
                    "exports": {"root": os.path.join(self.paths.containerd_root,
                                                     "io.containerd.runtime.v2.task"),
                                "state": os.path.join(self.paths.containerd_state,
                                                      "io.containerd.runtime.v2.task")}})
        for svc in GRPC_SERVICES:
            out.append({"type": "io.containerd.grpc.v1", "id": svc})
        out.extend(self._pallet_plugins(plat))
        return out

    def _pallet_plugins(self, plat) -> list[dict]:
        """pallet's own plugins, as containerd lists its plugins: ``io.pallet.<role>.v1``
        and the plugin's name; the runtime and init roles are listed with the
        process that loads them (the shims, through their zygote)."""
        out = []
        loaded = {p.name for p in self.kernel.loaded_plugins()}
        for info in sorted(self.kernel.plugins.values(), key=lambda p: (p.role or "~", p.name)):
            role = info.role or "extension"
            in_shims = info.role in ("runtime", "init") and \
                self.kernel.roles.get(info.role) == info.name
            if info.name not in loaded and not in_shims:
                continue
            entry = {"type": f"io.pallet.{role}.v1", "id": info.name,
                     "exports": {"distribution": info.distribution, "version": info.version,
                                 "process": "pallet-shim" if in_shims else "pallet-containerd"}}
            if info.role in ("runtime", "containerd"):
                entry["platforms"] = [plat]
            out.append(entry)
        return out

    # ---- namespaces -------------------------------------------------------------
    def namespace_get(self, name: str):
        # containerd answers Get of a namespace that does not exist with its
        # name and no labels (its labels bucket is simply empty)
        try:
            return self.metadata.get_namespace(name)
        except errors.NotFound:
            return NamespaceView(name, {})

    def namespace_list(self):
        return self.metadata.list_namespaces()

    def namespace_create(self, name: str, labels: dict):
        n = self.metadata.create_namespace(name, labels)
        self.exchange.publish(name, "/namespaces/create",
                              ev_namespace.NamespaceCreate(name=name, labels=labels))
        return n

    def namespace_update(self, name: str, labels: dict, paths: list[str]):
        n = self.metadata.update_namespace(name, labels, paths or None)
        self.exchange.publish(name, "/namespaces/update",
                              ev_namespace.NamespaceUpdate(name=name, labels=dict(n.labels)))
        return n

    def namespace_delete(self, name: str) -> None:
        # content, containers, images and leases are the metadata's to check
        if self.tasks.has_tasks(name):
            raise errors.FailedPrecondition(
                f"namespace {name} must be empty, but it still has tasks: failed precondition")
        self.metadata.delete_namespace(name)
        self.exchange.publish(name, "/namespaces/delete",
                              ev_namespace.NamespaceDelete(name=name))

    # ---- containers ---------------------------------------------------------------
    def container_create(self, ns: str, container):
        self.metadata.ensure_namespace(ns)
        c = self.containers.create(ns, container)
        self.exchange.publish(ns, "/containers/create", ev_container.ContainerCreate(
            id=c.id, image=c.image,
            runtime=ev_container.ContainerCreate.Runtime(name=c.runtime.name,
                                                         options=c.runtime.options)))
        return c

    def container_update(self, ns: str, container, paths: list[str]):
        c = self.containers.update(ns, container, paths)
        self.exchange.publish(ns, "/containers/update", ev_container.ContainerUpdate(
            id=c.id, image=c.image, labels=dict(c.labels), snapshot_key=c.snapshot_key))
        return c

    def container_delete(self, ns: str, cid: str) -> None:
        self.containers.delete(ns, cid)
        self.exchange.publish(ns, "/containers/delete", ev_container.ContainerDelete(id=cid))

    # ---- images -----------------------------------------------------------------------
    def _image_record(self, image):
        if not image.name:
            raise errors.InvalidArgument("image name must not be empty: invalid argument")
        return ImageSpec(name=image.name, target=convert.descriptor_model(image.target),
                           labels=dict(image.labels))

    def image_get(self, ns: str, name: str):
        return self.metadata.get_image(ns, name)

    def image_list(self, ns: str, filter_strings):
        return self.metadata.list_images(ns, filter_strings or None)

    def image_create(self, ns: str, image):
        img = self.metadata.create_image(ns, self._image_record(image))
        self.exchange.publish(ns, "/images/create",
                              ev_image.ImageCreate(name=img.name, labels=dict(img.labels)))
        return img

    def image_update(self, ns: str, image, paths: list[str]):
        img = self.metadata.update_image(ns, self._image_record(image), paths or None)
        self.exchange.publish(ns, "/images/update",
                              ev_image.ImageUpdate(name=img.name, labels=dict(img.labels)))
        return img

    def image_delete(self, ns: str, name: str) -> None:
        self.metadata.delete_image(ns, name)
        self.exchange.publish(ns, "/images/delete", ev_image.ImageDelete(name=name))

    # ---- diff -------------------------------------------------------------------------
    def diff_apply(self, desc, mounts):
        return self.store.applier.apply(desc, mounts)

    def diff_compare(self, lower, upper, **kw):
        """The layer blob of the changes from ``lower`` to ``upper`` (Diff.Diff)."""
        return self.store.differ.compare(lower, upper, **kw)

    # ---- running --------------------------------------------------------------------
    def start(self) -> list[str]:
        """Before serving: open the ttrpc endpoint (``<address>.ttrpc``) where
        shims forward their events, reconnect to the shims of running tasks
        (their ids are returned) and start the shims' zygote."""
        self._start_ttrpc(self.address + ".ttrpc")
        self.tasks.watch_exits = self._ttrpc is None
        self.hooks.start()
        restored = self.tasks.restore()
        if restored:
            log.info("reconnected to %d running task(s): %s", len(restored), ", ".join(restored))
        self._start_zygote()
        return restored

    def _start_ttrpc(self, path: str) -> None:
        from pallet.ttrpc import protocol as ttrpc

        if len(path.encode()) >= 108:
            log.warning("no ttrpc endpoint: %s is longer than 107 bytes", path)
            return
        # ordered: a shim's events reach the exchange in the order it sent them
        # (an OOM before the exit it caused, a start before its exit)
        self._ttrpc = ttrpc.Server(path, _ttrpc_services(self), mode=0o660, ordered=True)
        self._ttrpc.start()

    def _start_zygote(self) -> None:
        if os.environ.get("PALLET_SHIM_ZYGOTE", "1") == "0":
            return
        try:
            from pallet.shim import launch

            threading.Thread(target=launch.start_zygote, args=(self.paths,), daemon=True,
                             name="zygote").start()
        except Exception as e:  # shims still start the slow way
            log.debug("no shim zygote: %s", e)

    def close(self) -> None:
        """After serving: close the ttrpc endpoint, stop the zygote (the shims
        and their containers keep running) and close the metadata."""
        if self._ttrpc is not None:
            self._ttrpc.close()
            self._ttrpc = None
        self.hooks.close()
        try:
            from pallet.shim import launch

            launch.stop_zygote(self.paths)
        except Exception:  # noqa: BLE001 — best effort on the way out
            pass
        self.tasks.close()
        if self._store is not None:
            self._store.close()


def _ttrpc_services(backend) -> dict:
    """``containerd.services.events.ttrpc.v1.Events/Forward`` for shims, on ``<socket>.ttrpc``."""
    from google.protobuf import empty_pb2

    from pallet.proto.containerd.services.events.v1 import events_pb2 as pb
    from pallet.proto.containerd.services.ttrpc.events.v1 import events_pb2 as tpb

    def forward(req):
        # the ttrpc Envelope has the fields and numbers of the gRPC one
        backend.exchange.forward(pb.Envelope.FromString(req.envelope.SerializeToString()))
        return empty_pb2.Empty()

    return {"containerd.services.events.ttrpc.v1.Events": {"Forward": (tpb.ForwardRequest,
                                                                        forward)}}
