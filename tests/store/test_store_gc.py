"""Garbage collection: images, containers, leases and root labels keep what
they refer to; everything else goes, active snapshots included."""
from __future__ import annotations

from pallet.imagestore.containers import ContainerRecord, TypedValue
from pallet.imagestore.metadata import LeaseResource
from store_helpers import needs_root

pytestmark = needs_root

SPEC = TypedValue("types.containerd.io/opencontainers/runtime-spec/1/Spec", b"{}")


def container(cid: str, **kw) -> ContainerRecord:
    return ContainerRecord(cid, runtime="io.containerd.runc.v2", spec=SPEC, **kw)


def test_gc_keeps_referenced_and_removes_the_rest(store, busybox_tar):
    (rec,) = store.import_archive(busybox_tar, "default")
    store.unpack(rec.target, "native", namespace="default")
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
    store.metadata.delete_lease("moby", "hold")
    assert store.gc().content == (leased,)


def test_containers_are_roots(store, busybox_tar):
    """A container keeps its snapshot (and so its image's layers) and its
    image while its record exists; both go once it is deleted."""
    (rec,) = store.import_archive(busybox_tar, "default")
    top = store.unpack(rec.target, "native", namespace="default")
    snap = store.snapshotter("native").namespaced("default")
    snap.prepare("c1-rootfs", top)
    store.metadata.create_container("default", container(
        "c1", snapshotter="native", snapshot_key="c1-rootfs"))
    # an active snapshot nothing refers to is garbage, as in containerd
    snap.prepare("stray", top)
    assert store.gc().snapshots == (("native", "default/stray"),)

    store.metadata.delete_image("default", rec.name)
    result = store.gc()
    assert result.snapshots == ()
    assert len(result.content) == 3  # the image's blobs go, the layer's snapshot stays
    assert {i.name for i in snap.list()} == {top, "c1-rootfs"}

    # the image a container was made from is kept with it, even without its
    # name; a container naming an image that is not there holds nothing
    (rec,) = store.import_archive(busybox_tar, "default")
    store.metadata.create_container("default", container("c2", image=rec.name))
    store.metadata.create_container("other", container("c3", image=rec.name))
    store.metadata.delete_image("default", rec.name)
    assert store.gc().content == ()
    store.metadata.update_container("default", container("c2", image="another"), ["image"])
    assert len(store.gc().content) == 3

    store.metadata.delete_container("default", "c1")
    result = store.gc()
    assert set(result.snapshots) == {("native", "default/c1-rootfs"), ("native", f"default/{top}")}
    assert snap.list() == [] and store.content.list() == []


def test_container_labels_and_snapshot_roots(store):
    """gc.ref labels on a container, and gc.root on a snapshot, are followed."""
    blob = store.content.write_blob(b"held by a label").digest
    store.metadata.create_container("ns", container(
        "c", labels={"containerd.io/gc.ref.content.x": blob}))
    snap = store.snapshotter("native").namespaced("ns")
    snap.prepare("base-key")
    snap.commit("base", "base-key")
    snap.prepare("rooted", "base", {"containerd.io/gc.root": "2024-01-01T00:00:00Z"})
    assert store.gc().content == () and store.gc().snapshots == ()
    store.metadata.delete_container("ns", "c")
    snap.update("rooted", {}, ["labels.containerd.io/gc.root"])
    assert store.gc().content == (blob,)
    assert store.gc().snapshots == ()  # already gone in the previous run
    assert snap.list() == []


def test_namespace_content_labels(store):
    """A namespace's own labels on a blob are followed from that namespace,
    and GC forgets the holds on the blobs it removes."""
    md = store.metadata
    child = store.content.write_blob(b"child").digest
    parent = store.content.write_blob(b"parent").digest
    md.add_content_ref("a", parent, {"containerd.io/gc.ref.content.c": child})
    md.add_content_ref("a", child)
    md.create_lease("a", "l")
    md.add_lease_resource("a", "l", LeaseResource(parent, "content"))
    assert store.gc().content == ()
    md.delete_lease("a", "l")
    assert set(store.gc().content) == {parent, child}
    assert md.list_content_refs("a") == [] and md.claimed_digests() == set()
