"""The ``image_store`` role's contract (``pallet.core.contracts.ImageStore``
and ``Snapshotter``) against every installed implementation, as
pallet-containerd drives it: real mounts of the snapshots, a real image
(the built-in busybox), content, metadata, unpack, archives and GC.

Each test has a store of its own under its tmp_path (a kernel whose
image_store role is the plugin under test), and unmounts what it mounted.
"""
from __future__ import annotations

import errno
import os

import attrs
import pytest

from contract_helpers import implementations, kernel_for
from pallet.core import contracts
from pallet.core.errors import (AlreadyExists, FailedPrecondition, InvalidArgument,
                                NotFound)
from pallet.core.paths import Paths

pytestmark = pytest.mark.root

SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


def _overlay_available() -> bool:
    with open("/proc/filesystems") as f:
        return any(line.split()[-1] == "overlay" for line in f if line.strip())


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory) -> str:
    from pallet.distribution import busybox_image

    path = str(tmp_path_factory.mktemp("busybox") / "busybox.tar")
    busybox_image.write_archive(path)
    return path


@pytest.fixture(params=implementations("image_store"))
def store(request, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("snapshots are mounted and layers applied as root")
    kernel = kernel_for("image_store", request.param,
                        Paths(str(tmp_path / "data"), str(tmp_path / "exec")))
    s = kernel.provide("image_store")
    if s.default_snapshotter == "overlayfs" and not _overlay_available():
        pytest.skip("overlayfs is not available")
    yield s
    s.close()


@pytest.fixture
def mount(tmp_path):
    """``mount(mounts) -> directory``; everything is unmounted at teardown."""
    from pallet.linux.mounts import mount_all, unmount_all

    done = []

    def do(mounts) -> str:
        target = str(tmp_path / f"mnt{len(done)}")
        os.makedirs(target)
        done.append(target)
        mount_all(mounts, target)
        return target
    yield do
    for target in reversed(done):
        unmount_all(target, detach=True)


def _container(cid: str, **kw):
    from pallet.imagestore.containers import ContainerRecord, TypedValue

    return ContainerRecord(cid, runtime="io.containerd.runc.v2",
                           spec=TypedValue(SPEC_URL, b'{"ociVersion":"1.0.2"}'), **kw)


def _write(root: str, name: str, data: str) -> None:
    with open(os.path.join(root, name), "w") as f:
        f.write(data)


def _read(root: str, name: str) -> str:
    with open(os.path.join(root, name)) as f:
        return f.read()


# --- the objects -------------------------------------------------------------------------

def test_the_store_and_its_snapshotters_fill_the_contract(store):
    assert isinstance(store, contracts.ImageStore)
    names = store.snapshotter_names()
    assert store.default_snapshotter in names
    for name in names:
        snap = store.snapshotter(name)
        assert isinstance(snap, contracts.Snapshotter) and snap.name == name
        assert isinstance(snap.namespaced("contract"), contracts.Snapshotter)
    assert store.snapshotter().name == store.default_snapshotter
    with pytest.raises(NotFound):
        store.snapshotter("no-such-snapshotter")


# --- snapshotter ----------------------------------------------------------------------------

def test_snapshots_prepare_commit_view(store, mount):
    snap = store.snapshotter().namespaced("contract")
    base = mount(snap.prepare("base-key", labels={"a": "1"}))
    _write(base, "lower", "from the base")
    info = snap.stat("base-key")
    assert (info.name, info.kind, info.parent, dict(info.labels)) == \
        ("base-key", "active", "", {"a": "1"})
    snap.commit("base", "base-key")
    assert snap.stat("base").kind == "committed"
    with pytest.raises(NotFound):
        snap.stat("base-key")

    top = mount(snap.prepare("top", "base"))
    assert _read(top, "lower") == "from the base"
    _write(top, "upper", "new")
    _write(top, "lower", "changed above")
    assert snap.stat("top").parent == "base" and snap.mounts("top")
    view = mount(snap.view("look", "base"))
    assert _read(view, "lower") == "from the base"  # the parent did not change
    assert not os.path.exists(os.path.join(view, "upper"))
    with pytest.raises(OSError) as e:
        _write(view, "x", "y")
    assert e.value.errno == errno.EROFS
    assert snap.stat("look").kind == "view"
    assert snap.usage("base").size > 0 and snap.usage("base").inodes >= 2
    assert snap.usage("top").inodes >= 1

    assert sorted(i.name for i in snap.list()) == ["base", "look", "top"]
    assert [i.name for i in snap.list("kind==committed")] == ["base"]
    assert [i.name for i in snap.list(["parent==base,kind==view"])] == ["look"]
    assert snap.update("base", {"b": "2"}, ["labels.b"]).labels == {"a": "1", "b": "2"}
    assert snap.update("base", {"c": "3"}).labels == {"c": "3"}
    assert [i.name for i in snap.list('labels.c==3')] == ["base"]


def test_snapshot_errors(store):
    snap = store.snapshotter().namespaced("contract")
    snap.prepare("k")
    with pytest.raises(AlreadyExists):
        snap.prepare("k")
    with pytest.raises(NotFound):
        snap.prepare("child", "no-such-parent")
    with pytest.raises(InvalidArgument):
        snap.prepare("child", "k")  # an active snapshot is no parent
    snap.commit("c", "k")
    with pytest.raises(FailedPrecondition):
        snap.commit("c2", "c")  # only active snapshots commit
    with pytest.raises(FailedPrecondition):
        snap.mounts("c")
    snap.view("v", "c")
    with pytest.raises(FailedPrecondition):
        snap.remove("c")  # it has a child
    snap.remove("v")
    snap.remove("c")
    for call in (lambda: snap.stat("c"), lambda: snap.remove("c"),
                 lambda: snap.usage("c"), lambda: snap.update("c", {})):
        with pytest.raises(NotFound):
            call()
    assert snap.list() == [] and isinstance(snap.cleanup(), list)


def test_snapshot_keys_are_per_namespace(store):
    a = store.snapshotter().namespaced("alpha")
    b = store.snapshotter().namespaced("beta")
    a.prepare("same")
    b.prepare("same")  # no clash: the keys are the namespace's
    a.commit("only-in-alpha", "same")
    assert [i.name for i in b.list()] == ["same"]
    with pytest.raises(NotFound):
        b.stat("only-in-alpha")
    with pytest.raises(NotFound):
        b.prepare("x", "only-in-alpha")


# --- content -------------------------------------------------------------------------------

def test_content(store):
    content = store.content
    desc = content.write_blob(b"hello", labels={"k": "v"})
    assert desc.digest.startswith("sha256:") and desc.size == 5
    info = content.info(desc.digest)
    assert (info.size, dict(info.labels)) == (5, {"k": "v"})
    assert content.read(desc.digest) == b"hello"
    assert desc.digest in {i.digest for i in content.list()}
    assert dict(content.update(desc.digest, {"x": "y"}, ["labels.x"]).labels) == \
        {"k": "v", "x": "y"}
    with content.writer("upload-1", expected_size=3) as w:
        w.write(b"abc")
        with pytest.raises(InvalidArgument):
            w.commit(3, "sha256:" + "0" * 64)
        digest = w.commit(3)
    assert content.read(digest) == b"abc"
    with content.writer("upload-2") as w:
        w.write(b"partial")
    assert "upload-2" in {s.ref for s in content.ingests()}
    content.abort("upload-2")
    assert "upload-2" not in {s.ref for s in content.ingests()}
    content.delete(desc.digest)
    with pytest.raises(NotFound):
        content.info(desc.digest)


# --- metadata ------------------------------------------------------------------------------

def test_images_leases_namespaces(store):
    from pallet.core.models import Descriptor
    from pallet.imagestore.metadata import ImageRecord, LeaseResource

    md = store.metadata
    target = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "1" * 64, 1)
    md.create_image("ns", ImageRecord("docker.io/library/x:1", target, {"l": "1"}))
    with pytest.raises(AlreadyExists):
        md.create_image("ns", ImageRecord("docker.io/library/x:1", target))
    assert md.get_image("ns", "docker.io/library/x:1").target == target
    assert [i.name for i in md.list_images("ns", "labels.l==1")] == ["docker.io/library/x:1"]
    with pytest.raises(NotFound):
        md.get_image("other", "docker.io/library/x:1")
    md.create_lease("ns", "lease-1")
    res = LeaseResource("sha256:" + "2" * 64, "content")
    md.add_lease_resource("ns", "lease-1", res)
    assert md.list_lease_resources("ns", "lease-1") == [res]
    with pytest.raises(FailedPrecondition):
        md.delete_namespace("ns")
    md.delete_lease("ns", "lease-1")
    md.delete_image("ns", "docker.io/library/x:1")
    md.delete_namespace("ns")
    assert "ns" not in {n.name for n in md.list_namespaces()}


