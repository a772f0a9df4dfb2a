"""containerd's content per namespace, over the image store's shared blobs.

Blobs are stored once (``store.content``); which namespace holds which, with
its own labels, is the store's metadata (``store.metadata``, see
:mod:`pallet.imagestore.contentrefs`), where its garbage collector reads
them.  This module combines the two as containerd's Content service shows
them: a namespace sees the blobs it holds, and the blobs nobody holds
(written next to the store: an import, a local pull).
"""
from __future__ import annotations

from typing import Callable

import attrs

from pallet.core.errors import NotFound


@attrs.frozen
class Info:
    digest: str
    size: int
    created_at: object   # datetime (UTC)
    updated_at: object
    labels: dict = attrs.field(factory=dict, eq=False)


class ContentNamespaces:
    """Content as one namespace sees it; ``store_of()`` gives the image store."""

    def __init__(self, store_of: Callable[[], object]):
        self._store_of = store_of

    @property
    def _store(self):
        return self._store_of()

    @staticmethod
    def _not_found(digest: str) -> NotFound:
        return NotFound(f"content digest {digest}: not found")

    def info(self, ns: str, digest: str) -> Info:
        store = self._store
        blob = store.content.info(digest)  # NotFound when the blob is gone
        ref = store.metadata.get_content_ref(ns, digest)
        if ref is not None:
            return Info(digest, blob.size, ref.created_at, ref.updated_at, dict(ref.labels))
        if digest in store.metadata.claimed_digests():
            raise self._not_found(digest)
        return Info(digest, blob.size, blob.created_at, blob.updated_at, dict(blob.labels))

    def check(self, ns: str, digest: str) -> None:
        """NotFound unless ``digest`` is visible in ``ns``."""
        self.info(ns, digest)

    def list(self, ns: str) -> list[Info]:
        store = self._store
        mine = {ref.digest: ref for ref in store.metadata.list_content_refs(ns)}
        claimed = store.metadata.claimed_digests()
        out = []
        for blob in store.content.list():
            ref = mine.get(blob.digest)
            if ref is not None:
                out.append(Info(blob.digest, blob.size, ref.created_at, ref.updated_at,
                                dict(ref.labels)))
            elif blob.digest not in claimed:
                out.append(Info(blob.digest, blob.size, blob.created_at, blob.updated_at,
                                dict(blob.labels)))
        return out

    def add(self, ns: str, digest: str, labels: dict | None = None, *,
            fresh: bool = False) -> None:
        """Record that ``ns`` holds ``digest`` (its labels replaced when given);
        ``fresh``: just committed (see the metadata's ``add_content_ref``)."""
        self._store.metadata.add_content_ref(ns, digest, labels, fresh=fresh)

    def update(self, ns: str, digest: str, labels: dict, paths) -> Info:
        """containerd's label update: whole set, or ``labels.KEY`` paths."""
        blob_labels = self.info(ns, digest).labels
        self._store.metadata.update_content_ref(ns, digest, labels, paths or None,
                                                unclaimed_labels=blob_labels)
        return self.info(ns, digest)

    def delete(self, ns: str, digest: str) -> None:
        """Drop ``digest`` from ``ns``; the blob goes when no namespace holds it any more."""
        self.info(ns, digest)
        store = self._store
        if not store.metadata.delete_content_ref(ns, digest):
            try:
                store.content.delete(digest)
            except NotFound:
                pass
