"""The Docker engine as a library: what dockerd does behind its API, over a
containerd, for any client protocol (``kernel.provide("client_protocol")``
serves it; moby's ``daemon/`` under ``api/server/router/``)."""
from __future__ import annotations

import logging
import os

log = logging.getLogger("pallet.engine")

NAMESPACE = "moby"
#: the containerd runtime name of new containers on palletd's own
#: pallet-containerd: pallet's, which it runs with pallet-shim
DEFAULT_RUNTIME = "io.containerd.pallet.v2"
#: ... and on another containerd (``--containerd``): dockerd's, containerd's runc shim
FOREIGN_RUNTIME = "io.containerd.runc.v2"


class Engine:
    """dockerd's engine over a containerd: the services every client protocol
    serves (containers, images, volumes, execs, system).

    Build it with the kernel of palletd (or of a program that embeds the
    engine), :meth:`start` it before serving and :meth:`close` it after.
    The roles it needs (network, port proxy) come from ``kernel.provide``.
    """

    def __init__(self, kernel, *, containerd_address: str, runtime: str,
                 cgroup_parent: str = "/pallet", debug: bool = False,
                 live_restore: bool = False, volume_plugin_dirs=None,
                 snapshotter: str | None = None, metrics_addr: str | None = None):
        from pallet.core.errors import ConfigError

        if volume_plugin_dirs is not None and (
                not isinstance(volume_plugin_dirs, list)
                or not all(isinstance(d, str) for d in volume_plugin_dirs)):
            raise ConfigError("configuration: [engine] volume-plugin-dirs must be a "
                              "list of directories")
        self.volume_plugin_dirs = volume_plugin_dirs
        self.kernel = kernel
        self.live_restore = live_restore
        self.containerd_address = containerd_address
        self.runtime = runtime
        self.cgroup_parent = cgroup_parent
        self.debug = debug
        #: containerd's snapshotter of images and containers (None: chosen at start)
        self.snapshotter = snapshotter
        self.metrics_addr = metrics_addr
        self.metrics = None
        self.ctrd = None
        self.containers = self.images = self.system = self.volumes = self.execs = None

    @classmethod
    def from_kernel(cls, kernel, *, metrics_addr: str | None = None) -> "Engine":
        """The engine as the kernel's options and the ``[engine]`` section configure it
        (``metrics_addr``: palletd's ``--metrics-addr``, else ``[daemon] metrics-addr``)."""
        from pallet.core.errors import ConfigError

        cfg = kernel.config.section("engine")
        addr = metrics_addr or kernel.config.section("daemon").get("metrics-addr") or None
        if addr is not None and not isinstance(addr, str):
            raise ConfigError("configuration: [daemon] metrics-addr must be \"HOST:PORT\"")
        opts = kernel.options
        address = opts.containerd_address or kernel.paths.containerd_socket
        bare = address[len("unix://"):] if address.startswith("unix://") else address
        own = os.path.abspath(bare) == os.path.abspath(kernel.paths.containerd_socket)
        return cls(kernel, containerd_address=address,
                   runtime=cfg.get("runtime") or (DEFAULT_RUNTIME if own else FOREIGN_RUNTIME),
                   cgroup_parent=cfg.get("cgroup-parent") or "/pallet",
                   debug=opts.debug, live_restore=opts.live_restore,
                   volume_plugin_dirs=cfg.get("volume-plugin-dirs"),
                   snapshotter=cfg.get("snapshotter"), metrics_addr=addr)

    async def start(self) -> "Engine":
        """Connect to containerd and load every container (before serving)."""
        from pallet.containerd.client import Containerd
        from pallet.engine.containers import ContainerService
        from pallet.engine.exec import ExecService
        from pallet.engine.health import HealthMonitor
        from pallet.engine.images import ImageService
        from pallet.engine.system import SystemService
        from pallet.engine.volumes import VolumeService

        if self.metrics_addr:
            from pallet.engine import metrics as metricsmod

            self.metrics = metricsmod.Metrics()
            metricsmod.parse_addr(self.metrics_addr)  # a bad address stops the start
        self.ctrd = ctrd = Containerd(self.containerd_address, NAMESPACE)
        if self.metrics is not None:
            ctrd.stats.observers.append(self.metrics.rpc_done)
        if self.snapshotter is None:
            self.snapshotter = await default_snapshotter(ctrd)
        self.images = ImageService(self.kernel, ctrd, self.snapshotter)
        self.volumes = VolumeService(self.kernel, plugin_dirs=self.volume_plugin_dirs)
        self.containers = ContainerService(self.kernel, ctrd, self.images, runtime=self.runtime,
                                           cgroup_parent=self.cgroup_parent,
                                           volumes=self.volumes, live_restore=self.live_restore,
                                           snapshotter=self.snapshotter)
        self.execs = ExecService(self.kernel, ctrd, self.containers)
        self.containers.health = HealthMonitor(
            self.containers, self.execs,
            on_result=self.metrics.health_result if self.metrics is not None else None)
        if self.metrics is not None:
            self._start_metrics()
        self.system = SystemService(self.kernel, ctrd, self.containers, self.images,
                                    debug=self.debug, volumes=self.volumes)
        await self.containers.restore()
        if self.kernel.has_role("builder"):
            # what builds interrupted by palletd's end left goes first
            await self.kernel.provide("builder").start(self)
        return self

    def _start_metrics(self) -> None:
        from pallet.engine import events as eventsmod
        from pallet.engine import metrics as metricsmod

        m = self.metrics
        metricsmod.instrument_containers(self.containers, m)
        metricsmod.count_events(eventsmod.bus_of(self.kernel), m)
        m.bind(self)
        metricsmod._BY_KERNEL[self.kernel] = m
        m.serve(self.metrics_addr)

    async def close(self) -> None:
        """Stop the engine's background work; containers keep running."""
        if self.metrics is not None:
            self.metrics.close()
        if self.containers is not None:
            await self.containers.shutdown()
        if self.volumes is not None:
            await self.volumes.close()
        if self.ctrd is not None:
            await self.ctrd.close()


async def default_snapshotter(ctrd) -> str:
    """The snapshotter to use when ``[engine] snapshotter`` names none:
    ``overlayfs`` when containerd has it working, else the first snapshotter
    it loaded (``native`` under store_native)."""
    from pallet.core.errors import PalletError

    try:
        found = await ctrd.plugins(["type==io.containerd.snapshotter.v1"])
    except PalletError as e:
        log.warning("snapshotters of containerd: %s; using overlayfs", e)
        return "overlayfs"
    loaded = [p.id for p in found if not p.init_err.code]
    return "overlayfs" if "overlayfs" in loaded or not loaded else loaded[0]
