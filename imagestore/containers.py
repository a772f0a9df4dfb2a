"""Container records per containerd namespace, in the store's metadata.

The records of containerd's Containers service live here, in the same
database as images and leases, so that the garbage collector sees what a
container holds: its snapshot (``snapshot_key`` in ``snapshotter``), its
image and the ``containerd.io/gc.ref.*`` labels it carries, all kept while
the record exists (containerd's GC treats containers as roots).  The image
is remembered by its target when the container is made (or its image
changed), so that removing the image's name (``docker rmi -f``, ``ctr
images rm``) leaves the content a container was made from.  The checks and
the update rules are those of containerd's metadata layer.

:class:`ContainerRecords` is a part of :class:`~.metadata.MetadataStore`
(it uses its ``db``); the service layer translates the records to and from
containerd's messages.
"""
from __future__ import annotations

import base64
import datetime
import json
from typing import Mapping, Sequence

import attrs

from pallet.containerd import filters as _filters
from pallet.core.errors import AlreadyExists, InvalidArgument, NotFound
from pallet.core.models import Descriptor
from pallet.imagestore.db import (
    dump_labels,
    load_labels,
    now_ns,
    ns_to_datetime,
    validate_identifier)

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    id TEXT NOT NULL,
    image TEXT NOT NULL DEFAULT '',
    runtime TEXT NOT NULL,
    runtime_options TEXT,
    spec TEXT NOT NULL,
    snapshotter TEXT NOT NULL DEFAULT '',
    snapshot_key TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    extensions TEXT NOT NULL DEFAULT '{}',
    image_target TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
);
"""

#: what an update without field paths changes (containerd's metadata/containers.go)
MUTABLE = ("labels", "spec", "extensions", "image", "snapshotkey")


@attrs.frozen
class TypedValue:
    """An opaque typed value, kept as given: a protobuf ``Any`` (type URL and
    bytes) such as a container's OCI spec or its runtime options."""

    type_url: str
    value: bytes = b""


@attrs.frozen
class ContainerRecord:
    """A container of one namespace (containerd's containers.Container)."""

    id: str
    runtime: str = ""
    spec: TypedValue | None = None
    runtime_options: TypedValue | None = None
    image: str = ""
    snapshotter: str = ""
    snapshot_key: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict)
    extensions: Mapping[str, TypedValue] = attrs.field(factory=dict)
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None


def _dump_value(v: TypedValue | None) -> str | None:
    if v is None:
        return None
    return json.dumps([v.type_url, base64.b64encode(v.value).decode()])


def _load_value(text: str | None) -> TypedValue | None:
    if text is None:
        return None
    type_url, value = json.loads(text)
    return TypedValue(type_url, base64.b64decode(value))


def _record_of(row) -> ContainerRecord:
    return ContainerRecord(
        id=row["id"], runtime=row["runtime"], spec=_load_value(row["spec"]),
        runtime_options=_load_value(row["runtime_options"]), image=row["image"],
        snapshotter=row["snapshotter"], snapshot_key=row["snapshot_key"],
        labels=load_labels(row["labels"]),
        extensions={k: _load_value(v) for k, v in json.loads(row["extensions"]).items()},
        created_at=ns_to_datetime(row["created_at"]),
        updated_at=ns_to_datetime(row["updated_at"]))


def _check(c: ContainerRecord) -> None:
    """containerd's validateContainer (messages as containerd words them)."""
    try:
        validate_identifier("container id", c.id)
    except InvalidArgument as e:
        raise InvalidArgument(f"{e.message}: invalid argument") from None
    if not c.runtime:
        raise InvalidArgument("container.Runtime.Name must be set: invalid argument")
    if c.spec is None or not c.spec.type_url:
        raise InvalidArgument("container.Spec must be set: invalid argument")
    if c.snapshot_key and not c.snapshotter:
        raise InvalidArgument("container.Snapshotter must be set if container.SnapshotKey "
                              "is set: invalid argument")


