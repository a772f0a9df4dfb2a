"""containerd.services.introspection.v1.Introspection."""
from __future__ import annotations

from pallet.proto.containerd.services.introspection.v1 import introspection_pb2 as pb
from pallet.proto.containerd.services.introspection.v1 import introspection_pb2_grpc
from pallet.proto.containerd.types import platform_pb2

from pallet.containerd import filters
from pallet.plugins.api_grpc.rpc import unary


def _adapt(p, path):
    if path in (("type",), ("id",)):
        return True, getattr(p, path[0])
    if path == ("capabilities",):
        return True, ",".join(p.capabilities)
    return False, ""


class IntrospectionService(introspection_pb2_grpc.IntrospectionServicer):
    def __init__(self, backend):
        self.b = backend

    @unary
    def Plugins(self, request, context):
        plugins = []
        for p in self.b.plugins():
            msg = pb.Plugin(type=p["type"], id=p["id"], requires=p.get("requires", ()),
                            exports=p.get("exports", {}),
                            capabilities=p.get("capabilities", ()),
                            platforms=[platform_pb2.Platform(**x) for x in p.get("platforms", ())])
            if p.get("error"):
                msg.init_err.code = 2
                msg.init_err.message = p["error"]
            plugins.append(msg)
        return pb.PluginsResponse(plugins=filters.select(plugins, list(request.filters), _adapt))

    @unary
    def Server(self, request, context):
        return pb.ServerResponse(uuid=self.b.uuid)


def register(server, backend) -> None:
    introspection_pb2_grpc.add_IntrospectionServicer_to_server(IntrospectionService(backend),
                                                              server)
