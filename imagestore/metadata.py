"""containerd's metadata per namespace, in SQLite: namespaces, images,
leases, containers (:mod:`.containers`) and which namespace holds which blob
(:mod:`.contentrefs`).

One file, ``{containerd_root}/io.containerd.metadata.v1.pallet/meta.db``
(WAL), with one owner: :class:`MetadataStore`, the ``metadata`` of the image
store, so that its garbage collector sees every reference.  Every change is
one transaction: a crash leaves the old or the new record, never half of one.

As in containerd, a namespace springs into existence when something is
created in it, and can only be deleted when empty.
"""
from __future__ import annotations

import datetime
from typing import Mapping, Sequence

import attrs

from pallet.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pallet.core.models import Descriptor

from pallet.containerd import filters as _filters
from pallet.distribution.digests import parse_digest
from pallet.imagestore import containers as _containers
from pallet.imagestore import contentrefs as _contentrefs
from pallet.imagestore.containers import ContainerRecords
from pallet.imagestore.contentrefs import ContentReferences
from pallet.imagestore.db import (
    Database,
    apply_label_fieldpaths,
    dump_labels,
    load_labels,
    now_ns,
    ns_to_datetime,
    validate_identifier)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    annotations TEXT NOT NULL DEFAULT '{}',
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS leases (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    id TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
);
CREATE TABLE IF NOT EXISTS lease_resources (
    namespace TEXT NOT NULL,
    lease TEXT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (namespace, lease, type, id),
    FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE
);
"""

@attrs.frozen
class Namespace:
    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class ImageRecord:
    """A named image in one namespace: its name and the root descriptor
    (manifest or index) of its content (containerd's images.Image)."""

    name: str
    target: Descriptor
    labels: Mapping[str, str] = attrs.field(factory=dict)
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None


@attrs.frozen
class Lease:
    id: str
    labels: Mapping[str, str] = attrs.field(factory=dict)
    created_at: datetime.datetime | None = None


@attrs.frozen
class LeaseResource:
    """Something a lease keeps from GC: ``type`` is ``content``,
    ``snapshots/<snapshotter>`` or ``ingests``."""

    id: str
    type: str


def _image_field(img: ImageRecord, path: tuple[str, ...]) -> tuple[bool, str]:
    head, rest = path[0], path[1:]
    if head == "name" and not rest:
        return True, img.name
    if head == "target" and len(rest) == 1:
        value = {"digest": img.target.digest, "mediatype": img.target.media_type}.get(rest[0])
        return (value is not None), value or ""
    if head == "labels" and rest:
        return _filters.labels_field(img.labels, rest)
    return False, ""


def _check_image(img: ImageRecord) -> None:
    if not img.name:
        raise InvalidArgument("image name must not be empty")
    if not img.target.media_type:
        raise InvalidArgument(f"image {img.name}: target media type must not be empty")
    parse_digest(img.target.digest)
    if img.target.size < 0:
        raise InvalidArgument(f"image {img.name}: target size must not be negative")


class MetadataStore(ContainerRecords, ContentReferences):
    """Namespaces, images, leases, containers and content references in one
    SQLite file (opened on first use)."""

    def __init__(self, path: str):
        self.path = path
        self.db = Database(path, _SCHEMA + _containers.SCHEMA + _contentrefs.SCHEMA,
                           upgrade=_containers.upgrade_containers_table)

    def close(self) -> None:
        self.db.close()

    # --- namespaces --------------------------------------------------------------

    @staticmethod
    def _ensure_namespace(conn, namespace: str) -> None:
        validate_identifier("namespace", namespace)
        conn.execute("INSERT OR IGNORE INTO namespaces(name, labels, created_at) VALUES(?,?,?)",
                     (namespace, "{}", now_ns()))

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        """Create a namespace (AlreadyExists if it is there)."""
        validate_identifier("namespace", name)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM namespaces WHERE name=?", (name,)).fetchone():
                raise AlreadyExists(f"namespace {name}: already exists")
            conn.execute("INSERT INTO namespaces(name, labels, created_at) VALUES(?,?,?)",
                         (name, dump_labels(labels), now_ns()))
        return Namespace(name, dict(labels or {}))

    def ensure_namespace(self, name: str) -> None:
        """Create the namespace unless it exists (what any create does implicitly)."""
        with self.db.transaction() as conn:
            self._ensure_namespace(conn, name)

    def get_namespace(self, name: str) -> Namespace:
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM namespaces WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"namespace {name}: not found")
        return Namespace(row["name"], load_labels(row["labels"]))

    def list_namespaces(self) -> list[Namespace]:
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM namespaces ORDER BY name").fetchall()
        return [Namespace(r["name"], load_labels(r["labels"])) for r in rows]

    def update_namespace(self, name: str, labels: Mapping[str, str],
                         fieldpaths: Sequence[str] | None = None) -> Namespace:
        """Change a namespace's labels (containerd's field-path rules)."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT labels FROM namespaces WHERE name=?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"namespace {name}: not found")
            new = apply_label_fieldpaths(load_labels(row["labels"]), labels, fieldpaths)
            conn.execute("UPDATE namespaces SET labels=? WHERE name=?", (dump_labels(new), name))
        return Namespace(name, new)

    def delete_namespace(self, name: str) -> None:
        """Delete an empty namespace (FailedPrecondition while it holds content,
        containers, images or leases)."""
        with self.db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM namespaces WHERE name=?", (name,)).fetchone():
                raise NotFound(f"namespace {name}: not found")
            for what, table in (("content", "content_namespaces"), ("containers", "containers"),
                                ("images", "images"), ("leases", "leases")):
                if conn.execute(f"SELECT 1 FROM {table} WHERE namespace=? LIMIT 1",
                                (name,)).fetchone():
                    raise FailedPrecondition(
                        f"namespace {name} must be empty, but it still has {what}")
            conn.execute("DELETE FROM namespaces WHERE name=?", (name,))

    # --- images ------------------------------------------------------------------

    @staticmethod
    def _image_of(row) -> ImageRecord:
        annotations = tuple(sorted(load_labels(row["annotations"]).items()))
        return ImageRecord(
            name=row["name"],
            target=Descriptor(row["media_type"], row["digest"], row["size"], annotations),
            labels=load_labels(row["labels"]),
            created_at=ns_to_datetime(row["created_at"]),
            updated_at=ns_to_datetime(row["updated_at"]))

    def create_image(self, namespace: str, image: ImageRecord) -> ImageRecord:
        """Record a new image (AlreadyExists if the name is taken); the
        timestamps are set here."""
        _check_image(image)
        now = now_ns()
        with self.db.transaction() as conn:
            self._ensure_namespace(conn, namespace)
            if conn.execute("SELECT 1 FROM images WHERE namespace=? AND name=?",
                            (namespace, image.name)).fetchone():
                raise AlreadyExists(f"image {image.name!r}: already exists")
            t = image.target
            conn.execute(
                "INSERT INTO images(namespace, name, media_type, digest, size, annotations, "
                "labels, created_at, updated_at) VALUES(?,?,?,?,?,?,?,?,?)",
                (namespace, image.name, t.media_type, t.digest, t.size,
                 dump_labels(dict(t.annotations)), dump_labels(image.labels), now, now))
        return self.get_image(namespace, image.name)

    def get_image(self, namespace: str, name: str) -> ImageRecord:
        """The image ``name`` (NotFound if absent)."""
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM images WHERE namespace=? AND name=?",
                               (namespace, name)).fetchone()
        if row is None:
            raise NotFound(f"image {name!r}: not found")
        return self._image_of(row)

    def list_images(self, namespace: str,
                    filters: Sequence[str] | str | None = None) -> list[ImageRecord]:
        """The images of a namespace sorted by name, filtered with containerd's
        syntax on ``name``, ``target.digest``, ``target.mediatype``, ``labels.KEY``."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM images WHERE namespace=? ORDER BY name",
                                (namespace,)).fetchall()
        return _filters.select([self._image_of(r) for r in rows], filters, _image_field)

    def update_image(self, namespace: str, image: ImageRecord,
                     fieldpaths: Sequence[str] | None = None) -> ImageRecord:
        """Change an image as containerd's Images.Update does.

        Without ``fieldpaths``, target and labels are replaced.  Field paths:
        ``target``, ``labels``, ``labels.KEY``, ``annotations`` (the target's).
        """
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM images WHERE namespace=? AND name=?",
                               (namespace, image.name)).fetchone()
            if row is None:
                raise NotFound(f"image {image.name!r}: not found")
            old = self._image_of(row)
            target, labels = old.target, dict(old.labels)
            if not fieldpaths:
                target, labels = image.target, dict(image.labels)
            else:
                label_paths = []
                for path in fieldpaths:
                    if path == "target":
                        target = image.target
                    elif path == "annotations":
                        target = attrs.evolve(target, annotations=image.target.annotations)
                    elif path == "labels" or path.startswith("labels."):
                        label_paths.append(path)
                    else:
                        raise InvalidArgument(f"cannot update image field {path!r}")
                if label_paths:
                    labels = apply_label_fieldpaths(labels, image.labels, label_paths)
            new = attrs.evolve(old, target=target, labels=labels)
            _check_image(new)
            conn.execute(
                "UPDATE images SET media_type=?, digest=?, size=?, annotations=?, labels=?, "
                "updated_at=? WHERE namespace=? AND name=?",
                (target.media_type, target.digest, target.size,
                 dump_labels(dict(target.annotations)), dump_labels(labels), now_ns(),
                 namespace, image.name))
        return self.get_image(namespace, image.name)

    def put_image(self, namespace: str, image: ImageRecord) -> ImageRecord:
        """Create the image, or point the existing one at the new target
        (what an import or a tag does); labels given are merged in."""
        try:
            return self.create_image(namespace, image)
        except AlreadyExists:
            old = self.get_image(namespace, image.name)
            return self.update_image(namespace, attrs.evolve(
                image, labels={**old.labels, **image.labels}))

    def delete_image(self, namespace: str, name: str) -> None:
        """Remove the image record (its content stays until GC)."""
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM images WHERE namespace=? AND name=?",
                               (namespace, name))
            if cur.rowcount == 0:
                raise NotFound(f"image {name!r}: not found")

    def all_image_targets(self) -> list[tuple[str, ImageRecord]]:
        """Every (namespace, image) of every namespace: the roots of GC."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM images ORDER BY namespace, name").fetchall()
        return [(r["namespace"], self._image_of(r)) for r in rows]

    # --- leases --------------------------------------------------------------------

    def create_lease(self, namespace: str, lease_id: str,
                     labels: Mapping[str, str] | None = None) -> Lease:
        """Create a lease (AlreadyExists if the id is taken)."""
        # containerd accepts any non-empty lease id (ctr makes ids such as
        # "748877418-_s1I"), unlike namespace names
        if not lease_id:
            raise InvalidArgument("lease id must not be empty")
        with self.db.transaction() as conn:
            self._ensure_namespace(conn, namespace)
            if conn.execute("SELECT 1 FROM leases WHERE namespace=? AND id=?",
                            (namespace, lease_id)).fetchone():
                raise AlreadyExists(f"lease {lease_id}: already exists")
            now = now_ns()
            conn.execute("INSERT INTO leases(namespace, id, labels, created_at) VALUES(?,?,?,?)",
                         (namespace, lease_id, dump_labels(labels), now))
        return Lease(lease_id, dict(labels or {}), ns_to_datetime(now))

    def list_leases(self, namespace: str) -> list[Lease]:
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM leases WHERE namespace=? ORDER BY id",
                                (namespace,)).fetchall()
        return [Lease(r["id"], load_labels(r["labels"]), ns_to_datetime(r["created_at"]))
                for r in rows]

    def delete_lease(self, namespace: str, lease_id: str) -> None:
        """Delete a lease and its resource list (NotFound if absent)."""
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM leases WHERE namespace=? AND id=?",
                               (namespace, lease_id))
            if cur.rowcount == 0:
                raise NotFound(f"lease {lease_id}: not found")

    def add_lease_resource(self, namespace: str, lease_id: str, resource: LeaseResource) -> None:
        with self.db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM leases WHERE namespace=? AND id=?",
                                (namespace, lease_id)).fetchone():
                raise NotFound(f"lease {lease_id}: not found")
            conn.execute("INSERT OR IGNORE INTO lease_resources(namespace, lease, type, id) "
                         "VALUES(?,?,?,?)", (namespace, lease_id, resource.type, resource.id))

    def delete_lease_resource(self, namespace: str, lease_id: str,
                              resource: LeaseResource) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM lease_resources WHERE namespace=? AND lease=? AND type=? "
                         "AND id=?", (namespace, lease_id, resource.type, resource.id))

    def list_lease_resources(self, namespace: str, lease_id: str) -> list[LeaseResource]:
        with self.db.read() as conn:
            if not conn.execute("SELECT 1 FROM leases WHERE namespace=? AND id=?",
                                (namespace, lease_id)).fetchone():
                raise NotFound(f"lease {lease_id}: not found")
            rows = conn.execute("SELECT type, id FROM lease_resources WHERE namespace=? AND "
                                "lease=? ORDER BY type, id", (namespace, lease_id)).fetchall()
        return [LeaseResource(r["id"], r["type"]) for r in rows]
