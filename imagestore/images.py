"""Reading images out of the content store: manifests, indexes, configs,
platforms, chain IDs, and unpacking layers into a snapshotter.

These are the steps containerd's client library does (``images.Manifest``,
``identity.ChainIDs``, ``rootfs.ApplyLayers``); pallet runs them next to the
store, for palletd (image inspect, create) and for tests.
"""
from __future__ import annotations

import time
import uuid


from pallet.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pallet.core.models import Descriptor
from pallet.distribution.mediatypes import (
    LABEL_SNAPSHOT_REF,
    LABEL_GC_SNAPSHOT)
from pallet.distribution.manifests import ResolvedImage

def unpack_layer(snapshotter, applier, layer: Descriptor, diff_id: str, chain_id: str,
                 parent: str | None, on_key=None) -> bool:
    """Make ``layer`` the committed snapshot ``chain_id`` on top of ``parent``
    unless it exists; return whether it was unpacked now.

    The layer is applied into a fresh active snapshot (``extract-...`` key,
    passed to ``on_key`` first so that a caller can lease it), checked against
    its diff ID and committed; any failure removes the half-applied snapshot.
    """
    try:
        info = snapshotter.stat(chain_id)
    except NotFound:
        info = None
    if info is not None:
        if info.kind != "committed":
            raise FailedPrecondition(f"snapshot {chain_id} exists but is not committed")
        return False
    key = f"extract-{time.time_ns()}-{uuid.uuid4().hex[:8]} {chain_id}"
    if on_key is not None:
        on_key(key)
    mounts = snapshotter.prepare(key, parent, {LABEL_SNAPSHOT_REF: chain_id})
    try:
        diff = applier.apply(layer, mounts)
        if diff.digest != diff_id:
            raise InvalidArgument(f"layer {layer.digest}: uncompressed digest {diff.digest} "
                                  f"does not match diff ID {diff_id}")
        try:
            snapshotter.commit(chain_id, key, {LABEL_SNAPSHOT_REF: chain_id})
        except AlreadyExists:  # unpacked meanwhile by another caller
            snapshotter.remove(key)
            return False
    except BaseException:
        try:
            snapshotter.remove(key)
        except NotFound:
            pass
        raise
    return True


def label_unpacked(content, config_digest: str, snapshotter_name: str, top: str) -> None:
    """Label an image's config blob with the top snapshot of its unpacked layers
    (containerd's ``gc.ref.snapshot.<snapshotter>``), so that GC keeps them."""
    key = LABEL_GC_SNAPSHOT.format(snapshotter_name)
    try:
        content.update(config_digest, {key: top}, [f"labels.{key}"])
    except NotFound:
        pass


def unpack(content, snapshotter, applier, image: ResolvedImage,
           labels_snapshotter: str | None = None, on_key=None) -> str:
    """Make sure every layer of ``image`` is a committed snapshot named by its
    chain ID; return the top chain ID (the parent for a container's rootfs).

    Layers already unpacked are skipped (see :func:`unpack_layer`).
    ``labels_snapshotter`` names the snapshotter in the GC label put on the
    config blob (None: no label).
    """
    parent = None
    for layer, diff_id, chain_id in zip(image.layers, image.diff_ids, image.chain_ids):
        unpack_layer(snapshotter, applier, layer, diff_id, chain_id, parent, on_key)
        parent = chain_id
    if labels_snapshotter and parent:
        label_unpacked(content, image.config_desc.digest, labels_snapshotter, parent)
    return parent or ""
