"""Garbage collection: images, leases, root labels and live snapshots keep
what they refer to; everything else goes."""
from __future__ import annotations

from pallet.imagestore.metadata import LeaseResource
from store_helpers import needs_root

pytestmark = needs_root


def test_gc_keeps_referenced_and_removes_the_rest(store, busybox_tar):
    (rec,) = store.import_archive(busybox_tar, "default")
    top = store.unpack(rec.target, "native", namespace="default")
    snap = store.snapshotter("native").namespaced("default")
    assert store.gc() == store.gc(dry_run=True)
    result = store.gc()
    assert result.content == () and result.snapshots == ()

    orphan = store.content.write_blob(b"orphan").digest
    rooted = store.content.write_blob(b"rooted", labels={"containerd.io/gc.root": "x"}).digest
    leased = store.content.write_blob(b"leased").digest
    store.metadata.create_lease("moby", "hold")
    store.metadata.add_lease_resource("moby", "hold", LeaseResource(leased, "content"))
    assert store.gc(dry_run=True).content == (orphan,)
    assert store.content.exists(orphan)  # a dry run removes nothing
    assert store.gc().content == (orphan,)
    assert not store.content.exists(orphan) and store.content.exists(rooted)

    # a container's snapshot keeps its layers even once the image is gone
    snap.prepare("container", top)
    store.metadata.delete_image("default", rec.name)
    result = store.gc()
    assert len(result.content) == 3 and result.snapshots == ()
    assert snap.stat(top).kind == "committed"
    snap.remove("container")
    assert store.gc().snapshots == (("native", f"default/{top}"),)
    assert snap.list() == []
    store.metadata.delete_lease("moby", "hold")
    assert store.gc().content == (leased,)