def _field(c: ContainerRecord, path: tuple) -> tuple[bool, str]:
    head, rest = path[0], path[1:]
    if not rest and head in ("id", "image", "snapshotter"):
        return True, getattr(c, head)
    if head == "runtime" and rest == ("name",):
        return True, c.runtime
    if head == "labels" and rest:
        return _filters.labels_field(c.labels, rest)
    return False, ""


def _keyed_update(old: Mapping, new: Mapping, key: str) -> dict:
    """``labels``/``extensions`` with ``.KEY``: set KEY from ``new``, or drop it."""
    out = dict(old)
    if key in new:
        out[key] = new[key]
    else:
        out.pop(key, None)
    return out


def _updated(old: ContainerRecord, new: ContainerRecord,
             fieldpaths: Sequence[str]) -> ContainerRecord:
    changes: dict = {}
    for path in fieldpaths or MUTABLE:
        head, _, key = path.partition(".")
        if head in ("labels", "extensions"):
            current = changes.get(head, getattr(old, head))
            changes[head] = _keyed_update(current, getattr(new, head), key) if key \
                else dict(getattr(new, head))
        elif head == "spec":
            if new.spec is None:
                raise InvalidArgument("container.Spec must be set: invalid argument")
            changes["spec"] = new.spec
        elif head == "image":
            changes["image"] = new.image
        elif head in ("snapshotkey", "snapshot_key"):
            changes["snapshot_key"] = new.snapshot_key
        else:
            raise InvalidArgument(f"cannot update {path!r} field on {new.id!r}: "
                                  "invalid argument")
    return attrs.evolve(old, **changes)