def test_containers(store):
    md = store.metadata
    c = md.create_container("ns", _container("c1", image="docker.io/library/x:1",
                                             labels={"role": "web"}))
    assert (c.id, c.image, dict(c.labels)) == ("c1", "docker.io/library/x:1", {"role": "web"})
    assert c.spec.type_url == SPEC_URL and c.created_at is not None
    with pytest.raises(AlreadyExists):
        md.create_container("ns", _container("c1"))
    for bad in (_container("c2", snapshot_key="k"), _container("no spaces"),
                attrs.evolve(_container("c3"), runtime=""),
                attrs.evolve(_container("c4"), spec=None)):
        with pytest.raises(InvalidArgument):
            md.create_container("ns", bad)
    md.create_container("ns", _container("c2", snapshotter="s", snapshot_key="k"))
    assert [x.id for x in md.list_containers("ns")] == ["c1", "c2"]
    assert [x.id for x in md.list_containers("ns", "labels.role==web")] == ["c1"]
    assert [x.id for x in md.list_containers("ns", ["id==c2", "image~=x:1$"])] == ["c1", "c2"]
    new = md.update_container("ns", _container("c1", image="y", labels={"tier": "1"}),
                              ["labels.tier"])
    assert new.image == "docker.io/library/x:1" and dict(new.labels) == \
        {"role": "web", "tier": "1"}
    new = md.update_container("ns", _container("c1", image="y"))
    assert new.image == "y" and dict(new.labels) == {}
    with pytest.raises(InvalidArgument):
        md.update_container("ns", _container("c1"), ["runtime"])
    with pytest.raises(FailedPrecondition):
        md.delete_namespace("ns")
    md.delete_container("ns", "c1")
    with pytest.raises(NotFound):
        md.get_container("ns", "c1")
    with pytest.raises(NotFound):
        md.delete_container("ns", "c1")


