"""Content per containerd namespace, over the image store's shared blobs.

containerd keeps one copy of each blob on disk but records in its metadata
which namespaces hold it, with labels of their own: a blob written in
namespace A is not found in namespace B, until B writes it too (then the
write ends at once with ALREADY_EXISTS, the blob being added to B, as
containerd's "shared" content policy does); deleting it in B leaves A's.
This table (in pallet-containerd's metadata file) is that record.  The
store's own labels are the union of the namespaces' labels, so that its
garbage collector still sees every ``containerd.io/gc.ref.*`` label.

A blob without any row (written by another path than this service) is
visible in every namespace.
"""
from __future__ import annotations

import json
import time

import attrs

from pallet.core.errors import NotFound
from pallet.imagestore.sqlite import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS content_namespaces (
    namespace TEXT NOT NULL,
    digest TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, digest)
);
CREATE INDEX IF NOT EXISTS content_namespaces_digest ON content_namespaces(digest);
"""


@attrs.frozen
class Info:
    digest: str
    size: int
    created_at: int   # epoch nanoseconds
    updated_at: int
    labels: dict = attrs.field(factory=dict, eq=False)


class ContentNamespaces:
    """Which namespaces hold which blob, with their labels (thread-safe)."""

    def __init__(self, path: str, store_content):
        self.path = path
        self.content = store_content      # the image store's content store
        self.db = Database(path, _SCHEMA)

    # -- plumbing
    def _tx(self):
        return self.db.transaction()

    def _row(self, conn, ns: str, digest: str):
        return conn.execute("SELECT labels, created_at, updated_at FROM content_namespaces "
                            "WHERE namespace=? AND digest=?", (ns, digest)).fetchone()

    def _owned(self, conn, digest: str) -> bool:
        return conn.execute("SELECT 1 FROM content_namespaces WHERE digest=? LIMIT 1",
                            (digest,)).fetchone() is not None

    @staticmethod
    def _not_found(digest: str) -> NotFound:
        return NotFound(f"content digest {digest}: not found")

    def _sync_store_labels(self, conn, digest: str) -> None:
        union: dict = {}
        for (labels,) in conn.execute("SELECT labels FROM content_namespaces WHERE digest=? "
                                      "ORDER BY updated_at", (digest,)):
            union.update(json.loads(labels))
        try:
            self.content.update(digest, union, None)
        except NotFound:
            pass

    # -- queries
    def info(self, ns: str, digest: str) -> Info:
        store = self.content.info(digest)  # NotFound when the blob is gone
        with self.db.read() as conn:
            row = self._row(conn, ns, digest)
            owned = row is None and self._owned(conn, digest)
        if row is None:
            if owned:
                raise self._not_found(digest)
            return Info(digest, store.size, _ns(store.created_at), _ns(store.updated_at),
                        dict(store.labels))
        return Info(digest, store.size, row[1], row[2], json.loads(row[0]))

    def check(self, ns: str, digest: str) -> None:
        """NotFound unless ``digest`` is visible in ``ns``."""
        self.info(ns, digest)

    def list(self, ns: str) -> list[Info]:
        with self.db.read() as conn:
            mine = {d: (json.loads(lab), c, u) for d, lab, c, u in conn.execute(
                "SELECT digest, labels, created_at, updated_at FROM content_namespaces "
                "WHERE namespace=?", (ns,))}
            owned = {d for (d,) in conn.execute(
                "SELECT DISTINCT digest FROM content_namespaces")}
        out = []
        for info in self.content.list():
            if info.digest in mine:
                labels, created, updated = mine[info.digest]
                out.append(Info(info.digest, info.size, created, updated, labels))
            elif info.digest not in owned:
                out.append(Info(info.digest, info.size, _ns(info.created_at),
                                _ns(info.updated_at), dict(info.labels)))
        return out

    def list_namespace_digests(self, ns: str) -> list[str]:
        with self.db.read() as conn:
            return [d for (d,) in conn.execute(
                "SELECT digest FROM content_namespaces WHERE namespace=?", (ns,))]

    # -- changes
    def add(self, ns: str, digest: str, labels: dict | None = None, *,
            fresh: bool = False) -> None:
        """Record that ``ns`` holds ``digest`` (its labels replaced when given).

        ``fresh``: the blob was just committed, so it did not exist before: rows
        of other namespaces are left over from a copy the collector removed.
        """
        now = time.time_ns()
        with self._tx() as conn:
            if fresh:
                conn.execute("DELETE FROM content_namespaces WHERE digest=? AND namespace!=?",
                             (digest, ns))
            row = self._row(conn, ns, digest)
            if row is None:
                conn.execute("INSERT INTO content_namespaces(namespace, digest, labels, "
                             "created_at, updated_at) VALUES(?,?,?,?,?)",
                             (ns, digest, json.dumps(labels or {}), now, now))
            elif labels is not None:
                conn.execute("UPDATE content_namespaces SET labels=?, updated_at=? WHERE "
                             "namespace=? AND digest=?", (json.dumps(labels), now, ns, digest))
            self._sync_store_labels(conn, digest)

    def update(self, ns: str, digest: str, labels: dict, paths) -> Info:
        """containerd's label update: whole set, or ``labels.KEY`` paths."""
        self.info(ns, digest)
        now = time.time_ns()
        with self._tx() as conn:
            row = self._row(conn, ns, digest)
            current = json.loads(row[0]) if row is not None else \
                dict(self.content.info(digest).labels)
            if not paths:
                current = dict(labels)
            for path in paths or ():
                if path == "labels":
                    current = dict(labels)
                elif path.startswith("labels."):
                    key = path[len("labels."):]
                    if key in labels:
                        current[key] = labels[key]
                    else:
                        current.pop(key, None)
            if row is None:
                conn.execute("INSERT INTO content_namespaces(namespace, digest, labels, "
                             "created_at, updated_at) VALUES(?,?,?,?,?)",
                             (ns, digest, json.dumps(current), now, now))
            else:
                conn.execute("UPDATE content_namespaces SET labels=?, updated_at=? WHERE "
                             "namespace=? AND digest=?", (json.dumps(current), now, ns, digest))
            self._sync_store_labels(conn, digest)
        return self.info(ns, digest)

    def delete(self, ns: str, digest: str) -> None:
        """Drop ``digest`` from ``ns``; the blob goes when no namespace holds it any more."""
        self.info(ns, digest)
        with self._tx() as conn:
            conn.execute("DELETE FROM content_namespaces WHERE namespace=? AND digest=?",
                         (ns, digest))
            left = self._owned(conn, digest)
            if left:
                self._sync_store_labels(conn, digest)
        if not left:
            try:
                self.content.delete(digest)
            except NotFound:
                pass

    def close(self) -> None:
        self.db.close()


def _ns(value) -> int:
    """Epoch nanoseconds of a datetime (or a number of seconds)."""
    if value is None:
        return 0
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1_000_000_000)
    return int(float(value) * 1_000_000_000)
