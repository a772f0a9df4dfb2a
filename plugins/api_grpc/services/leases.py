"""containerd.services.leases.v1.Leases.

Leases are recorded (pallet's GC honours them through the image store);
their expiry label is kept as given.
"""
from __future__ import annotations

import secrets

from google.protobuf import empty_pb2

from pallet.proto.containerd.services.leases.v1 import leases_pb2 as pb
from pallet.proto.containerd.services.leases.v1 import leases_pb2_grpc

from pallet.containerd_services import convert
from pallet.containerd import filters
from pallet.plugins.api_grpc.rpc import namespace_of, unary


def lease_pb(lease) -> pb.Lease:
    return pb.Lease(id=lease.id, labels=dict(lease.labels), created_at=convert.ts(lease.created_at))


def _adapt(lease, path):
    if path == ("id",):
        return True, lease.id
    if path[0] == "labels" and len(path) > 1:
        return filters.labels_field(lease.labels, path[1:])
    return False, ""


class LeasesService(leases_pb2_grpc.LeasesServicer):
    def __init__(self, backend):
        self.b = backend

    @property
    def meta(self):
        return self.b.metadata

    @unary
    def Create(self, request, context):
        lease_id = request.id or secrets.token_hex(16)
        lease = self.meta.create_lease(namespace_of(context), lease_id, dict(request.labels))
        return pb.CreateResponse(lease=lease_pb(lease))

    @unary
    def Delete(self, request, context):
        self.meta.delete_lease(namespace_of(context), request.id)
        return empty_pb2.Empty()

    @unary
    def List(self, request, context):
        leases = filters.select(self.meta.list_leases(namespace_of(context)),
                                list(request.filters), _adapt)
        return pb.ListResponse(leases=[lease_pb(x) for x in leases])

    @unary
    def AddResource(self, request, context):
        self.meta.add_lease_resource(namespace_of(context), request.id,
                                     self.b.lease_resource(request.resource.id,
                                                           request.resource.type))
        return empty_pb2.Empty()

    @unary
    def DeleteResource(self, request, context):
        self.meta.delete_lease_resource(namespace_of(context), request.id,
                                        self.b.lease_resource(request.resource.id,
                                                              request.resource.type))
        return empty_pb2.Empty()

    @unary
    def ListResources(self, request, context):
        res = self.meta.list_lease_resources(namespace_of(context), request.id)
        return pb.ListResourcesResponse(resources=[pb.Resource(id=r.id, type=r.type) for r in res])


def register(server, backend) -> None:
    leases_pb2_grpc.add_LeasesServicer_to_server(LeasesService(backend), server)
