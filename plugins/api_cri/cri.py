"""The CRI runtime of pallet-containerd: what the gRPC translators
(:mod:`.services`) call, one method or manager per part of the API.

It is made by the gRPC-services hook with pallet-containerd's service layer
(``services``: containers, tasks, images and events of every namespace)
and reaches the image store only through ``kernel.provide("image_store")``.
Its state lives in the ``k8s.io`` namespace and under containerd's
``io.containerd.grpc.v1.cri`` directories of the root and state, and is
found again when pallet-containerd restarts (:meth:`CRI.start`).
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time

from pallet.proto.cri.runtime.v1 import api_pb2 as cri

from pallet.plugins.api_cri.config import CRIConfig
from pallet.plugins.api_cri.container import Containers
from pallet.plugins.api_cri.events import EventBus, TaskWatcher
from pallet.plugins.api_cri.holder import Holders
from pallet.plugins.api_cri.images import Images
from pallet.plugins.api_cri.ioloop import IOLoop
from pallet.plugins.api_cri.network import PodNetwork
from pallet.plugins.api_cri.sandbox import Sandboxes
from pallet.plugins.api_cri.stats import Stats
from pallet.plugins.api_cri.store import Records
from pallet.plugins.api_cri.streaming import StreamServer

log = logging.getLogger("pallet.cri")

RUNTIME_NAME = "pallet"
API_VERSION = "v1"


class CRI:
    def __init__(self, kernel, services):
        from pallet.distribution.registry import RegistryOptions

        self.kernel = kernel
        self.services = services
        paths = services.paths
        section = kernel.plugin_config("api_cri")
        registry = section.pop("registry", None)
        self.cfg = CRIConfig.load(section, paths.containerd_root, paths.containerd_state)
        self.store = kernel.provide("image_store")
        options = RegistryOptions.from_config(registry) if registry is not None else \
            getattr(self.store, "registry_options", None)
        self.records = Records(services)
        self.events = EventBus()
        self.network = PodNetwork(self.cfg)
        self.workers = concurrent.futures.ThreadPoolExecutor(max_workers=64,
                                                             thread_name_prefix="cri")
        self.io: IOLoop | None = None
        self.images = Images(services, self.store, self.cfg.snapshotter, options)
        self.holders = Holders(self.cfg.plugin_root)
        self.stats = Stats(self)
        self.sandboxes = Sandboxes(self)
        self.containers = Containers(self)
        self.streams = StreamServer(self)
        self.watcher = TaskWatcher(services.exchange, self._on_exit, self.containers.on_oom)
        #: set once the state of an earlier run is found again (calls wait for it)
        self.ready = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Watch task events, find the pods and containers of an earlier run
        (their true states), release what pods removed meanwhile held, serve
        the streams."""
        self.io = IOLoop()
        self.watcher.start()
        sandboxes, containers = self.records.load()
        for sb in sandboxes:
            self.sandboxes.recover(sb)
        for c in containers:
            if c.sandbox_id not in self.records.sandboxes:
                log.warning("container %s of a pod that is gone: removing its record", c.id)
                self.records.delete(c)
                continue
            try:
                self.containers.recover(c)
            except Exception:  # noqa: BLE001 — one bad container must not stop the others
                log.exception("recover container %s", c.id)
        self.sandboxes.release_orphans()
        self.io.call(self.streams.start)
        self.ready.set()
        if sandboxes or containers:
            log.info("recovered %d pod(s) and %d container(s)", len(sandboxes), len(containers))

    def stop(self) -> None:
        self.watcher.stop()
        if self.io is not None:
            try:
                self.io.call(self.streams.stop)
            except Exception:  # noqa: BLE001 — stopping regardless
                pass
            self.io.stop()
        self.workers.shutdown(wait=False, cancel_futures=True)
        self.network.close()

    def _on_exit(self, cid: str, exec_id: str, code: int, at: int) -> None:
        if not exec_id:
            self.containers.on_exit(cid, code, at)

    # --- events --------------------------------------------------------------------------------
    def publish(self, id: str, kind: int, *, sandbox=None, container=None) -> None:
        """A GetContainerEvents event about a container (or a pod, by its id)."""
        try:
            if container is not None:
                sandbox = self.records.sandboxes.get(container.sandbox_id)
            ev = cri.ContainerEventResponse(container_id=id, container_event_type=kind,
                                            created_at=time.time_ns())
            if sandbox is not None:
                ev.pod_sandbox_status.CopyFrom(self.sandboxes.status_message(sandbox))
            if container is not None:
                ev.containers_statuses.append(self.containers.status_message(container))
            self.events.publish(ev)
        except Exception:  # noqa: BLE001 — an event must never fail the call that made it
            log.exception("event of %s", id)

    # --- runtime ---------------------------------------------------------------------------------
    def version(self) -> cri.VersionResponse:
        return cri.VersionResponse(version="0.1.0", runtime_name=RUNTIME_NAME,
                                   runtime_version=self.services.version,
                                   runtime_api_version=API_VERSION)

    def status(self, verbose: bool) -> cri.StatusResponse:
        ready, reason, message = self.network.status()
        resp = cri.StatusResponse(status=cri.RuntimeStatus(conditions=[
            cri.RuntimeCondition(type="RuntimeReady", status=True),
            cri.RuntimeCondition(type="NetworkReady", status=ready, reason=reason,
                                 message=message)]))
        for name in ["", *sorted(self.cfg.runtimes)]:
            resp.runtime_handlers.append(cri.RuntimeHandler(
                name=name, features=cri.RuntimeHandlerFeatures(recursive_read_only_mounts=False,
                                                               user_namespaces=False)))
        resp.features.supplemental_groups_policy = True
        if verbose:
            try:
                nets = [json.loads(n.raw) for n in self.network.networks()]
            except Exception:  # noqa: BLE001 — shown as absent
                nets = []
            resp.info["config"] = json.dumps({
                "sandboxImage": self.cfg.sandbox_image,
                "streamServerAddress": self.streams.address,
                "cni": {"confDir": self.cfg.cni_conf_dir, "binDirs": list(self.cfg.cni_bin_dirs),
                        "maxConfNum": self.cfg.cni_max_conf_num},
                "defaultRuntimeName": self.cfg.default_runtime,
                "runtimes": self.cfg.runtimes, "snapshotter": self.images.snapshotter})
            resp.info["cniconfig"] = json.dumps({"Networks": nets,
                                                 "PodCIDR": self.network.pod_cidr})
            resp.info["golang"] = json.dumps("python")
            resp.info["lastCNILoadStatus"] = json.dumps("OK" if ready else message)
        return resp

    def runtime_config(self) -> cri.RuntimeConfigResponse:
        return cri.RuntimeConfigResponse(linux=cri.LinuxRuntimeConfiguration(
            cgroup_driver=cri.CGROUPFS))
