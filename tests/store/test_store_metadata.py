"""Image, namespace and lease metadata, and containerd's filter syntax."""
from __future__ import annotations

import sqlite3

import attrs
import pytest

from pallet.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pallet.core.models import Descriptor
from pallet.containerd import filters
from pallet.imagestore.metadata import ImageRecord, LeaseResource, MetadataStore

MT = "application/vnd.docker.distribution.manifest.v2+json"
D1 = Descriptor(MT, "sha256:" + "1" * 64, 100)
D2 = Descriptor("application/vnd.oci.image.index.v1+json", "sha256:" + "2" * 64, 200,
                (("org.opencontainers.image.ref.name", "latest"),))


@pytest.fixture
def md(tmp_path):
    s = MetadataStore(str(tmp_path / "meta" / "meta.db"))
    yield s
    s.close()


def test_image_lifecycle(md):
    created = md.create_image("default", ImageRecord("docker.io/library/a:1", D1, {"k": "v"}))
    assert created.target == D1 and created.labels == {"k": "v"}
    assert created.created_at == created.updated_at is not None
    with pytest.raises(AlreadyExists):
        md.create_image("default", ImageRecord("docker.io/library/a:1", D2))
    # namespaces are separate
    md.create_image("moby", ImageRecord("docker.io/library/a:1", D2))
    assert md.get_image("moby", "docker.io/library/a:1").target == D2
    assert md.get_image("default", "docker.io/library/a:1").target == D1
    updated = md.update_image("default", ImageRecord("docker.io/library/a:1", D2, {}))
    assert updated.target == D2 and updated.labels == {}
    assert updated.created_at == created.created_at and updated.updated_at > created.updated_at
    md.delete_image("default", "docker.io/library/a:1")
    with pytest.raises(NotFound):
        md.get_image("default", "docker.io/library/a:1")
    with pytest.raises(NotFound):
        md.delete_image("default", "docker.io/library/a:1")
    with pytest.raises(NotFound):
        md.update_image("default", ImageRecord("docker.io/library/a:1", D1))


def test_update_fieldpaths(md):
    md.create_image("ns", ImageRecord("x", D1, {"a": "1", "b": "2"}))
    r = md.update_image("ns", ImageRecord("x", D2, {"a": "9"}), ["labels.a"])
    assert r.target == D1 and r.labels == {"a": "9", "b": "2"}
    r = md.update_image("ns", ImageRecord("x", D2, {}), ["target"])
    assert r.target == D2 and r.labels == {"a": "9", "b": "2"}
    with pytest.raises(InvalidArgument):
        md.update_image("ns", ImageRecord("x", D2), ["name"])


def test_put_image_repoints(md):
    md.put_image("ns", ImageRecord("x", D1, {"a": "1"}))
    r = md.put_image("ns", ImageRecord("x", D2, {"b": "2"}))
    assert r.target == D2 and r.labels == {"a": "1", "b": "2"}


def test_invalid_images_refused(md):
    for bad in (ImageRecord("", D1), ImageRecord("x", attrs.evolve(D1, media_type="")),
                ImageRecord("x", attrs.evolve(D1, digest="sha256:nothex"))):
        with pytest.raises(InvalidArgument):
            md.create_image("ns", bad)
    with pytest.raises(InvalidArgument):
        md.create_image("bad/ns", ImageRecord("x", D1))


def test_list_with_filters(md):
    md.create_image("ns", ImageRecord("docker.io/library/a:1", D1, {"color": "red"}))
    md.create_image("ns", ImageRecord("docker.io/library/b:1", D2, {"color": "blue",
                                                                    "a.b/c": "x"}))
    md.create_image("other", ImageRecord("docker.io/library/c:1", D1))
    names = lambda f: [i.name for i in md.list_images("ns", f)]  # noqa: E731
    assert names(None) == ["docker.io/library/a:1", "docker.io/library/b:1"]
    assert names("name==docker.io/library/a:1") == ["docker.io/library/a:1"]
    assert names(f"target.digest=={D2.digest}") == ["docker.io/library/b:1"]
    assert names("labels.color==red") == ["docker.io/library/a:1"]
    assert names('labels."a.b/c"') == ["docker.io/library/b:1"]
    assert names("labels.color!=red") == ["docker.io/library/b:1"]
    assert names("name~=b:1") == ["docker.io/library/b:1"]
    assert names(["labels.color==red", "labels.color==blue"]) == \
        ["docker.io/library/a:1", "docker.io/library/b:1"]
    assert names("labels.color==red,name~=b:") == []
    with pytest.raises(InvalidArgument):
        md.list_images("ns", "name==x,")
    with pytest.raises(InvalidArgument):
        md.list_images("ns", "name~=(")


