"""The object the ``client_protocol`` role provides: palletd's services and
its aiohttp app, served on the listeners palletd opened."""
from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("pallet.api_rest")

NAMESPACE = "moby"


class Services:
    """What the handlers reach through ``request.app["service"]``."""

    def __init__(self, containers, images, system, volumes=None, execs=None):
        self.containers = containers
        self.images = images
        self.system = system
        self.volumes = volumes
        self.execs = execs


class Frontend:
    def __init__(self, kernel, *, containerd_address: str, runtime: str,
                 cgroup_parent: str = "/pallet", debug: bool = False,
                 live_restore: bool = False, volume_plugin_dirs=None):
        from pallet.core.errors import ConfigError

        if volume_plugin_dirs is not None and (
                not isinstance(volume_plugin_dirs, list)
                or not all(isinstance(d, str) for d in volume_plugin_dirs)):
            raise ConfigError("configuration: [plugins.api_rest] volume-plugin-dirs must be a "
                              "list of directories")
        self.volume_plugin_dirs = volume_plugin_dirs
        self.kernel = kernel
        self.live_restore = live_restore
        self.containerd_address = containerd_address
        self.runtime = runtime
        self.cgroup_parent = cgroup_parent
        self.debug = debug
        self.services: Services | None = None
        self._stop = asyncio.Event()

    async def setup(self) -> Services:
        """Connect to containerd and load every container (before serving)."""
        from pallet.core.containerd import Containerd
        from pallet.plugins.api_rest.containers import ContainerService
        from pallet.plugins.api_rest.exec import ExecService
        from pallet.plugins.api_rest.images import ImageService
        from pallet.plugins.api_rest.system import SystemService
        from pallet.plugins.api_rest.volumes import VolumeService

        ctrd = Containerd(self.containerd_address, NAMESPACE)
        self.ctrd = ctrd
        images = ImageService(self.kernel, ctrd)
        volumes = VolumeService(self.kernel, plugin_dirs=self.volume_plugin_dirs)
        containers = ContainerService(self.kernel, ctrd, images, runtime=self.runtime,
                                      cgroup_parent=self.cgroup_parent, volumes=volumes,
                                      live_restore=self.live_restore)
        execs = ExecService(self.kernel, ctrd, containers)
        system = SystemService(self.kernel, ctrd, containers, images, debug=self.debug,
                               volumes=volumes)
        self.services = Services(containers, images, system, volumes, execs)
        await containers.restore()
        return self.services

    async def serve(self, listeners) -> None:
        """Serve the Docker Engine API on ``listeners`` (``(name, socket)`` pairs)
        until :meth:`stop`."""
        from pallet.plugins.api_rest.server import make_app, serve

        if self.services is None:
            await self.setup()
        app = make_app(self.kernel, self.services)
        try:
            await serve(app, listeners, self._stop)
        finally:
            await self.services.containers.shutdown()
            if self.services.volumes is not None:
                await self.services.volumes.close()
            await self.ctrd.close()

    def stop(self) -> None:
        self._stop.set()

