"""``/version`` and ``/info`` with the machine's real figures."""
from __future__ import annotations

import os
import platform
import socket
import time

import asyncio

from pallet.core import errors
from pallet.core.files import write_atomic
from pallet.engine.events import bus_of
from pallet.engine.security import security_options_info
from pallet.engine.stats import mem_total

try:
    from importlib.metadata import version as _dist_version
    PALLET_VERSION = _dist_version("pallet")
except Exception:  # noqa: BLE001 — running from a checkout without metadata
    PALLET_VERSION = "0.0.0"

#: the Docker Engine API version whose behaviour the engine follows, and the
#: oldest one it still answers (dockerd 24's)
API_VERSION = "1.43"
MIN_API_VERSION = "1.24"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def _os_release() -> tuple[str, str]:
    name, version = "Linux", ""
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        name = fields.get("PRETTY_NAME", name).strip('"')
        version = fields.get("VERSION_ID", "").strip('"')
    except OSError:
        pass
    return name, version


def _rfc3339_local() -> str:
    t = time.time()
    off = time.strftime("%z")
    off = off[:3] + ":" + off[3:] if off else "Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) + \
        f".{int((t % 1) * 1e9):09d}" + (off if off != "+00:00" else "Z")


class SystemService:
    def __init__(self, kernel, ctrd, containers, images, *, debug: bool = False,
                 volumes=None):
        self.kernel = kernel
        self.ctrd = ctrd
        self.containers = containers
        self.images = images
        self.volumes = volumes
        self.debug = debug
        self.started = time.time()

    async def _containerd_version(self) -> dict:
        try:
            return await self.ctrd.version()
        except errors.PalletError:
            return {"version": "", "revision": ""}

    async def version(self) -> dict:
        cv = await self._containerd_version()
        arch = _ARCH.get(platform.machine(), platform.machine())
        engine = {
            "Version": PALLET_VERSION, "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION, "GitCommit": "pallet",
            "GoVersion": f"python{platform.python_version()}", "Os": "linux", "Arch": arch,
            "KernelVersion": platform.release(), "BuildTime": "",
        }
        return {
            "Platform": {"Name": "pallet"},
            "Components": [
                {"Name": "Engine", "Version": PALLET_VERSION, "Details": {
                    k: engine[k] for k in ("ApiVersion", "Arch", "BuildTime", "GitCommit",
                                           "GoVersion", "KernelVersion", "MinAPIVersion", "Os")}
                 | {"Experimental": "false"}},
                {"Name": "containerd", "Version": cv["version"],
                 "Details": {"GitCommit": cv["revision"]}},
            ],
            **engine,
        }

    async def info(self) -> dict:
        counts = self.containers.counts()
        try:
            n_images = len(await self.images.all())
        except errors.PalletError:
            n_images = 0
        cv = await self._containerd_version()
        os_name, os_version = _os_release()
        cgroup_v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
        paths = self.kernel.paths
        runtime = self.containers.runtime
        return {
            "ID": _daemon_id(paths.data_root),
            "Containers": sum(counts.values()),
            "ContainersRunning": counts["running"],
            "ContainersPaused": counts["paused"],
            "ContainersStopped": counts["stopped"],
            "Images": n_images,
            "Driver": self.containers.snapshotter,
            "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
            "DockerRootDir": paths.data_root,
            "Plugins": self._plugins(),
            "MemoryLimit": True, "SwapLimit": os.path.exists(
                "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") or cgroup_v2,
            "KernelMemoryTCP": not cgroup_v2, "CpuCfsPeriod": True, "CpuCfsQuota": True,
            "CPUShares": True, "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True,
            "BridgeNfIptables": False, "BridgeNfIp6tables": False, "OomKillDisable": not cgroup_v2,
            "Debug": self.debug, "NFd": len(os.listdir("/proc/self/fd")),
            "NGoroutines": len(asyncio.all_tasks()), "SystemTime": _rfc3339_local(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if cgroup_v2 else "1",
            "NEventsListener": bus_of(self.kernel).listeners,
            "KernelVersion": platform.release(),
            "OperatingSystem": os_name, "OSVersion": os_version, "OSType": "linux",
            "Architecture": platform.machine(), "NCPU": os.cpu_count() or 1,
            "MemTotal": mem_total(), "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": None,
                               "AllowNondistributableArtifactsHostnames": None,
                               "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {},
                               "Mirrors": None},
            "GenericResources": None, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
            "Name": socket.gethostname(), "Labels": [], "ExperimentalBuild": False,
            "ServerVersion": PALLET_VERSION,
            "Runtimes": {runtime: {"path": runtime}}, "DefaultRuntime": runtime,
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                      "ControlAvailable": False, "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": bool(self.containers.live_restore), "Isolation": "",
            "InitBinary": "docker-init",
            "ContainerdCommit": {"ID": cv["revision"], "Expected": cv["revision"]},
            "RuncCommit": {"ID": "", "Expected": ""}, "InitCommit": {"ID": "", "Expected": ""},
            "SecurityOptions": security_options_info(),
            "Warnings": None,
        }


    def _plugins(self) -> dict:
        """docker's Plugins (drivers by kind), and pallet's own plugins loaded in
        this process as ``Pallet`` entries ``name (role) version``."""
        net = ["bridge", "host", "null"] if self.kernel.has_role("network") else ["host",
                                                                                  "null"]
        pallet = []
        try:
            for p in self.kernel.loaded_plugins():
                pallet.append(f"{p.name} ({p.role or 'extension'}) {p.version}")
        except Exception:  # noqa: BLE001 — information only
            pass
        return {"Volume": ["local"], "Network": net, "Authorization": None,
                "Log": ["json-file", "none"], "Pallet": sorted(pallet)}

    async def df(self) -> dict:
        """``/system/df``: images, containers (with sizes), volumes (with usage)."""
        from pallet.engine.volumes import usage

        try:
            records = await self.images.all()
        except errors.PalletError:
            records = []
        users = self.containers._users_of
        images = [rec.summary(len(users(rec.id))) for rec in records]
        for img in images:
            img["SharedSize"] = 0
        containers = []
        for entry in await self.containers.list(all=True, size=True):
            containers.append(entry)
        volumes = await usage(self.volumes) if self.volumes is not None else []
        return {"LayersSize": sum(rec.size for rec in records), "Images": images,
                "Containers": containers, "Volumes": volumes, "BuildCache": []}


def _daemon_id(data_root: str) -> str:
    """A stable id for this engine, kept in the data root (dockerd's engine-id)."""
    import uuid

    path = os.path.join(data_root, "engine-id")
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        pass
    ident = str(uuid.uuid4())
    try:
        os.makedirs(data_root, exist_ok=True)
        write_atomic(path, ident, fsync=False)
    except OSError:
        pass
    return ident
