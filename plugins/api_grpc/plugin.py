"""api_grpc: containerd's v1 gRPC API, served by pallet-containerd.

Wiring only: the server lives in ``server.py``, the service layer in
``backend.py`` and the translators in ``services/``.
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "containerd"


@hookimpl
def pallet_provide_containerd(kernel):
    from pallet.plugins.api_grpc.server import ContainerdServer

    cfg = kernel.plugin_config("api_grpc")
    return ContainerdServer(kernel, shim_debug=bool(cfg.get("shim_debug", False)),
                            socket_group=cfg.get("socket_gid"))
