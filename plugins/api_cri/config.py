"""api_cri's settings (``[plugins.api_cri]``), read once at start-up, with
containerd's CRI plugin's names and defaults where it has them::

    sandbox_image = ""                 # "" : pallet holds the pod's namespaces itself
    stream_server_address = "127.0.0.1"
    stream_server_port = 0             # 0: a free port
    stream_idle_timeout = 14400        # seconds a streaming connection may stay idle
    snapshotter = ""                   # "" : the image store's default
    default_runtime = "io.containerd.pallet.v2"    # pallet-shim (containerd: runc's)
    runtimes = { runc = "io.containerd.runc.v2", pallet = "io.containerd.pallet.v2" }
                                       # RuntimeClass handler -> runtime name
    max_container_log_line_size = 16384
    enable_unprivileged_ports = false
    enable_unprivileged_icmp = false
    restrict_oom_score_adj = false
    disable_cgroup = false

    [plugins.api_cri.cni]
    conf_dir = "/etc/cni/net.d"
    bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]   # containerd: bin_dir (one)
    max_conf_num = 1
    conf_template = ""                 # written to conf_dir with the pod CIDR of UpdateRuntimeConfig
    cache_dir = ""                     # "" : {containerd root}/io.containerd.grpc.v1.cri/cni
"""
from __future__ import annotations

import os

import attrs

from pallet.core.errors import ConfigError, InvalidArgument

NAMESPACE = "k8s.io"
#: containerd's names for the CRI plugin's directories under its root and state
PLUGIN_DIR = "io.containerd.grpc.v1.cri"


def _tuple(value) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value or ())


@attrs.frozen
class CRIConfig:
    root: str
    state: str
    sandbox_image: str = ""
    stream_server_address: str = "127.0.0.1"
    stream_server_port: int = 0
    stream_idle_timeout: float = 4 * 3600.0
    snapshotter: str = ""
    default_runtime: str = "io.containerd.pallet.v2"
    runtimes: dict = attrs.field(factory=lambda: {"runc": "io.containerd.runc.v2",
                                                  "pallet": "io.containerd.pallet.v2"})
    max_container_log_line_size: int = 16 * 1024
    enable_unprivileged_ports: bool = False
    enable_unprivileged_icmp: bool = False
    restrict_oom_score_adj: bool = False
    disable_cgroup: bool = False
    cni_conf_dir: str = "/etc/cni/net.d"
    cni_bin_dirs: tuple[str, ...] = ("/opt/cni/bin", "/usr/lib/cni")
    cni_max_conf_num: int = 1
    cni_conf_template: str = ""
    cni_cache_dir: str = ""

    @classmethod
    def load(cls, section: dict, root: str, state: str) -> "CRIConfig":
        """From the plugin's configuration section; ``ConfigError`` names a bad key."""
        section = dict(section or {})
        cni = dict(section.pop("cni", None) or {})
        known = {f.name for f in attrs.fields(cls)}
        kw: dict = {}
        for key, value in section.items():
            name = key.replace("-", "_")
            if name not in known or name.startswith("cni_") or name in ("root", "state"):
                raise ConfigError(f"[plugins.api_cri]: unknown key {key!r}")
            kw[name] = value
        for key, value in cni.items():
            name = "cni_" + key.replace("-", "_")
            if name == "cni_bin_dir":
                name = "cni_bin_dirs"
            if name not in known:
                raise ConfigError(f"[plugins.api_cri.cni]: unknown key {key!r}")
            kw[name] = value
        try:
            if "cni_bin_dirs" in kw:
                kw["cni_bin_dirs"] = _tuple(kw["cni_bin_dirs"])
            for name in ("stream_server_port", "max_container_log_line_size",
                         "cni_max_conf_num"):
                if name in kw:
                    kw[name] = int(kw[name])
            if "stream_idle_timeout" in kw:
                kw["stream_idle_timeout"] = float(kw["stream_idle_timeout"])
            if not isinstance(kw.get("runtimes", {}), dict):
                raise ValueError("runtimes must be a table of handler = runtime name")
        except (TypeError, ValueError) as e:
            raise ConfigError(f"[plugins.api_cri]: {e}") from None
        return cls(root=root, state=state, **kw)

    # --- where things live ----------------------------------------------------------------
    @property
    def plugin_root(self) -> str:
        return os.path.join(self.root, PLUGIN_DIR)

    @property
    def plugin_state(self) -> str:
        return os.path.join(self.state, PLUGIN_DIR)

    def sandbox_root(self, sid: str) -> str:
        """Files that outlive a reboot's tmpfs: hostname, hosts, resolv.conf, status."""
        return os.path.join(self.plugin_root, "sandboxes", sid)

    def sandbox_state(self, sid: str) -> str:
        """The pod's /dev/shm."""
        return os.path.join(self.plugin_state, "sandboxes", sid)

    def container_root(self, cid: str) -> str:
        return os.path.join(self.plugin_root, "containers", cid)

    def container_io(self, cid: str) -> str:
        return os.path.join(self.plugin_state, "containers", cid, "io")

    @property
    def ns_dir(self) -> str:
        """Where pods' namespaces are pinned (one shared mount point for all)."""
        return os.path.join(self.plugin_state, "ns")

    @property
    def cni_cache(self) -> str:
        return self.cni_cache_dir or os.path.join(self.plugin_root, "cni")

    def runtime_for(self, handler: str) -> str:
        """The containerd runtime name of a RuntimeClass handler ("" : the default)."""
        if not handler:
            return self.default_runtime
        runtime = self.runtimes.get(handler)
        if runtime is None:
            raise InvalidArgument(f'no runtime for "{handler}" is configured')
        return runtime