def test_filter_parser_quoting():
    (sel,), = filters.parse(r'labels."with\"quote"~=/^a\/b$/')
    assert sel.fieldpath == ("labels", 'with"quote') and sel.op == "~=" and sel.value == r"^a/b$"


def test_namespaces(md):
    md.create_namespace("alpha", {"x": "1"})
    with pytest.raises(AlreadyExists):
        md.create_namespace("alpha")
    md.create_image("beta", ImageRecord("x", D1))  # created implicitly
    assert [n.name for n in md.list_namespaces()] == ["alpha", "beta"]
    assert md.update_namespace("alpha", {"y": "2"}, ["labels.y"]).labels == {"x": "1", "y": "2"}
    with pytest.raises(FailedPrecondition, match="must be empty"):
        md.delete_namespace("beta")
    md.delete_image("beta", "x")
    md.delete_namespace("beta")
    with pytest.raises(NotFound):
        md.get_namespace("beta")
    with pytest.raises(InvalidArgument):
        md.create_namespace("no spaces")


def test_leases(md):
    md.create_lease("ns", "l1", {"containerd.io/gc.expire": "x"})
    with pytest.raises(AlreadyExists):
        md.create_lease("ns", "l1")
    r = LeaseResource("sha256:" + "3" * 64, "content")
    md.add_lease_resource("ns", "l1", r)
    md.add_lease_resource("ns", "l1", r)
    assert md.list_lease_resources("ns", "l1") == [r]
    md.delete_lease_resource("ns", "l1", r)
    assert md.list_lease_resources("ns", "l1") == []
    md.add_lease_resource("ns", "l1", r)
    assert [lease.id for lease in md.list_leases("ns")] == ["l1"]
    md.delete_lease("ns", "l1")
    with pytest.raises(NotFound):
        md.list_lease_resources("ns", "l1")
    with pytest.raises(NotFound):
        md.delete_lease("ns", "l1")


def test_persisted_in_wal_sqlite(md, tmp_path):
    md.create_image("ns", ImageRecord("x", D2, {"a": "b"}))
    md.close()
    conn = sqlite3.connect(str(tmp_path / "meta" / "meta.db"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    reopened = MetadataStore(str(tmp_path / "meta" / "meta.db"))
    assert reopened.get_image("ns", "x").target == D2  # annotations kept
    reopened.close()


def test_failed_transaction_leaves_nothing(md):
    md.create_image("ns", ImageRecord("x", D1))
    with pytest.raises(RuntimeError):
        with md.db.transaction() as conn:
            conn.execute("DELETE FROM images")
            raise RuntimeError("crash half-way")
    assert md.get_image("ns", "x").target == D1


def test_container_records_of_the_first_layout_are_upgraded(tmp_path):
    """pallet-containerd first kept its containers table itself, one serialised
    Container message per row: opening the metadata turns those rows into
    records that GC sees, with nothing lost."""
    import sqlite3

    from pallet.proto.containerd.services.containers.v1 import containers_pb2
    from pallet.imagestore.metadata import MetadataStore

    path = str(tmp_path / "meta.db")
    old = containers_pb2.Container(id="c1", image="docker.io/library/busybox:latest",
                                   snapshotter="overlayfs", snapshot_key="c1",
                                   labels={"a": "b"})
    old.runtime.name = "io.containerd.runc.v2"
    old.spec.type_url, old.spec.value = "spec-url", b'{"ociVersion":"1.0.2"}'
    old.extensions["x"].type_url = "ext-url"
    old.created_at.FromNanoseconds(1_000_000_000 * 10**9)
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE containers (namespace TEXT NOT NULL, id TEXT NOT NULL, "
                       "record BLOB NOT NULL, PRIMARY KEY (namespace, id));")
    conn.execute("INSERT INTO containers VALUES(?,?,?)", ("moby", "c1", old.SerializeToString()))
    conn.commit()
    conn.close()
    md = MetadataStore(path)
    c = md.get_container("moby", "c1")
    assert (c.image, c.snapshotter, c.snapshot_key, dict(c.labels), c.runtime) == \
        ("docker.io/library/busybox:latest", "overlayfs", "c1", {"a": "b"},
         "io.containerd.runc.v2")
    assert (c.spec.type_url, c.spec.value) == ("spec-url", b'{"ociVersion":"1.0.2"}')
    assert c.extensions["x"].type_url == "ext-url" and c.runtime_options is None
    assert c.created_at.year == 2001
    assert [n.name for n in md.list_namespaces()] == ["moby"]
    assert [x.id for ns, x, _ in md.container_roots()] == ["c1"]
    md.close()
    MetadataStore(path).get_container("moby", "c1")  # a second opening changes nothing