class ContainerRecords:
    """The container table of :class:`~.metadata.MetadataStore` (needs ``self.db``
    and ``self._ensure_namespace``)."""

    @staticmethod
    def _container_row(conn, namespace: str, cid: str):
        row = conn.execute("SELECT * FROM containers WHERE namespace=? AND id=?",
                           (namespace, cid)).fetchone()
        if row is None:
            raise NotFound(f'container "{cid}" in namespace "{namespace}": not found')
        return row

    @staticmethod
    def _image_target(conn, namespace: str, image: str) -> str | None:
        """The target of image ``image`` of the namespace now (JSON), if there is one."""
        row = conn.execute("SELECT media_type, digest, size FROM images WHERE namespace=? "
                           "AND name=?", (namespace, image)).fetchone() if image else None
        return None if row is None else json.dumps(
            Descriptor(row["media_type"], row["digest"], row["size"]).to_oci())

    @staticmethod
    def _write_container(conn, namespace: str, c: ContainerRecord, image_target: str | None,
                         created: int, updated: int, insert: bool) -> None:
        values = (c.image, c.runtime, _dump_value(c.runtime_options), _dump_value(c.spec),
                  c.snapshotter, c.snapshot_key, dump_labels(c.labels),
                  json.dumps({k: _dump_value(v) for k, v in c.extensions.items()},
                             sort_keys=True), image_target, created, updated)
        if insert:
            conn.execute("INSERT INTO containers(image, runtime, runtime_options, spec, "
                         "snapshotter, snapshot_key, labels, extensions, image_target, "
                         "created_at, updated_at, namespace, id) "
                         "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)", (*values, namespace, c.id))
        else:
            conn.execute("UPDATE containers SET image=?, runtime=?, runtime_options=?, spec=?, "
                         "snapshotter=?, snapshot_key=?, labels=?, extensions=?, "
                         "image_target=?, created_at=?, updated_at=? "
                         "WHERE namespace=? AND id=?", (*values, namespace, c.id))

    def create_container(self, namespace: str, container: ContainerRecord) -> ContainerRecord:
        """Record a new container (``AlreadyExists`` if the id is taken); the
        times are set here."""
        _check(container)
        now = now_ns()
        with self.db.transaction() as conn:
            self._ensure_namespace(conn, namespace)
            if conn.execute("SELECT 1 FROM containers WHERE namespace=? AND id=?",
                            (namespace, container.id)).fetchone():
                raise AlreadyExists(f'container "{container.id}": already exists')
            self._write_container(conn, namespace, container,
                                  self._image_target(conn, namespace, container.image),
                                  now, now, insert=True)
        return self.get_container(namespace, container.id)

    def get_container(self, namespace: str, cid: str) -> ContainerRecord:
        """The container ``cid`` (``NotFound`` if absent)."""
        with self.db.read() as conn:
            return _record_of(self._container_row(conn, namespace, cid))

    def list_containers(self, namespace: str,
                        filters: Sequence[str] | str | None = None) -> list[ContainerRecord]:
        """The containers of a namespace by id, filtered with containerd's syntax on
        ``id``, ``image``, ``snapshotter``, ``runtime.name``, ``labels.KEY``."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM containers WHERE namespace=? ORDER BY id",
                                (namespace,)).fetchall()
        return _filters.select([_record_of(r) for r in rows], filters, _field)

    def update_container(self, namespace: str, container: ContainerRecord,
                         fieldpaths: Sequence[str] | None = None) -> ContainerRecord:
        """Change a container as containerd's Containers.Update does: the field
        paths (``labels``, ``labels.KEY``, ``spec``, ``extensions``,
        ``extensions.KEY``, ``image``, ``snapshotkey``) say what changes;
        none changes every mutable field."""
        if not container.id:
            raise InvalidArgument("container id must not be empty: invalid argument")
        with self.db.transaction() as conn:
            row = self._container_row(conn, namespace, container.id)
            new = _updated(_record_of(row), container, list(fieldpaths or ()))
            target = row["image_target"] if new.image == row["image"] \
                else self._image_target(conn, namespace, new.image)
            self._write_container(conn, namespace, new, target, row["created_at"], now_ns(),
                                  insert=False)
        return self.get_container(namespace, container.id)

    def delete_container(self, namespace: str, cid: str) -> None:
        """Remove the record; what it held (snapshot, image) is left to GC."""
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM containers WHERE namespace=? AND id=?",
                               (namespace, cid))
            if cur.rowcount == 0:
                raise NotFound(f'container "{cid}" in namespace "{namespace}": not found')

    def container_roots(self) -> list[tuple[str, ContainerRecord, Descriptor | None]]:
        """Every (namespace, container, target of the image it was made from):
        roots of GC."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM containers ORDER BY namespace, id").fetchall()
        return [(r["namespace"], _record_of(r), None if r["image_target"] is None
                 else Descriptor.from_oci(json.loads(r["image_target"]))) for r in rows]


def upgrade_containers_table(conn) -> None:
    """Turn the first layout of the table (``namespace, id, record``: the whole
    serialised containerd Container message, written by pallet-containerd
    itself) into this one's columns, so that GC sees those containers too."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(containers)")}
    if "record" not in columns:
        return
    from pallet.proto.containerd.services.containers.v1 import containers_pb2

    def value(any_) -> TypedValue:
        return TypedValue(any_.type_url, any_.value)

    old = conn.execute("SELECT namespace, id, record FROM containers").fetchall()
    conn.execute("DROP TABLE containers")
    conn.execute(SCHEMA)
    for ns, cid, blob in old:
        c = containers_pb2.Container.FromString(blob)
        conn.execute("INSERT OR IGNORE INTO namespaces(name, labels, created_at) "
                     "VALUES(?,?,?)", (ns, "{}", now_ns()))
        rec = ContainerRecord(
            id=cid, runtime=c.runtime.name, spec=value(c.spec),
            runtime_options=value(c.runtime.options) if c.runtime.HasField("options")
            else None, image=c.image, snapshotter=c.snapshotter,
            snapshot_key=c.snapshot_key, labels=dict(c.labels),
            extensions={k: value(v) for k, v in c.extensions.items()})
        ContainerRecords._write_container(
            conn, ns, rec, ContainerRecords._image_target(conn, ns, c.image),
            c.created_at.ToNanoseconds(), c.updated_at.ToNanoseconds(), insert=True)
