"""Which containerd namespaces hold which blob, with labels of their own.

containerd keeps one copy of each blob on disk but records in its metadata
which namespaces hold it: a blob written in namespace A is not seen from B
until B writes it too (then the write ends at once, the blob being added to
B, as containerd's "shared" content policy does), and deleting it in B
leaves A's.  This table is that record; the content store's own labels
belong to blobs no namespace claims (written next to the store, by an
import or a local pull).  The garbage collector reads these labels per
namespace, and drops the rows of the blobs it removes.

:class:`ContentReferences` is a part of :class:`~.metadata.MetadataStore`
(it uses its ``db``).
"""
from __future__ import annotations

import datetime
from typing import Mapping, Sequence

import attrs

from pallet.imagestore.db import (
    apply_label_fieldpaths,
    dump_labels,
    load_labels,
    now_ns,
    ns_to_datetime)

# the table's name is the one pallet-containerd gave it first, so that
# existing files keep their rows
SCHEMA = """
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
class ContentRef:
    """A namespace's hold on a blob: its labels there, and when it got them."""

    digest: str
    labels: Mapping[str, str] = attrs.field(factory=dict)
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None


def _ref_of(row) -> ContentRef:
    return ContentRef(row["digest"], load_labels(row["labels"]),
                      ns_to_datetime(row["created_at"]), ns_to_datetime(row["updated_at"]))


class ContentReferences:
    """The content-reference table of :class:`~.metadata.MetadataStore` (needs ``self.db``)."""

    @staticmethod
    def _content_row(conn, namespace: str, digest: str):
        return conn.execute("SELECT * FROM content_namespaces WHERE namespace=? AND digest=?",
                            (namespace, digest)).fetchone()

    def get_content_ref(self, namespace: str, digest: str) -> ContentRef | None:
        """``namespace``'s hold on ``digest``; None when it holds none."""
        with self.db.read() as conn:
            row = self._content_row(conn, namespace, digest)
        return None if row is None else _ref_of(row)

    def list_content_refs(self, namespace: str) -> list[ContentRef]:
        """The blobs ``namespace`` holds, by digest."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM content_namespaces WHERE namespace=? "
                                "ORDER BY digest", (namespace,)).fetchall()
        return [_ref_of(r) for r in rows]

    def claimed_digests(self) -> set[str]:
        """The blobs some namespace holds (the others are seen from every namespace)."""
        with self.db.read() as conn:
            return {d for (d,) in conn.execute("SELECT DISTINCT digest FROM content_namespaces")}

    def add_content_ref(self, namespace: str, digest: str,
                        labels: Mapping[str, str] | None = None, *,
                        fresh: bool = False) -> ContentRef:
        """Record that ``namespace`` holds ``digest`` (its labels there replaced
        when given).  ``fresh``: the blob was just committed, so it did not
        exist before and the rows of other namespaces are left over from a
        copy that was removed meanwhile: they go."""
        now = now_ns()
        with self.db.transaction() as conn:
            self._ensure_namespace(conn, namespace)
            if fresh:
                conn.execute("DELETE FROM content_namespaces WHERE digest=? AND namespace!=?",
                             (digest, namespace))
            if self._content_row(conn, namespace, digest) is None:
                conn.execute("INSERT INTO content_namespaces(namespace, digest, labels, "
                             "created_at, updated_at) VALUES(?,?,?,?,?)",
                             (namespace, digest, dump_labels(labels), now, now))
            elif labels is not None:
                conn.execute("UPDATE content_namespaces SET labels=?, updated_at=? WHERE "
                             "namespace=? AND digest=?",
                             (dump_labels(labels), now, namespace, digest))
            return _ref_of(self._content_row(conn, namespace, digest))

    def update_content_ref(self, namespace: str, digest: str, labels: Mapping[str, str],
                           fieldpaths: Sequence[str] | None,
                           unclaimed_labels: Mapping[str, str] | None = None) -> ContentRef:
        """Change ``namespace``'s labels of ``digest`` (containerd's field-path
        rule); a namespace that holds no row yet starts from
        ``unclaimed_labels`` (the blob's labels in the content store)."""
        now = now_ns()
        with self.db.transaction() as conn:
            self._ensure_namespace(conn, namespace)
            row = self._content_row(conn, namespace, digest)
            current = load_labels(row["labels"]) if row is not None \
                else dict(unclaimed_labels or {})
            new = apply_label_fieldpaths(current, labels, fieldpaths)
            if row is None:
                conn.execute("INSERT INTO content_namespaces(namespace, digest, labels, "
                             "created_at, updated_at) VALUES(?,?,?,?,?)",
                             (namespace, digest, dump_labels(new), now, now))
            else:
                conn.execute("UPDATE content_namespaces SET labels=?, updated_at=? WHERE "
                             "namespace=? AND digest=?", (dump_labels(new), now, namespace,
                                                          digest))
            return _ref_of(self._content_row(conn, namespace, digest))

    def delete_content_ref(self, namespace: str, digest: str) -> bool:
        """Drop ``namespace``'s hold on ``digest``; whether another namespace
        still holds it."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM content_namespaces WHERE namespace=? AND digest=?",
                         (namespace, digest))
            return conn.execute("SELECT 1 FROM content_namespaces WHERE digest=? LIMIT 1",
                                (digest,)).fetchone() is not None

    def all_content_refs(self) -> list[tuple[str, ContentRef]]:
        """Every (namespace, hold): the labels GC follows from each namespace."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM content_namespaces "
                                "ORDER BY namespace, digest").fetchall()
        return [(r["namespace"], _ref_of(r)) for r in rows]

    def forget_content(self, digests: Sequence[str]) -> None:
        """Drop every namespace's hold on blobs that are gone (after GC)."""
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM content_namespaces WHERE digest=?",
                             [(d,) for d in digests])
