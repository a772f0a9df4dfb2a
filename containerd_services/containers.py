"""containerd's Containers service over the image store's metadata.

The records live in the image store's metadata (``store.metadata``, see
:mod:`pallet.imagestore.containers`), next to images and leases, so that
its garbage collector keeps what a container holds.  This module only
translates containerd's ``Container`` messages to and from those records;
the checks and update rules are the metadata's.
"""
from __future__ import annotations

from typing import Callable

from google.protobuf import any_pb2

from pallet.proto.containerd.services.containers.v1 import containers_pb2
from pallet.imagestore.containers import ContainerRecord, TypedValue

from pallet.containerd_services import convert


def _value(a: any_pb2.Any) -> TypedValue:
    return TypedValue(a.type_url, a.value)


def _any(v: TypedValue) -> any_pb2.Any:
    return any_pb2.Any(type_url=v.type_url, value=v.value)


def record_of(c: containers_pb2.Container) -> ContainerRecord:
    """The metadata record of a Container message (times are the store's)."""
    return ContainerRecord(
        id=c.id, runtime=c.runtime.name,
        runtime_options=_value(c.runtime.options) if c.runtime.HasField("options") else None,
        spec=_value(c.spec) if c.HasField("spec") else None, image=c.image,
        snapshotter=c.snapshotter, snapshot_key=c.snapshot_key, labels=dict(c.labels),
        extensions={k: _value(v) for k, v in c.extensions.items()})


def message_of(r: ContainerRecord) -> containers_pb2.Container:
    """The Container message of a metadata record."""
    c = containers_pb2.Container(id=r.id, image=r.image, snapshotter=r.snapshotter,
                                 snapshot_key=r.snapshot_key, labels=dict(r.labels))
    c.runtime.name = r.runtime
    if r.runtime_options is not None:
        c.runtime.options.CopyFrom(_any(r.runtime_options))
    if r.spec is not None:
        c.spec.CopyFrom(_any(r.spec))
    for k, v in r.extensions.items():
        c.extensions[k].CopyFrom(_any(v))
    c.created_at.CopyFrom(convert.ts(r.created_at))
    c.updated_at.CopyFrom(convert.ts(r.updated_at))
    return c


class ContainerStore:
    """Create, read, update and delete Container messages in a namespace;
    ``store_of()`` gives the image store (provided on first use)."""

    def __init__(self, store_of: Callable[[], object]):
        self._store_of = store_of

    @property
    def _metadata(self):
        return self._store_of().metadata

    def create(self, ns: str, c: containers_pb2.Container) -> containers_pb2.Container:
        return message_of(self._metadata.create_container(ns, record_of(c)))

    def get(self, ns: str, cid: str) -> containers_pb2.Container:
        return message_of(self._metadata.get_container(ns, cid))

    def list(self, ns: str, filter_strings=()) -> list[containers_pb2.Container]:
        return [message_of(r) for r in self._metadata.list_containers(ns, list(filter_strings))]

    def update(self, ns: str, new: containers_pb2.Container,
               paths=()) -> containers_pb2.Container:
        """containerd's Update: the mask names the fields to change (see
        :meth:`pallet.imagestore.containers.ContainerRecords.update_container`)."""
        return message_of(self._metadata.update_container(ns, record_of(new), list(paths)))

    def delete(self, ns: str, cid: str) -> None:
        self._metadata.delete_container(ns, cid)
