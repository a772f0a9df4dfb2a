"""containerd.services.images.v1.Images."""
from __future__ import annotations

import threading

from google.protobuf import empty_pb2

from pallet.proto.containerd.services.images.v1 import images_pb2 as pb
from pallet.proto.containerd.services.images.v1 import images_pb2_grpc

from pallet.containerd_services import convert
from pallet.plugins.api_grpc.rpc import namespace_of, unary

_GC_LOCK = threading.Lock()


def image_pb(img) -> pb.Image:
    return pb.Image(name=img.name, labels=dict(img.labels), target=convert.descriptor_pb(img.target),
                    created_at=convert.ts(img.created_at), updated_at=convert.ts(img.updated_at))


class ImagesService(images_pb2_grpc.ImagesServicer):
    def __init__(self, backend):
        self.b = backend

    @unary
    def Get(self, request, context):
        return pb.GetImageResponse(image=image_pb(self.b.image_get(namespace_of(context),
                                                                    request.name)))

    @unary
    def List(self, request, context):
        images = self.b.image_list(namespace_of(context), list(request.filters))
        return pb.ListImagesResponse(images=[image_pb(i) for i in images])

    @unary
    def Create(self, request, context):
        img = self.b.image_create(namespace_of(context), request.image)
        return pb.CreateImageResponse(image=image_pb(img))

    @unary
    def Update(self, request, context):
        img = self.b.image_update(namespace_of(context), request.image,
                                  list(request.update_mask.paths))
        return pb.UpdateImageResponse(image=image_pb(img))

    @unary
    def Delete(self, request, context):
        self.b.image_delete(namespace_of(context), request.name)
        if request.sync:
            # containerd 1.6 has no GC RPC: a synchronous delete is what runs a
            # collection before answering (its Delete with sync=true does the same)
            gc = getattr(self.b.store, "gc", None)
            if gc is not None:
                with _GC_LOCK:
                    gc()
        return empty_pb2.Empty()


def register(server, backend) -> None:
    images_pb2_grpc.add_ImagesServicer_to_server(ImagesService(backend), server)
