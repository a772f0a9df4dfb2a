"""containerd.services.containers.v1.Containers."""
from __future__ import annotations

from google.protobuf import empty_pb2

from pallet.proto.containerd.services.containers.v1 import containers_pb2 as pb
from pallet.proto.containerd.services.containers.v1 import containers_pb2_grpc

from pallet.plugins.api_grpc.rpc import namespace_of, stream, unary


class ContainersService(containers_pb2_grpc.ContainersServicer):
    def __init__(self, backend):
        self.b = backend

    @unary
    def Get(self, request, context):
        return pb.GetContainerResponse(
            container=self.b.containers.get(namespace_of(context), request.id))

    @unary
    def List(self, request, context):
        return pb.ListContainersResponse(
            containers=self.b.containers.list(namespace_of(context), list(request.filters)))

    @stream
    def ListStream(self, request, context):
        for c in self.b.containers.list(namespace_of(context), list(request.filters)):
            yield pb.ListContainerMessage(container=c)

    @unary
    def Create(self, request, context):
        return pb.CreateContainerResponse(
            container=self.b.container_create(namespace_of(context), request.container))

    @unary
    def Update(self, request, context):
        c = self.b.container_update(namespace_of(context), request.container,
                                    list(request.update_mask.paths))
        return pb.UpdateContainerResponse(container=c)

    @unary
    def Delete(self, request, context):
        self.b.container_delete(namespace_of(context), request.id)
        return empty_pb2.Empty()


def register(server, backend) -> None:
    containers_pb2_grpc.add_ContainersServicer_to_server(ContainersService(backend), server)
