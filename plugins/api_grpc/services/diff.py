"""containerd.services.diff.v1.Diff (Apply; Diff answers UNIMPLEMENTED)."""
from __future__ import annotations

from pallet.core import errors
from pallet.proto.containerd.services.diff.v1 import diff_pb2 as pb
from pallet.proto.containerd.services.diff.v1 import diff_pb2_grpc

from pallet.containerd_services import convert
from pallet.plugins.api_grpc.rpc import namespace_of, unary


class DiffService(diff_pb2_grpc.DiffServicer):
    def __init__(self, backend):
        self.b = backend

    @unary
    def Apply(self, request, context):
        # the layer is read from the namespace's content, as containerd's differ does
        self.b.content_namespaces.check(namespace_of(context), request.diff.digest)
        applied = self.b.diff_apply(convert.descriptor_model(request.diff),
                                    [convert.mount_model(m) for m in request.mounts])
        return pb.ApplyResponse(applied=convert.descriptor_pb(applied))

    @unary
    def Diff(self, request, context):
        raise errors.NotImplementedYet("diff of two mounts is not implemented by pallet-containerd")


def register(server, backend) -> None:
    diff_pb2_grpc.add_DiffServicer_to_server(DiffService(backend), server)
