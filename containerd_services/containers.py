"""Container records per containerd namespace, in SQLite (WAL).

The table lives in pallet-containerd's metadata file
(``paths.metadata_db``), next to the image store's tables.  Each row keeps
the whole ``Container`` message serialised, so that fields containerd adds
later survive a round trip; namespace and id are columns for lookups.
"""
from __future__ import annotations

import re

from pallet.core.errors import AlreadyExists, InvalidArgument, NotFound
from pallet.proto.containerd.services.containers.v1 import containers_pb2
from pallet.imagestore.sqlite import Database

from pallet.containerd_services import convert
from pallet.containerd import filters

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (namespace, id)
);
"""
# containerd's identifiers package (namespaces, containers, leases)
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
_MUTABLE = ("labels", "spec", "extensions", "image", "snapshotkey")


def validate_id(kind: str, value: str) -> None:
    if not value or len(value) > 76 or not _IDENTIFIER.match(value):
        raise InvalidArgument(f"{kind} {value!r}: identifier must match "
                              f"{_IDENTIFIER.pattern} and be at most 76 characters: "
                              "invalid argument")


def _adapt(c: containers_pb2.Container, path: tuple) -> tuple:
    head, rest = path[0], path[1:]
    if not rest and head in ("id", "image", "snapshotter"):
        return True, getattr(c, head)
    if head == "runtime" and rest == ("name",):
        return True, c.runtime.name
    if head == "labels" and rest:
        return filters.labels_field(c.labels, rest)
    return False, ""


class ContainerStore:
    """Create, read, update and delete Container records (thread-safe)."""

    def __init__(self, path: str):
        self.path = path
        self.db = Database(path, _SCHEMA)

    def _tx(self):
        return self.db.transaction()

    @staticmethod
    def _load(blob: bytes) -> containers_pb2.Container:
        c = containers_pb2.Container()
        c.ParseFromString(blob)
        return c

    def _row(self, conn, ns: str, cid: str):
        row = conn.execute("SELECT record FROM containers WHERE namespace=? AND id=?",
                           (ns, cid)).fetchone()
        if row is None:
            raise NotFound(f'container "{cid}" in namespace "{ns}": not found')
        return self._load(row[0])

    def create(self, ns: str, c: containers_pb2.Container) -> containers_pb2.Container:
        validate_id("container id", c.id)
        if not c.runtime.name:
            raise InvalidArgument("container.Runtime.Name must be set: invalid argument")
        if not c.HasField("spec") or not c.spec.type_url:
            raise InvalidArgument("container.Spec must be set: invalid argument")
        if c.snapshot_key and not c.snapshotter:
            raise InvalidArgument("container.Snapshotter must be set if container.SnapshotKey "
                                  "is set: invalid argument")
        c = containers_pb2.Container.FromString(c.SerializeToString())
        now = convert.now_ts()
        c.created_at.CopyFrom(now)
        c.updated_at.CopyFrom(now)
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM containers WHERE namespace=? AND id=?",
                            (ns, c.id)).fetchone():
                raise AlreadyExists(f'container "{c.id}": already exists')
            conn.execute("INSERT INTO containers(namespace, id, record) VALUES(?,?,?)",
                         (ns, c.id, c.SerializeToString()))
        return c

    def get(self, ns: str, cid: str) -> containers_pb2.Container:
        with self.db.read() as conn:
            return self._row(conn, ns, cid)

    def list(self, ns: str, filter_strings=()) -> list[containers_pb2.Container]:
        with self.db.read() as conn:
            rows = conn.execute("SELECT record FROM containers WHERE namespace=? ORDER BY id",
                                (ns,)).fetchall()
        return filters.select([self._load(r[0]) for r in rows], list(filter_strings), _adapt)

    def count(self, ns: str) -> int:
        with self.db.read() as conn:
            return conn.execute("SELECT count(*) FROM containers WHERE namespace=?",
                                (ns,)).fetchone()[0]

    def update(self, ns: str, new: containers_pb2.Container,
               paths=()) -> containers_pb2.Container:
        """Apply an update as containerd does: the mask names the fields to change
        (``labels``, ``labels.KEY``, ``spec``, ``extensions``, ``extensions.KEY``,
        ``image``, ``snapshotkey``); no mask changes every mutable field."""
        if not new.id:
            raise InvalidArgument("container id must not be empty: invalid argument")
        with self._tx() as conn:
            c = self._row(conn, ns, new.id)
            for path in (list(paths) or list(_MUTABLE)):
                head, _, key = path.partition(".")
                if head == "labels" and key:
                    if key in new.labels:
                        c.labels[key] = new.labels[key]
                    else:
                        c.labels.pop(key, None)
                elif head == "labels":
                    c.labels.clear()
                    c.labels.update(new.labels)
                elif head == "extensions" and key:
                    if key in new.extensions:
                        c.extensions[key].CopyFrom(new.extensions[key])
                    else:
                        c.extensions.pop(key, None)
                elif head == "extensions":
                    c.extensions.clear()
                    for k, v in new.extensions.items():
                        c.extensions[k].CopyFrom(v)
                elif head == "spec":
                    if not new.HasField("spec"):
                        raise InvalidArgument("container.Spec must be set: invalid argument")
                    c.spec.CopyFrom(new.spec)
                elif head == "image":
                    c.image = new.image
                elif head in ("snapshotkey", "snapshot_key"):
                    c.snapshot_key = new.snapshot_key
                else:
                    raise InvalidArgument(f"cannot update {path!r} field on {new.id!r}: "
                                          "invalid argument")
            c.updated_at.CopyFrom(convert.now_ts())
            conn.execute("UPDATE containers SET record=? WHERE namespace=? AND id=?",
                         (c.SerializeToString(), ns, c.id))
        return c

    def delete(self, ns: str, cid: str) -> None:
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM containers WHERE namespace=? AND id=?", (ns, cid))
            if cur.rowcount == 0:
                raise NotFound(f'container "{cid}" in namespace "{ns}": not found')

    def close(self) -> None:
        self.db.close()

