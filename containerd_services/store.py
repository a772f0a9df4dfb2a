"""The one place that knows the shape of the image store role object.

The services reach the content store, the image/namespace/lease metadata,
the snapshotters and the layer applier of ``kernel.provide("image_store")``
only through these functions.
"""
from __future__ import annotations

from pallet.core import errors


def content(store):
    """The content store (blobs by digest, ingests)."""
    return store.content


def metadata(store):
    """Namespaces, images and leases per containerd namespace."""
    return store.metadata


def snapshotter(store, name: str, namespace: str):
    """The snapshotter ``name`` seen from ``namespace`` (keys are per namespace)."""
    name = name or "overlayfs"
    try:
        sn = store.snapshotter(name)
    except (KeyError, errors.NotFound):
        raise errors.NotFound(f"snapshotter not loaded: {name}: not found") from None
    if sn is None:
        raise errors.NotFound(f"snapshotter not loaded: {name}: not found")
    return sn.namespaced(namespace)


def snapshotter_names(store) -> list[str]:
    names = getattr(store, "snapshotter_names", None)
    if callable(names):
        return list(names())
    return ["overlayfs"]


def applier(store):
    """The layer applier: ``apply(descriptor, mounts) -> descriptor``."""
    return store.applier


def differ(store):
    """containerd's comparer: ``compare(lower, upper, media_type=, ref=, labels=)
    -> descriptor``; the store's own if it has one, else the walking differ
    over its content store."""
    own = getattr(store, "differ", None)
    if own is not None:
        return own
    from pallet.imagestore.differ import Differ
    return Differ(store.content)
