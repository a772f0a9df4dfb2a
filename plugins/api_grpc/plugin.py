"""api_grpc: the ``containerd`` role, containerd's v1 gRPC API served by
pallet-containerd over its service layer (:mod:`pallet.containerd_services`).

Wiring only: the server is in ``server.py`` and the translators, one per
containerd service, in ``services/``.  Configuration (``[plugins.api_grpc]``):
``socket_gid``, the group of the socket (default root's).
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "containerd"


@hookimpl
def pallet_provide_containerd(kernel):
    from pallet.plugins.api_grpc.server import ContainerdServer

    return ContainerdServer(kernel, socket_group=kernel.plugin_config("api_grpc").get("socket_gid"))
