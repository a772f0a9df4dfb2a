"""containerd.services.diff.v1.Diff: Apply (a layer onto mounts) and Diff (the
changes between two mount sets, as a layer blob in the content store)."""
from __future__ import annotations

from pallet.proto.containerd.services.diff.v1 import diff_pb2 as pb
from pallet.proto.containerd.services.diff.v1 import diff_pb2_grpc

from pallet.containerd_services import convert
from pallet.plugins.api_grpc.rpc import lease_of, namespace_of, unary


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
        ns, lease = namespace_of(context), lease_of(context)

        def committed(digest: str, labels: dict, fresh: bool) -> None:
            # the blob belongs to the caller's namespace (and lease), as a
            # Content.Write's does
            self.b.content_namespaces.add(ns, digest, labels, fresh=fresh)
            if lease:
                self.b.lease_add(ns, lease, digest, "content")

        desc = self.b.diff_compare([convert.mount_model(m) for m in request.left],
                                   [convert.mount_model(m) for m in request.right],
                                   media_type=request.media_type, ref=request.ref,
                                   labels=dict(request.labels), committed=committed)
        return pb.DiffResponse(diff=convert.descriptor_pb(desc))


def register(server, backend) -> None:
    diff_pb2_grpc.add_DiffServicer_to_server(DiffService(backend), server)
