"""The protos of pallet.proto against the descriptors compiled into containerd 1.6.

Go binaries built with gogo/golang protobuf carry every .proto's descriptor
(gzipped FileDescriptorProto); each message, enum and service of ours must
match containerd's field for field: name, number, type, label and message type.
"""
from __future__ import annotations

import importlib
import os
import zlib

import pytest
from google.protobuf import descriptor_pb2

CONTAINERD = "/usr/bin/containerd"
PREFIX = "github.com/containerd/containerd/"
OURS = {
    "api/services/containers/v1/containers.proto": "containerd.services.containers.v1.containers_pb2",
    "api/services/content/v1/content.proto": "containerd.services.content.v1.content_pb2",
    "api/services/diff/v1/diff.proto": "containerd.services.diff.v1.diff_pb2",
    "api/services/events/v1/events.proto": "containerd.services.events.v1.events_pb2",
    "api/services/images/v1/images.proto": "containerd.services.images.v1.images_pb2",
    "api/services/introspection/v1/introspection.proto":
        "containerd.services.introspection.v1.introspection_pb2",
    "api/services/leases/v1/leases.proto": "containerd.services.leases.v1.leases_pb2",
    "api/services/namespaces/v1/namespace.proto": "containerd.services.namespaces.v1.namespace_pb2",
    "api/services/snapshots/v1/snapshots.proto": "containerd.services.snapshots.v1.snapshots_pb2",
    "api/services/tasks/v1/tasks.proto": "containerd.services.tasks.v1.tasks_pb2",
    "api/services/version/v1/version.proto": "containerd.services.version.v1.version_pb2",
    "api/services/ttrpc/events/v1/events.proto":
        "containerd.services.ttrpc.events.v1.events_pb2",
    "api/types/descriptor.proto": "containerd.types.descriptor_pb2",
    "api/types/mount.proto": "containerd.types.mount_pb2",
    "api/types/platform.proto": "containerd.types.platform_pb2",
    "api/types/metrics.proto": "containerd.types.metrics_pb2",
    "api/types/task/task.proto": "containerd.types.task.task_pb2",
    "api/events/container.proto": "containerd.events.container_pb2",
    "api/events/content.proto": "containerd.events.content_pb2",
    "api/events/image.proto": "containerd.events.image_pb2",
    "api/events/namespace.proto": "containerd.events.namespace_pb2",
    "api/events/snapshot.proto": "containerd.events.snapshot_pb2",
    "api/events/task.proto": "containerd.events.task_pb2",
    "runtime/v2/task/shim.proto": "containerd.task.v2.shim_pb2",
}


def _embedded_descriptors(path: str) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    with open(path, "rb") as f:
        data = f.read()
    found = {}
    i = data.find(b"\x1f\x8b\x08")
    while i >= 0:
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[i:i + (1 << 20)])
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            if fd.name.endswith(".proto"):
                found[fd.name] = fd
        except Exception:  # not a descriptor: some other gzip stream, or no gzip at all
            pass
        i = data.find(b"\x1f\x8b\x08", i + 3)
    return found


def _shape(fd: descriptor_pb2.FileDescriptorProto) -> dict:
    """Everything that matters on the wire (and for names), without options."""
    out = {}

    def message(prefix, m):
        out[prefix + m.name] = sorted(
            (f.name, f.number, f.type, f.label, f.type_name) for f in m.field)
        for n in m.nested_type:
            message(prefix + m.name + ".", n)
        for e in m.enum_type:
            out[prefix + m.name + "." + e.name] = sorted((v.name, v.number) for v in e.value)

    for m in fd.message_type:
        message(fd.package + ".", m)
    for e in fd.enum_type:
        out[fd.package + "." + e.name] = sorted((v.name, v.number) for v in e.value)
    for s in fd.service:
        out[fd.package + "." + s.name] = sorted(
            (m.name, m.input_type, m.output_type, m.client_streaming, m.server_streaming)
            for m in s.method)
    out["package"] = fd.package
    return out


@pytest.fixture(scope="module")
def theirs():
    if not os.path.exists(CONTAINERD):
        pytest.skip("no /usr/bin/containerd")
    found = _embedded_descriptors(CONTAINERD)
    if not any(k.startswith(PREFIX) for k in found):
        pytest.skip("containerd binary carries no descriptors")
    return found


@pytest.mark.parametrize("their_name", sorted(OURS))
def test_same_wire_shape(theirs, their_name):
    mod = importlib.import_module("pallet.proto." + OURS[their_name])
    ours = descriptor_pb2.FileDescriptorProto()
    mod.DESCRIPTOR.CopyToProto(ours)
    assert _shape(ours) == _shape(theirs[PREFIX + their_name])
