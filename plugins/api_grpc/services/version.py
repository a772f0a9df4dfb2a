"""containerd.services.version.v1.Version."""
from __future__ import annotations

from pallet.proto.containerd.services.version.v1 import version_pb2, version_pb2_grpc

from pallet.plugins.api_grpc.rpc import unary


class VersionService(version_pb2_grpc.VersionServicer):
    def __init__(self, backend):
        self.b = backend

    @unary
    def Version(self, request, context):
        return version_pb2.VersionResponse(version=self.b.version, revision=self.b.revision)


def register(server, backend) -> None:
    version_pb2_grpc.add_VersionServicer_to_server(VersionService(backend), server)
