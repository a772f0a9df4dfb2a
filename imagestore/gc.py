"""Garbage collection of the store: content and snapshots nothing refers to.

Mark and sweep, with containerd's roots and references (``gc/scheduler`` and
``metadata/gc.go``), kept conservative where pallet knows less:

roots
    every image's target, in every namespace; every live lease's resources;
    blobs labelled ``containerd.io/gc.root``; every active or view snapshot
    (containers' rootfs belong to api_grpc's containers table, which this
    store does not read, so a snapshot still in use is never collected),
    except the ``extract-*`` ones an unpack makes, which live only as long
    as the lease of the pull or unpack that made them.
references
    the children a manifest or index names (config, layers, manifests);
    ``containerd.io/gc.ref.content.*`` labels (a digest);
    ``containerd.io/gc.ref.snapshot.<snapshotter>`` labels (a snapshot key,
    looked up in the namespace the reference was reached from, and bare);
    a snapshot's parent chain.

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

import attrs

from pallet.core.errors import FailedPrecondition, NotFound

from pallet.distribution.mediatypes import INDEX_TYPES, MANIFEST_TYPES

log = logging.getLogger("pallet.store_overlay.gc")

LABEL_ROOT = "containerd.io/gc.root"
LABEL_REF_CONTENT = "containerd.io/gc.ref.content."
LABEL_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."


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
    from pallet.distribution.targets import LABEL_GC_EXPIRE, LABEL_LEASE_OWNER, owner_alive

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


def _is_extract(key: str) -> bool:
    return key.rsplit("/", 1)[-1].startswith("extract-") or \
        key.split("/", 1)[-1].startswith("extract-")


def _mark(store, ended: set[tuple[str, str]] = frozenset()):
    content, metadata = store.content, store.metadata
    live: set[str] = set()
    leased_ingests: set[str] = set()
    snap_refs: dict[str, set[str]] = {name: set() for name in store.snapshotter_names()}
    labels = {info.digest: info.labels for info in content.list()}
    todo: list[tuple[str, str, str]] = []  # (namespace, digest, media type)
    for ns, image in metadata.all_image_targets():
        todo.append((ns, image.target.digest, image.target.media_type))
    for digest, lab in labels.items():
        if LABEL_ROOT in lab:
            todo.append(("", digest, ""))
    for ns in metadata.list_namespaces():
        for lease in metadata.list_leases(ns.name):
            if (ns.name, lease.id) in ended:
                continue
            for res in metadata.list_lease_resources(ns.name, lease.id):
                if res.type == "ingests":
                    leased_ingests.add(res.id)
                elif res.type == "content":
                    todo.append((ns.name, res.id, ""))
                elif res.type.startswith("snapshots/"):
                    snap_refs.setdefault(res.type.split("/", 1)[1], set()).update(
                        {res.id, f"{ns.name}/{res.id}"})
    seen: set[tuple[str, str]] = set()
    while todo:
        ns, digest, mt = todo.pop()
        if (ns, digest) in seen:
            continue
        seen.add((ns, digest))
        live.add(digest)
        todo.extend((ns, d, m) for d, m in _children(content, digest, mt))
        for key, value in labels.get(digest, {}).items():
            if key.startswith(LABEL_REF_CONTENT):
                todo.append((ns, value, ""))
            elif key.startswith(LABEL_REF_SNAPSHOT):
                name = key[len(LABEL_REF_SNAPSHOT):].split("/", 1)[0]
                snap_refs.setdefault(name, set()).update({value, f"{ns}/{value}"} if ns
                                                         else {value})
    return live, snap_refs, leased_ingests


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


def collect(store, dry_run: bool = False) -> GcResult:
    """Remove the blobs and committed snapshots nothing refers to; return them."""
    ended = _end_leases(store.metadata, dry_run)
    live, snap_refs, leased_ingests = _mark(store, ended)
    dead_content = [i.digest for i in store.content.list() if i.digest not in live]
    dead_snaps: list[tuple[str, str]] = []
    for name in store.snapshotter_names():
        snap = store.snapshotter(name)
        infos = {i.name: i for i in snap.list()}
        keep: set[str] = set()
        stack = [k for k, i in infos.items()
                 if (i.kind != "committed" and not _is_extract(k)) or k in snap_refs[name]]
        while stack:
            key = stack.pop()
            if key in keep or key not in infos:
                continue
            keep.add(key)
            if infos[key].parent:
                stack.append(infos[key].parent)
        doomed = [k for k in infos if k not in keep]
        # children before parents: a snapshot with children cannot be removed
        depth = {}
        for key in doomed:
            d, k = 0, key
            while infos.get(k) and infos[k].parent:
                d, k = d + 1, infos[k].parent
            depth[key] = d
        for key in sorted(doomed, key=lambda k: -depth[k]):
            if not dry_run:
                try:
                    snap.remove(key)
                except (NotFound, FailedPrecondition) as e:
                    log.warning("gc: keeping snapshot %s: %s", key, e)
                    continue
            dead_snaps.append((name, key))
        if not dry_run:
            snap.cleanup()
    if not dry_run:
        for digest in dead_content:
            try:
                store.content.delete(digest)
            except NotFound:
                pass
    ingests = _sweep_ingests(store.content, leased_ingests, dry_run)
    return GcResult(tuple(dead_content), tuple(dead_snaps), tuple(ingests),
                    tuple(sorted(f"{ns}/{lid}" for ns, lid in ended)))
