"""Conversions between the engine's objects and containerd's protobuf messages."""
from __future__ import annotations

import datetime
import time

from google.protobuf import timestamp_pb2

from pallet.proto.containerd.types import descriptor_pb2, mount_pb2


def ts(value) -> timestamp_pb2.Timestamp:
    """A Timestamp from a datetime, epoch seconds (float) or epoch nanoseconds (int)."""
    out = timestamp_pb2.Timestamp()
    if value is None:
        return out
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        out.FromDatetime(value)
    elif isinstance(value, int) and value > 10**12:
        out.FromNanoseconds(value)
    else:
        out.FromNanoseconds(int(float(value) * 1e9))
    return out


def now_ts() -> timestamp_pb2.Timestamp:
    return ts(time.time_ns())


def descriptor_pb(d) -> descriptor_pb2.Descriptor:
    """A Descriptor message from pallet.core.models.Descriptor, a dict or a message."""
    if isinstance(d, descriptor_pb2.Descriptor):
        return d
    if isinstance(d, dict):
        return descriptor_pb2.Descriptor(
            media_type=d.get("mediaType", d.get("media_type", "")), digest=d["digest"],
            size=int(d.get("size", 0)), annotations=dict(d.get("annotations") or {}))
    return descriptor_pb2.Descriptor(media_type=d.media_type, digest=d.digest, size=d.size,
                                     annotations=dict(d.annotations or ()))


def descriptor_model(d: descriptor_pb2.Descriptor):
    from pallet.core.models import Descriptor

    return Descriptor(media_type=d.media_type, digest=d.digest, size=d.size,
                      annotations=tuple(sorted(d.annotations.items())))


def mount_pb(m) -> mount_pb2.Mount:
    if isinstance(m, mount_pb2.Mount):
        return m
    if isinstance(m, dict):
        return mount_pb2.Mount(type=m.get("type", ""), source=m.get("source", ""),
                               target=m.get("target", ""), options=list(m.get("options", ())))
    return mount_pb2.Mount(type=m.type, source=m.source, target=getattr(m, "target", "") or "",
                           options=list(m.options))


def mount_model(m: mount_pb2.Mount):
    from pallet.core.models import Mount

    return Mount(type=m.type, source=m.source, options=tuple(m.options), target=m.target)


def mount_dict(m: mount_pb2.Mount) -> dict:
    return {"type": m.type, "source": m.source, "target": m.target, "options": list(m.options)}
