"""Garbage collection of the store: content and snapshots nothing refers to.

Mark and sweep, with containerd's roots and references (``gc/scheduler`` and
``metadata/gc.go``):

roots
    every image's target, in every namespace; every container (its snapshot,
    ``snapshot_key`` in its ``snapshotter``, and the image it was made from,
    even once that name is gone); every
    live lease's resources; blobs and snapshots labelled
    ``containerd.io/gc.root``.  A snapshot nothing refers to is collected
    whatever its kind, as in containerd: what a client prepares outside a
    lease (or a container record, or a root label) is garbage.
references
    the children a manifest or index names (config, layers, manifests);
    ``containerd.io/gc.ref.content.*`` labels (a digest);
    ``containerd.io/gc.ref.snapshot.<snapshotter>`` labels (a snapshot key,
    looked up in the namespace the reference was reached from, and bare);
    a snapshot's parent chain.  Labels are read from blobs (the content
    store's own, and each namespace's: :mod:`.contentrefs`), containers and
    snapshots.

Leases end when their ``containerd.io/gc.expire`` time has passed, or when
the process named by ``pallet.io/lease.owner`` is gone (a daemon killed in
the middle of a pull): GC deletes them before marking.

Uploads (ingests) are removed unless a live lease holds them or a writer has
them open (its lock is held): what a killed pull leaves is collected, and a
pull that resumes holds its own lease.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import shutil
from typing import Mapping

import attrs

from pallet.core.errors import FailedPrecondition, NotFound
from pallet.distribution.mediatypes import (
    INDEX_TYPES,
    LABEL_GC_EXPIRE,
    LABEL_GC_REF_CONTENT,
    LABEL_GC_REF_SNAPSHOT,
    LABEL_GC_ROOT,
    MANIFEST_TYPES)
from pallet.distribution.targets import LABEL_LEASE_OWNER, owner_alive

log = logging.getLogger("pallet.imagestore.gc")


@attrs.frozen
class GcResult:
    """What a collection removed (or would remove, on a dry run)."""

    content: tuple[str, ...]
    snapshots: tuple[tuple[str, str], ...]  # (snapshotter, key)
    ingests: tuple[str, ...] = ()
    leases: tuple[str, ...] = ()  # "namespace/id" of the leases that had ended


def _children(content, digest: str, media_type: str) -> list[tuple[str, str]]:
    """(digest, media type) of what a manifest or index blob names."""
    if media_type not in MANIFEST_TYPES + INDEX_TYPES:
        return []
    try:
        doc = json.loads(content.read(digest))
    except (NotFound, ValueError):
        return []
    out = []
    for d in [doc.get("config") or {}, *(doc.get("layers") or []),
              *(doc.get("manifests") or [])]:
        if isinstance(d, dict) and d.get("digest"):
            out.append((d["digest"], d.get("mediaType", "")))
    return out


def lease_ended(labels, now: datetime.datetime | None = None) -> bool:
    """Whether a lease's labels say it is over (expired, or its owner process gone)."""
    expire = labels.get(LABEL_GC_EXPIRE)
    if expire:
        try:
            when = datetime.datetime.fromisoformat(expire.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            if when <= (now or datetime.datetime.now(datetime.timezone.utc)):
                return True
        except ValueError:
            log.warning("lease with an unreadable expiry %r", expire)
    owner = labels.get(LABEL_LEASE_OWNER)
    return bool(owner) and not owner_alive(owner)


def _end_leases(metadata, dry_run: bool) -> set[tuple[str, str]]:
    """Delete the leases that are over; return (namespace, id) of those."""
    ended = set()
    for ns in metadata.list_namespaces():
        for lease in metadata.list_leases(ns.name):
            if lease_ended(lease.labels):
                ended.add((ns.name, lease.id))
                if not dry_run:
                    try:
                        metadata.delete_lease(ns.name, lease.id)
                    except NotFound:
                        pass
    return ended


class _Marker:
    """The mark phase: a walk from the roots over content and snapshots."""

    def __init__(self, store):
        self.store = store
        self.content = store.content
        #: the content store's labels (blobs no namespace claims, local writes)
        self.labels = {info.digest: info.labels for info in store.content.list()}
        #: each namespace's labels of the blobs it holds
        self.ns_labels = {(ns, ref.digest): ref.labels
                          for ns, ref in store.metadata.all_content_refs()}
        self.snapshots = {name: {i.name: i for i in store.snapshotter(name).list()}
                          for name in store.snapshotter_names()}
        self.live: set[str] = set()
        self.live_snaps: dict[str, set[str]] = {name: set() for name in self.snapshots}
        self.leased_ingests: set[str] = set()
        self._todo: list[tuple] = []
        self._seen: set[tuple] = set()

    # roots and references are queued here, followed by run()
    def blob(self, ns: str, digest: str, media_type: str = "") -> None:
        self._todo.append(("content", ns, digest, media_type))

    def snapshot(self, name: str, ns: str, key: str) -> None:
        """A reference to snapshot ``key`` of snapshotter ``name`` from ``ns``:
        the namespace's key, or the bare one (stores used without namespaces)."""
        for full in ({f"{ns}/{key}", key} if ns else {key}):
            self._todo.append(("snapshot", name, full))

    def follow_labels(self, ns: str, labels: Mapping[str, str]) -> None:
        for key, value in labels.items():
            if key.startswith(LABEL_GC_REF_CONTENT):
                self.blob(ns, value)
            elif key.startswith(LABEL_GC_REF_SNAPSHOT):
                self.snapshot(key[len(LABEL_GC_REF_SNAPSHOT):].split("/", 1)[0], ns, value)

    def blob_labels(self, ns: str, digest: str) -> dict[str, str]:
        return {**self.labels.get(digest, {}), **self.ns_labels.get((ns, digest), {})}

    def run(self) -> None:
        while self._todo:
            node = self._todo.pop()
            if node in self._seen:
                continue
            self._seen.add(node)
            if node[0] == "content":
                _, ns, digest, media_type = node
                self.live.add(digest)
                for child, child_type in _children(self.content, digest, media_type):
                    self.blob(ns, child, child_type)
                self.follow_labels(ns, self.blob_labels(ns, digest))
            else:
                _, name, key = node
                info = self.snapshots.get(name, {}).get(key)
                if info is None:
                    continue
                self.live_snaps[name].add(key)
                ns = key.split("/", 1)[0] if "/" in key else ""
                if info.parent:
                    self._todo.append(("snapshot", name, info.parent))
                self.follow_labels(ns, info.labels)


def _mark(store, ended: set[tuple[str, str]] = frozenset()) -> _Marker:
    metadata = store.metadata
    m = _Marker(store)
    images = {(ns, image.name): image for ns, image in metadata.all_image_targets()}
    for (ns, _), image in images.items():
        m.blob(ns, image.target.digest, image.target.media_type)
    for digest, labels in m.labels.items():
        if LABEL_GC_ROOT in labels:
            m.blob("", digest)
    for (ns, digest), labels in m.ns_labels.items():
        if LABEL_GC_ROOT in labels:
            m.blob(ns, digest)
    for name, infos in m.snapshots.items():
        for key, info in infos.items():
            if LABEL_GC_ROOT in info.labels:
                m.snapshot(name, "", key)
    for ns, c, made_from in metadata.container_roots():
        if c.snapshot_key and c.snapshotter:
            m.snapshot(c.snapshotter, ns, c.snapshot_key)
        image = images.get((ns, c.image))
        for target in (made_from, image and image.target):
            if target:
                m.blob(ns, target.digest, target.media_type)
        m.follow_labels(ns, c.labels)
    for ns in metadata.list_namespaces():
        for lease in metadata.list_leases(ns.name):
            if (ns.name, lease.id) in ended:
                continue
            for res in metadata.list_lease_resources(ns.name, lease.id):
                if res.type == "ingests":
                    m.leased_ingests.add(res.id)
                elif res.type == "content":
                    m.blob(ns.name, res.id)
                elif res.type.startswith("snapshots/"):
                    m.snapshot(res.type.split("/", 1)[1], ns.name, res.id)
    m.run()
    return m


def _ingest_busy(path: str) -> bool:
    """Whether a writer holds the ingest open (its flock on ``data``)."""
    try:
        fd = os.open(os.path.join(path, "data"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _sweep_ingests(content, leased: set[str], dry_run: bool) -> list[str]:
    removed = []
    for status in content.ingests():
        if status.ref in leased:
            continue
        path = content._ingest_dir(status.ref)
        if _ingest_busy(path):
            continue
        removed.append(status.ref)
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True)
    return removed


def _sweep_snapshots(snap, infos: dict, keep: set[str], dry_run: bool) -> list[str]:
    """Remove the snapshots not in ``keep``, children before parents (a
    snapshot with children cannot be removed); their keys."""
    doomed = [k for k in infos if k not in keep]
    depth = {}
    for key in doomed:
        d, k = 0, key
        while infos.get(k) and infos[k].parent:
            d, k = d + 1, infos[k].parent
        depth[key] = d
    removed = []
    for key in sorted(doomed, key=lambda k: -depth[k]):
        if not dry_run:
            try:
                snap.remove(key)
            except (NotFound, FailedPrecondition) as e:
                log.warning("gc: keeping snapshot %s: %s", key, e)
                continue
        removed.append(key)
    if not dry_run:
        snap.cleanup()
    return removed


def collect(store, dry_run: bool = False) -> GcResult:
    """Remove the blobs and snapshots nothing refers to; return them."""
    ended = _end_leases(store.metadata, dry_run)
    marked = _mark(store, ended)
    dead_content = [d for d in marked.labels if d not in marked.live]
    dead_snaps: list[tuple[str, str]] = []
    for name, infos in marked.snapshots.items():
        for key in _sweep_snapshots(store.snapshotter(name), infos, marked.live_snaps[name],
                                    dry_run):
            dead_snaps.append((name, key))
    if not dry_run:
        for digest in dead_content:
            try:
                store.content.delete(digest)
            except NotFound:
                pass
        store.metadata.forget_content(dead_content)
    ingests = _sweep_ingests(store.content, marked.leased_ingests, dry_run)
    return GcResult(tuple(dead_content), tuple(dead_snaps), tuple(ingests),
                    tuple(sorted(f"{ns}/{lid}" for ns, lid in ended)))
