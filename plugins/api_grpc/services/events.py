"""containerd.services.events.v1.Events (and the ttrpc Forward shims call)."""
from __future__ import annotations

from google.protobuf import empty_pb2

from pallet.core import errors
from pallet.proto.containerd.services.events.v1 import events_pb2_grpc

from pallet.plugins.api_grpc.rpc import namespace_of, stream, unary


class EventsService(events_pb2_grpc.EventsServicer):
    def __init__(self, backend):
        self.b = backend

    @unary
    def Publish(self, request, context):
        ns = namespace_of(context)
        if not request.topic.startswith("/"):
            raise errors.InvalidArgument(f"envelope topic {request.topic!r}: must start with '/'"
                                         ": invalid argument")
        self.b.exchange.publish(ns, request.topic, request.event)
        return empty_pb2.Empty()

    @unary
    def Forward(self, request, context):
        self.b.exchange.forward(request.envelope)
        return empty_pb2.Empty()

    @stream
    def Subscribe(self, request, context):
        yield from self.b.exchange.subscribe(list(request.filters), context.is_active)


def register(server, backend) -> None:
    events_pb2_grpc.add_EventsServicer_to_server(EventsService(backend), server)
