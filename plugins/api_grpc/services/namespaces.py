"""containerd.services.namespaces.v1.Namespaces."""
from __future__ import annotations

from google.protobuf import empty_pb2

from pallet.proto.containerd.services.namespaces.v1 import namespace_pb2 as pb
from pallet.proto.containerd.services.namespaces.v1 import namespace_pb2_grpc

from pallet.plugins.api_grpc.rpc import unary


def _ns(n) -> pb.Namespace:
    return pb.Namespace(name=n.name, labels=dict(n.labels))


class NamespacesService(namespace_pb2_grpc.NamespacesServicer):
    def __init__(self, backend):
        self.b = backend

    @unary
    def Get(self, request, context):
        return pb.GetNamespaceResponse(namespace=_ns(self.b.namespace_get(request.name)))

    @unary
    def List(self, request, context):
        return pb.ListNamespacesResponse(namespaces=[_ns(n) for n in self.b.namespace_list()])

    @unary
    def Create(self, request, context):
        n = self.b.namespace_create(request.namespace.name, dict(request.namespace.labels))
        return pb.CreateNamespaceResponse(namespace=_ns(n))

    @unary
    def Update(self, request, context):
        n = self.b.namespace_update(request.namespace.name, dict(request.namespace.labels),
                                    list(request.update_mask.paths))
        return pb.UpdateNamespaceResponse(namespace=_ns(n))

    @unary
    def Delete(self, request, context):
        self.b.namespace_delete(request.name)
        return empty_pb2.Empty()


def register(server, backend) -> None:
    namespace_pb2_grpc.add_NamespacesServicer_to_server(NamespacesService(backend), server)
