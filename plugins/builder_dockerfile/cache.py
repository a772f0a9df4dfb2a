"""The build cache, as dockerd's legacy builder keeps it: a step is reused when
an image was made before from the same parent image with the same container
config (the instruction, as ``Cmd``, and for COPY/ADD the checksums of what
they copy), compared on the fields dockerd compares (not ``Image``,
``Hostname``, ``WorkingDir``...).

Entries are rows of a small SQLite file under palletd's data root, each
naming the manifest of the step's image; the images themselves are held in
pallet-containerd by one lease (``pallet-build-cache``), so that they
outlive the build without being images anyone sees, and go with
``POST /build/prune``.  A row whose manifest is gone is dropped on lookup.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time

from pallet.core import errors
from pallet.core.models import Descriptor
from pallet.distribution.mediatypes import MT_DOCKER_MANIFEST
from pallet.imagestore.sqlite import Database

LEASE = "pallet-build-cache"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    parent TEXT NOT NULL,
    key TEXT NOT NULL,
    image TEXT NOT NULL,
    manifest TEXT NOT NULL,
    msize INTEGER NOT NULL,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (parent, key)
);
CREATE INDEX IF NOT EXISTS cache_image ON cache(image);
CREATE TABLE IF NOT EXISTS links (
    key TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL
);
"""


def compare_key(config: dict) -> str:
    """What dockerd's cache compares of a container config, as one digest."""
    doc = {
        "AttachStdout": bool(config.get("AttachStdout")),
        "AttachStderr": bool(config.get("AttachStderr")),
        "User": config.get("User") or "",
        "OpenStdin": bool(config.get("OpenStdin")),
        "Tty": bool(config.get("Tty")),
        "Cmd": list(config.get("Cmd") or []),
        "Env": list(config.get("Env") or []),
        "Labels": sorted((config.get("Labels") or {}).items()),
        "ExposedPorts": sorted(config.get("ExposedPorts") or {}),
        "Entrypoint": list(config.get("Entrypoint") or []),
        "Volumes": sorted(config.get("Volumes") or {}),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _key(config: dict, extra: str) -> str:
    key = compare_key(config)
    return hashlib.sha256((key + extra).encode()).hexdigest() if extra else key


class BuildCache:
    """The cache index (see the module doc)."""

    def __init__(self, root: str):
        os.makedirs(root, mode=0o700, exist_ok=True)
        self.db = Database(os.path.join(root, "cache.db"), _SCHEMA)
        self._lease_ready = False
        #: manifest digest -> image read before (blobs never change)
        self._images: dict[str, object] = {}

    def close(self) -> None:
        self.db.close()

    async def _lease(self, ctrd) -> None:
        if self._lease_ready:
            return
        try:
            await ctrd.lease_create(LEASE, expire=None)
        except errors.AlreadyExists:
            pass
        self._lease_ready = True

    # --- steps -----------------------------------------------------------------------------
    async def lookup(self, ctrd, parent: str, config: dict, extra: str = ""):
        """The cached image made from ``parent`` with ``config`` (and, for
        what dockerd's cache does not know, ``extra``: RUN's mounts,
        COPY's --chmod), or None."""
        from pallet.engine.build_image import read_image

        key = _key(config, extra)
        with self.db.read() as conn:
            row = conn.execute("SELECT manifest, msize FROM cache WHERE parent=? AND key=?",
                               (parent, key)).fetchone()
        if row is None:
            return None
        try:
            img = self._images.get(row[0])
            if img is None:
                img = await read_image(ctrd, Descriptor(MT_DOCKER_MANIFEST, row[0], row[1]))
                if len(self._images) > 4096:
                    self._images.clear()
                self._images[row[0]] = img
            if img.chain:
                await ctrd.snapshot_stat(img.chain)
        except errors.NotFound:
            self._images.pop(row[0], None)
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM cache WHERE parent=? AND key=?", (parent, key))
            return None
        with contextlib.suppress(Exception):
            with self.db.transaction() as conn:
                conn.execute("UPDATE cache SET used=? WHERE parent=? AND key=?",
                             (int(time.time()), parent, key))
        return img

    async def store(self, ctrd, parent: str, config: dict, img, layer_size: int,
                    extra: str = "") -> None:
        """Remember ``img`` (written, with its manifest) as the step from
        ``parent`` with ``config``; the cache lease holds its manifest first."""
        await self._lease(ctrd)
        with contextlib.suppress(errors.NotImplementedYet):
            await ctrd.lease_add_resource(LEASE, img.manifest.digest, "content")
        self._images[img.manifest.digest] = img
        now = int(time.time())
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO cache(parent, key, image, manifest, msize, "
                         "size, created, used) VALUES(?,?,?,?,?,?,?,?)",
                         (parent, _key(config, extra), img.id, img.manifest.digest,
                          img.manifest.size, layer_size, now, now))

    def parent_of(self, image_id: str) -> str | None:
        """The parent a cached image was made from (None: not from this cache)."""
        with self.db.read() as conn:
            row = conn.execute("SELECT parent FROM cache WHERE image=? LIMIT 1",
                               (image_id,)).fetchone()
        return row[0] if row else None

    def ancestors(self, image_id: str) -> set[str]:
        """``image_id`` and the images it was built on, as far as the cache knows."""
        out = set()
        cur = image_id
        while cur and cur not in out:
            out.add(cur)
            cur = self.parent_of(cur) or ""
        return out

    # --- COPY --link layers ----------------------------------------------------------------
    def link_layer(self, key: str) -> Descriptor | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT digest, size FROM links WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        from pallet.distribution.mediatypes import MT_OCI_LAYER
        return Descriptor(MT_OCI_LAYER, row[0], row[1])

    async def store_link(self, ctrd, key: str, layer: Descriptor) -> None:
        await self._lease(ctrd)
        with contextlib.suppress(errors.NotImplementedYet):
            await ctrd.lease_add_resource(LEASE, layer.digest, "content")
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO links(key, digest, size, created) "
                         "VALUES(?,?,?,?)", (key, layer.digest, layer.size, int(time.time())))

    # --- prune ----------------------------------------------------------------------------
    async def prune(self, ctrd, *, all_: bool = False, keep_storage: int = 0,
                    until: float | None = None) -> tuple[list[str], int]:
        """Drop entries (all of them, those older than ``until``, or the least
        recently used beyond ``keep_storage`` bytes); ``(ids, bytes)``."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT parent, key, image, manifest, size, used FROM cache "
                                "ORDER BY used").fetchall()
            links = conn.execute("SELECT key, digest, size, created FROM links").fetchall()
        doomed = []
        total = sum(r[4] for r in rows)
        for r in rows:
            if until is not None and r[5] >= until:
                continue
            if keep_storage and total <= keep_storage:
                break
            doomed.append(r)
            total -= r[4]
        dead_links = [x for x in links if all_ or not keep_storage
                      and (until is None or x[3] < until)]
        for r in doomed:
            with contextlib.suppress(errors.PalletError):
                await ctrd.lease_delete_resource(LEASE, r[3], "content")
        for x in dead_links:
            with contextlib.suppress(errors.PalletError):
                await ctrd.lease_delete_resource(LEASE, x[1], "content")
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM cache WHERE parent=? AND key=?",
                             [(r[0], r[1]) for r in doomed])
            conn.executemany("DELETE FROM links WHERE key=?", [(x[0],) for x in dead_links])
        ids = [r[2] for r in doomed] + [x[1] for x in dead_links]
        return ids, sum(r[4] for r in doomed) + sum(x[2] for x in dead_links)
