"""What every snapshotter shares: containerd's snapshot tree over a metadata
table, and the view of it from one containerd namespace.

The snapshotters themselves are the image-store plugins' (overlayfs in
store_overlay, native copies in store_native): a subclass of
:class:`Snapshotter` says how a snapshot's directory is made and mounted.

A snapshot is a directory tree with a parent chain.  Its key names it; three
kinds exist (containerd's ``snapshots.Kind``):

* ``active``: writable, made by :meth:`prepare`; mounted by the caller with
  the list of mounts it returns;
* ``view``: read-only, made by :meth:`view`;
* ``committed``: made from an active one by :meth:`commit`; only committed
  snapshots can be parents.

Keys of every kind share one name space.  Layout under ``root``::

    {root}/metadata.db            snapshot table (SQLite, WAL)
    {root}/snapshots/<id>/        the snapshot's directory, laid out by the
                                  subclass (overlay: ``fs``, ``work``)

Directories are built under a temporary name and
renamed into place inside the metadata transaction, and removed by renaming
them away first, so a crash never leaves a snapshot whose directory is half
made: only stray ``new-*``/``rm-*`` directories that :meth:`cleanup` removes.

The snapshotters are not namespaced, as in containerd;
:meth:`Snapshotter.namespaced` gives a view where every key is prefixed with
the containerd namespace, which is what the Snapshots gRPC service wants.
"""
from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from typing import Mapping, Sequence

import attrs

from pallet.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pallet.core.models import Mount

from pallet.containerd import filters as _filters
from pallet.imagestore.db import (
    Database,
    apply_label_fieldpaths,
    dump_labels,
    load_labels,
    now_ns,
    ns_to_datetime)

KIND_VIEW = "view"
KIND_ACTIVE = "active"
KIND_COMMITTED = "committed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    parent INTEGER REFERENCES snapshots(id),
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    inodes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
"""


@attrs.frozen
class Info:
    """A snapshot's metadata (containerd's snapshots.Info)."""

    kind: str
    name: str
    parent: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict)
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None


@attrs.frozen
class Usage:
    """Disk use of a snapshot's own files: bytes and inodes (shared hardlinks once)."""

    size: int
    inodes: int


def disk_usage(path: str) -> Usage:
    """Allocated bytes and inode count of a tree, each inode counted once."""
    seen: set[tuple[int, int]] = set()
    size = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames, ""]:
            full = os.path.join(dirpath, name) if name else dirpath
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                continue
            seen.add(ident)
            size += st.st_blocks * 512
    return Usage(size, len(seen))


def _info_field(info: Info, path: tuple[str, ...]) -> tuple[bool, str]:
    head, rest = path[0], path[1:]
    if head in ("kind", "name", "parent") and not rest:
        return True, getattr(info, head)
    if head == "labels" and rest:
        return _filters.labels_field(info.labels, rest)
    return False, ""