def test_content_per_namespace(store):
    md = store.metadata
    digest = store.content.write_blob(b"shared").digest
    assert md.get_content_ref("a", digest) is None and digest not in md.claimed_digests()
    md.add_content_ref("a", digest, {"x": "1"})
    assert dict(md.get_content_ref("a", digest).labels) == {"x": "1"}
    assert md.get_content_ref("b", digest) is None and digest in md.claimed_digests()
    ref = md.update_content_ref("b", digest, {"y": "2"}, ["labels.y"], {"x": "0"})
    assert dict(ref.labels) == {"x": "0", "y": "2"}
    assert [r.digest for r in md.list_content_refs("b")] == [digest]
    assert md.delete_content_ref("a", digest)  # b still holds it
    assert not md.delete_content_ref("b", digest)


# --- images: unpack, archives ----------------------------------------------------------------

def test_unpack_and_archives(store, busybox_tar, tmp_path, mount):
    (rec,) = store.import_archive(busybox_tar, "contract")
    assert rec.name == "docker.io/library/busybox:latest"
    top = store.unpack(rec.target, namespace="contract")
    assert top == store.resolve(rec.target).chain_ids[-1]
    snap = store.snapshotter().namespaced("contract")
    assert snap.stat(top).kind == "committed"
    assert store.unpack(rec.target, namespace="contract") == top  # idempotent
    root = mount(snap.view("look", top))
    assert os.path.isfile(os.path.join(root, "bin", "busybox"))
    assert os.path.samefile(os.path.join(root, "bin", "sh"), os.path.join(root, "bin", "busybox"))

    out = str(tmp_path / "saved.tar")
    store.export_archive(out, "contract", [rec.name])
    (again,) = store.import_archive(out, "elsewhere")
    assert (again.name, again.target) == (rec.name, rec.target)


# --- garbage collection ----------------------------------------------------------------------

def test_gc_keeps_what_containers_and_images_hold(store, busybox_tar):
    (rec,) = store.import_archive(busybox_tar, "contract")
    top = store.unpack(rec.target, namespace="contract")
    name = store.default_snapshotter
    snap = store.snapshotter().namespaced("contract")
    snap.prepare("c1", top)
    store.metadata.create_container("contract", _container(
        "c1", image=rec.name, snapshotter=name, snapshot_key="c1"))
    stray = store.content.write_blob(b"nobody's").digest
    result = store.gc()
    assert result.content == (stray,) and result.snapshots == ()
    store.metadata.delete_image("contract", rec.name)
    assert store.gc().content == ()  # the container holds its image
    store.metadata.delete_container("contract", "c1")
    result = store.gc()
    assert {k for _, k in result.snapshots} == {"contract/c1", f"contract/{top}"}
    assert len(result.content) == 3 and store.content.list() == []
    assert snap.list() == []
