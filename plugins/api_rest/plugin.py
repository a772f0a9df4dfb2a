"""api_rest: the ``client_protocol`` role (dockerd's place in the chain).

Wiring only: the Docker Engine API is served by ``frontend.Frontend`` (aiohttp
app in ``server.py``, handlers in ``handlers_*.py``, services in
``containers.py``, ``images.py``, ``system.py``).  Configuration
(``[plugins.api_rest]``): ``runtime`` is the containerd runtime name given to
new containers (default ``io.containerd.runc.v2``), ``cgroup_parent`` the
cgroup under which containers go (default ``/pallet``), ``volume-plugin-dirs``
where volume plugins are looked for (default docker's: /run/docker/plugins,
/etc/docker/plugins, /usr/lib/docker/plugins).
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "client_protocol"


@hookimpl
def pallet_provide_client_protocol(kernel):
    from .frontend import Frontend

    cfg = kernel.plugin_config("api_rest")
    return Frontend(kernel, containerd_address=kernel.ext.get("containerd_address")
                    or kernel.paths.containerd_socket,
                    runtime=cfg.get("runtime") or "io.containerd.runc.v2",
                    cgroup_parent=cfg.get("cgroup_parent") or "/pallet",
                    debug=bool(kernel.ext.get("debug")),
                    live_restore=bool(kernel.ext.get("live_restore")),
                    volume_plugin_dirs=cfg.get("volume-plugin-dirs"))