class Snapshotter:
    """What every snapshotter shares: the metadata table and the lifecycle
    (:class:`pallet.core.contracts.Snapshotter`).

    Subclasses say how a snapshot's directory is made (:meth:`_populate`),
    where its tree is (:meth:`_tree`) and how it is mounted (:meth:`_mounts`);
    ``name`` is containerd's name of the snapshotter, which also names its
    root (``paths.snapshotter_root(name)``).
    """

    #: name of the snapshotter as containerd clients pass it
    name = ""

    def __init__(self, root: str):
        self.root = root
        self._db = Database(os.path.join(root, "metadata.db"), _SCHEMA)

    # --- subclass interface -----------------------------------------------------

    def _populate(self, tmpdir: str, kind: str, parent_ids: list[int]) -> None:
        """Lay out a new snapshot in ``tmpdir`` (renamed to :meth:`_snapdir`
        afterwards); ``parent_ids`` is the parent chain, nearest first."""
        raise NotImplementedError

    def _tree(self, sid: int) -> str:
        """The directory holding the snapshot's own files (measured by :meth:`usage`)."""
        raise NotImplementedError

    def _mounts(self, sid: int, kind: str, parent_ids: list[int]) -> list[Mount]:
        """The mounts that assemble an active snapshot or a view."""
        raise NotImplementedError

    # --- helpers -------------------------------------------------------------------

    def _snapdir(self, sid: int) -> str:
        """The directory of snapshot ``sid``: ``{root}/snapshots/<id>``."""
        return os.path.join(self.root, "snapshots", str(sid))

    @staticmethod
    def _row(conn, key: str):
        row = conn.execute("SELECT * FROM snapshots WHERE key=?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key}: not found")
        return row

    @staticmethod
    def _parent_ids(conn, row) -> list[int]:
        """Ids of the parent chain, nearest first (overlay's lowerdir order)."""
        out, pid = [], row["parent"]
        while pid is not None:
            out.append(pid)
            pid = conn.execute("SELECT parent FROM snapshots WHERE id=?", (pid,)).fetchone()[0]
        return out

    @staticmethod
    def _info_of(conn, row) -> Info:
        parent = ""
        if row["parent"] is not None:
            parent = conn.execute("SELECT key FROM snapshots WHERE id=?",
                                  (row["parent"],)).fetchone()[0]
        return Info(kind=row["kind"], name=row["key"], parent=parent,
                    labels=load_labels(row["labels"]),
                    created_at=ns_to_datetime(row["created_at"]),
                    updated_at=ns_to_datetime(row["updated_at"]))

    # --- operations ------------------------------------------------------------------

    def prepare(self, key: str, parent: str | None = None,
                labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create the active (writable) snapshot ``key`` on top of the
        committed ``parent``; return the mounts that assemble it."""
        return self._create(KIND_ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str | None = None,
             labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create the read-only snapshot ``key`` of the committed ``parent``;
        return its mounts."""
        return self._create(KIND_VIEW, key, parent, labels)

    def _create(self, kind: str, key: str, parent: str | None,
                labels: Mapping[str, str] | None) -> list[Mount]:
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        top = os.path.join(self.root, "snapshots")
        os.makedirs(top, mode=0o700, exist_ok=True)
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM snapshots WHERE key=?", (key,)).fetchone():
                raise AlreadyExists(f"snapshot {key}: already exists")
            parent_id, parent_ids = None, []
            if parent:
                prow = self._row(conn, parent)
                if prow["kind"] != KIND_COMMITTED:
                    raise InvalidArgument(f"parent {parent} is not a committed snapshot")
                parent_id = prow["id"]
                parent_ids = [parent_id, *self._parent_ids(conn, prow)]
            now = now_ns()
            sid = conn.execute(
                "INSERT INTO snapshots(key, kind, parent, labels, created_at, updated_at) "
                "VALUES(?,?,?,?,?,?)",
                (key, kind, parent_id, dump_labels(labels), now, now)).lastrowid
            final = self._snapdir(sid)
            if os.path.lexists(final):
                # left by a crash between rename and commit: the id was rolled back
                remove_tree(final)
            tmp = tempfile.mkdtemp(prefix="new-", dir=top)
            try:
                self._populate(tmp, kind, parent_ids)
                os.rename(tmp, final)
            except BaseException:
                remove_tree(tmp)
                raise
            try:
                return self._mounts(sid, kind, parent_ids)
            except BaseException:
                remove_tree(final)
                raise

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active snapshot or a view (committed ones have none)."""
        with self._db.read() as conn:
            row = self._row(conn, key)
            if row["kind"] == KIND_COMMITTED:
                raise FailedPrecondition(f"snapshot {key} is committed, not active or view")
            return self._mounts(row["id"], row["kind"], self._parent_ids(conn, row))

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Turn the active snapshot ``key`` into the committed ``name`` (which
        can then be a parent).  ``labels`` replace the snapshot's when given."""
        if not name:
            raise InvalidArgument("snapshot name must not be empty")
        with self._db.transaction() as conn:
            row = self._row(conn, key)
            if row["kind"] != KIND_ACTIVE:
                raise FailedPrecondition(f"snapshot {key} is a {row['kind']} snapshot, "
                                         "only active snapshots can be committed")
            if conn.execute("SELECT 1 FROM snapshots WHERE key=?", (name,)).fetchone():
                raise AlreadyExists(f"snapshot {name}: already exists")
            usage = disk_usage(self._tree(row["id"]))
            new_labels = row["labels"] if labels is None else dump_labels(labels)
            conn.execute(
                "UPDATE snapshots SET key=?, kind=?, labels=?, updated_at=?, size=?, inodes=? "
                "WHERE id=?", (name, KIND_COMMITTED, new_labels, now_ns(), usage.size,
                               usage.inodes, row["id"]))
        self._after_commit(row["id"])

    def _after_commit(self, sid: int) -> None:
        """Hook for a snapshotter with work to do once committed."""

    def remove(self, key: str) -> None:
        """Remove a snapshot of any kind; refused while other snapshots are
        built on it.  An active snapshot must be unmounted first."""
        top = os.path.join(self.root, "snapshots")
        with self._db.transaction() as conn:
            row = self._row(conn, key)
            children = conn.execute("SELECT key FROM snapshots WHERE parent=? ORDER BY key",
                                    (row["id"],)).fetchall()
            if children:
                names = ", ".join(c[0] for c in children[:3])
                raise FailedPrecondition(
                    f"cannot remove snapshot {key}: it has {len(children)} child "
                    f"snapshot(s) ({names})")
            conn.execute("DELETE FROM snapshots WHERE id=?", (row["id"],))
            doomed = None
            if os.path.lexists(self._snapdir(row["id"])):
                doomed = os.path.join(top, f"rm-{row['id']}")
                os.rename(self._snapdir(row["id"]), doomed)
        if doomed:
            remove_tree(doomed)

    def stat(self, key: str) -> Info:
        """The metadata of snapshot ``key``."""
        with self._db.read() as conn:
            return self._info_of(conn, self._row(conn, key))

    def update(self, key: str, labels: Mapping[str, str],
               fieldpaths: Sequence[str] | None = None) -> Info:
        """Change a snapshot's labels (containerd's field-path rules)."""
        with self._db.transaction() as conn:
            row = self._row(conn, key)
            new = apply_label_fieldpaths(load_labels(row["labels"]), labels, fieldpaths)
            conn.execute("UPDATE snapshots SET labels=?, updated_at=? WHERE id=?",
                         (dump_labels(new), now_ns(), row["id"]))
            return self._info_of(conn, self._row(conn, key))

    def list(self, filters: Sequence[str] | str | None = None) -> list[Info]:
        """Every snapshot, by key, filtered on kind, name, parent, labels.KEY."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT * FROM snapshots ORDER BY key").fetchall()
            infos = [self._info_of(conn, r) for r in rows]
        return _filters.select(infos, filters, _info_field)

    def usage(self, key: str) -> Usage:
        """Disk use of the snapshot's own files: measured now for active ones,
        recorded at commit for committed ones."""
        with self._db.read() as conn:
            row = self._row(conn, key)
        if row["kind"] == KIND_COMMITTED:
            return Usage(row["size"], row["inodes"])
        return disk_usage(self._tree(row["id"]))

    def cleanup(self) -> list[str]:
        """Remove directories no snapshot owns (left by a crash); return their names."""
        top = os.path.join(self.root, "snapshots")
        removed = []
        with self._db.transaction() as conn:
            ids = {str(r[0]) for r in conn.execute("SELECT id FROM snapshots")}
            try:
                names = os.listdir(top)
            except FileNotFoundError:
                return []
            for name in names:
                if name not in ids:
                    remove_tree(os.path.join(top, name))
                    removed.append(name)
        return sorted(removed)

    def namespaced(self, namespace: str) -> "NamespacedSnapshotter":
        """This snapshotter seen from one containerd namespace."""
        return NamespacedSnapshotter(self, namespace)

    def close(self) -> None:
        self._db.close()


def remove_tree(path: str) -> None:
    """Remove a tree whose files may be immutable-free but read-only."""
    if not os.path.lexists(path):
        return
    try:
        shutil.rmtree(path)
    except OSError:
        # files left unwritable dirs behind (0555 layers): open them up and retry
        for dirpath, dirnames, _ in os.walk(path):
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if not os.path.islink(full):
                    os.chmod(full, 0o700)
        shutil.rmtree(path, ignore_errors=True)


class NamespacedSnapshotter:
    """A snapshotter seen from one containerd namespace: keys and parents are
    stored as ``<namespace>/<key>`` and shown without the prefix, and a
    namespace sees only its own snapshots (as containerd's metadata layer)."""

    def __init__(self, backend: Snapshotter, namespace: str):
        self.backend = backend
        self.namespace = namespace
        self.name = backend.name
        self._prefix = namespace + "/"

    def _k(self, key: str | None) -> str | None:
        return self._prefix + key if key else key

    def _strip(self, info: Info) -> Info:
        n = len(self._prefix)
        return attrs.evolve(info, name=info.name[n:],
                            parent=info.parent[n:] if info.parent else "")

    def prepare(self, key, parent=None, labels=None):
        return self.backend.prepare(self._k(key), self._k(parent), labels)

    def view(self, key, parent=None, labels=None):
        return self.backend.view(self._k(key), self._k(parent), labels)

    def mounts(self, key):
        return self.backend.mounts(self._k(key))

    def commit(self, name, key, labels=None):
        return self.backend.commit(self._k(name), self._k(key), labels)

    def remove(self, key):
        return self.backend.remove(self._k(key))

    def stat(self, key):
        return self._strip(self.backend.stat(self._k(key)))

    def update(self, key, labels, fieldpaths=None):
        return self._strip(self.backend.update(self._k(key), labels, fieldpaths))

    def usage(self, key):
        return self.backend.usage(self._k(key))

    def list(self, filters=None):
        mine = [self._strip(i) for i in self.backend.list()
                if i.name.startswith(self._prefix)]
        return _filters.select(mine, filters, _info_field)

    def cleanup(self):
        return self.backend.cleanup()

    def namespaced(self, namespace: str) -> "NamespacedSnapshotter":
        """The same snapshotter seen from another namespace."""
        return self.backend.namespaced(namespace)
