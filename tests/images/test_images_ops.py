"""Image operations through palletd with the docker CLI and the pallet CLI:
tag, rmi, images (filters, digests, formats), history, save/load, import,
export, image prune with the garbage collection it triggers, system df."""
from __future__ import annotations

import io
import json
import subprocess
import tarfile

import pytest

from images_helpers import image_ids, wait_for

pytestmark = pytest.mark.root


@pytest.fixture
def d(palletd, busybox_tar):
    """The module's palletd, with busybox (a test before may have removed it)."""
    if palletd.docker("images", "-q", "busybox").stdout == b"":
        palletd.docker("load", "-i", busybox_tar)
    return palletd


def _id(engine, ref) -> str:
    return json.loads(engine.docker("image", "inspect", ref).stdout)[0]["Id"]


def test_tag_and_rmi(d):
    bid = _id(d, "busybox")
    d.docker("tag", "busybox", "pl-tag/one:v1")
    d.pallet("tag", "busybox", "pl-tag/two")
    listed = d.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.decode()
    assert f"pl-tag/one:v1 {bid[7:19]}" in listed and f"pl-tag/two:latest {bid[7:19]}" in listed
    r = d.docker("tag", "busybox", "Bad:Name", check=False)
    assert r.returncode != 0
    status, _, body = d.api("POST", "/v1.43/images/busybox/tag?repo=pl-tag/x&tag=a@b")
    assert status == 400, body
    status, _, _ = d.api("POST", "/v1.43/images/nothing-here/tag?repo=pl-tag/x&tag=1")
    assert status == 404
    # by ID with names in several repositories: refused without -f
    r = d.docker("rmi", bid[7:19], check=False)
    assert r.returncode == 1
    assert b"image is referenced in multiple repositories" in r.stderr
    assert d.docker("rmi", "pl-tag/one:v1").stdout == b"Untagged: pl-tag/one:v1\n"
    assert d.pallet("rmi", "pl-tag/two").stdout == b"Untagged: pl-tag/two:latest\n"
    r = d.pallet("rmi", "pl-tag/two", check=False)
    assert r.returncode == 1
    assert r.stderr == b"Error response from daemon: No such image: pl-tag/two:latest\n"
    # a running container uses it: untagging the last name is refused; -f untags and
    # the image stays, as docker's <none>
    d.docker("tag", "busybox", "pl-tag/used:1")
    d.docker("tag", "busybox", "pl-tag/used:2")
    d.docker("rmi", "pl-tag/used:2")
    cid = d.docker("run", "-d", "pl-tag/used:1", "sleep", "60").stdout.decode().strip()
    d.docker("rmi", "busybox")  # another name: untagged
    r = d.docker("rmi", "pl-tag/used:1", check=False)
    assert r.returncode == 1 and b"container " + cid[:12].encode() in r.stderr
    r = d.docker("rmi", "-f", "pl-tag/used:1")
    assert r.stdout == b"Untagged: pl-tag/used:1\n"
    assert d.docker("images", "-q", "--filter", "dangling=true").stdout.decode().strip() == \
        bid[7:19]
    r = d.docker("rmi", "-f", bid[7:19], check=False)
    assert r.returncode == 1 and b"(cannot be forced) - image is being used by running " \
        b"container " + cid[:12].encode() in r.stderr
    d.docker("rm", "-f", cid)
    # the dangling image, by ID
    out = d.docker("rmi", bid[7:19]).stdout.decode()
    assert out == f"Deleted: {bid}\n"
    assert image_ids(d) == []


def test_images_filters_and_formats(d, tmp_path):
    bid = _id(d, "busybox")
    d.docker("tag", "busybox", "pl-flt/a:1")
    d.docker("tag", "busybox", "pl-flt/b:2")
    fmt = "{{.Repository}}:{{.Tag}}"
    assert d.docker("images", "--format", fmt, "pl-flt/*").stdout.decode().split() == \
        ["pl-flt/a:1", "pl-flt/b:2"] or sorted(
            d.docker("images", "--format", fmt, "pl-flt/*").stdout.decode().split()) == \
        ["pl-flt/a:1", "pl-flt/b:2"]
    out = d.pallet("images", "--format", fmt, "--filter", "reference=pl-flt/a").stdout.decode()
    assert out.split() == ["pl-flt/a:1"]
    # "*" does not cross "/" (Go's path.Match)
    assert d.docker("images", "-q", "--filter", "reference=pl-*").stdout == b""
    assert d.pallet("images", "-q", "--filter", "dangling=false").stdout.decode().split() == \
        [bid[7:19]] * 3
    assert d.pallet("images", "-q", "--filter", "dangling=true").stdout == b""
    assert d.pallet("images", "-q", "--filter", "label=nope").stdout == b""
    assert d.pallet("images", "-q", "--no-trunc", "busybox").stdout.decode().strip() == bid
    # an image with a label, imported after busybox: since/before
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hello").write_text("hi\n")
    tar = tmp_path / "root.tar"
    subprocess.run(["tar", "cf", str(tar), "-C", str(root), "."], check=True)
    r = d.pallet("import", "-c", "LABEL pl.test=yes", "-m", "labelled", str(tar), "pl-flt/lab:1")
    lab = r.stdout.decode().strip()
    assert lab.startswith("sha256:")
    assert d.pallet("images", "-q", "--no-trunc", "--filter", "label=pl.test=yes") \
        .stdout.decode().strip() == lab
    assert d.docker("images", "-q", "--no-trunc", "--filter", "since=busybox").stdout \
        .decode().split() == [lab]
    assert lab not in d.docker("images", "-q", "--no-trunc", "--filter",
                               "before=pl-flt/lab:1").stdout.decode()
    r = d.docker("images", "--filter", "nope=1", check=False)
    assert r.returncode == 1 and b"invalid filter 'nope'" in r.stderr
    # formats: json, table with digests
    row = json.loads(d.pallet("images", "--format", "json", "pl-flt/lab").stdout)
    assert row["Repository"] == "pl-flt/lab" and row["Tag"] == "1"
    head = d.pallet("images", "--digests").stdout.decode().splitlines()[0].split()
    assert head[:4] == ["REPOSITORY", "TAG", "DIGEST", "IMAGE"]
    d.docker("rmi", "pl-flt/a:1", "pl-flt/b:2", "pl-flt/lab:1")


def test_history(d, tmp_path):
    out = d.docker("history", "busybox").stdout.decode().splitlines()
    assert out[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    mine = d.pallet("history", "busybox").stdout.decode().splitlines()
    assert mine == out
    assert d.pallet("history", "-q", "busybox").stdout.decode().split() == \
        d.docker("history", "-q", "busybox").stdout.decode().split()
    assert d.pallet("history", "--no-trunc", "-H=false", "busybox").stdout == \
        d.docker("history", "--no-trunc", "-H=false", "busybox").stdout
    fmt = "{{.ID}}|{{.Size}}|{{.CreatedBy}}"
    assert d.pallet("history", "--format", fmt, "busybox").stdout == \
        d.docker("history", "--format", fmt, "busybox").stdout
    status, _, body = d.api("GET", "/v1.43/images/busybox/history")
    entries = json.loads(body)
    assert entries[0]["Id"] == _id(d, "busybox") and "busybox:latest" in entries[0]["Tags"]
    assert entries[0]["Size"] > 1_000_000  # the unpacked layer
    r = d.pallet("history", "nothing:here", check=False)
    assert r.returncode == 1 and b"No such image: nothing:here" in r.stderr


def test_save_load_round_trip(d, tmp_path):
    d.docker("tag", "busybox", "pl-save/a:1")
    d.docker("tag", "busybox", "pl-save/b:2")
    out = tmp_path / "two.tar"
    d.pallet("save", "-o", str(out), "pl-save/a:1", "pl-save/b")
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        names = tf.getnames()
    assert len(manifest) == 1 and sorted(manifest[0]["RepoTags"]) == ["pl-save/a:1",
                                                                        "pl-save/b:2"]
    assert "index.json" in names and "oci-layout" in names
    # the docker CLI's save (GET /images/get?names=...) gives the same archive
    r = d.docker("save", "pl-save/a:1", "pl-save/b:2")
    assert r.stdout == out.read_bytes()
    d.docker("rmi", "pl-save/a:1", "pl-save/b:2")
    r = d.pallet("load", "-i", str(out))
    assert sorted(r.stdout.decode().splitlines()) == ["Loaded image: pl-save/a:1",
                                                      "Loaded image: pl-save/b:2"]
    assert d.docker("run", "--rm", "pl-save/b:2", "echo", "loaded").stdout == b"loaded\n"
    # by ID: no name in the archive, loaded as an ID
    bid = _id(d, "busybox")
    r = d.docker("save", bid[7:19])
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        assert json.load(tf.extractfile("manifest.json"))[0]["RepoTags"] == []
    r = d.docker("save", "-o", str(tmp_path / "x.tar"), "nothing:here", check=False)
    assert r.returncode == 1 and b"No such image" in r.stderr
    d.docker("rmi", "pl-save/a:1", "pl-save/b:2")


def test_import_and_export(d, tmp_path):
    cid = d.docker("create", "busybox", "sh", "-c", "echo made > /made").stdout.decode().strip()
    d.docker("start", "-a", cid)
    exported = tmp_path / "export.tar"
    d.docker("export", "-o", str(exported), cid)
    with tarfile.open(exported) as tf:
        names = set(tf.getnames())
        assert "made" in names and "bin/busybox" in names
        assert tf.extractfile("made").read() == b"made\n"
    d.docker("rm", cid)
    # docker import with changes and a message, from a file and from stdin
    r = d.docker("import", "-c", "CMD [\"cat\", \"/made\"]", "-c", "ENV PL=1", "-m", "from pl",
                 str(exported), "pl-imp/a:1")
    iid = r.stdout.decode().strip()
    assert iid.startswith("sha256:")
    assert d.docker("run", "--rm", "pl-imp/a:1").stdout == b"made\n"
    info = json.loads(d.docker("image", "inspect", "pl-imp/a:1").stdout)[0]
    assert info["Id"] == iid and info["Comment"] == "from pl"
    assert "PL=1" in info["Config"]["Env"]
    hist = d.docker("history", "--format", "{{.Comment}}", "pl-imp/a:1").stdout
    assert hist == b"from pl\n"
    r = d.pallet("import", "-", "pl-imp/b", input=exported.read_bytes())
    assert r.stdout.decode().strip().startswith("sha256:")
    assert d.pallet("run", "--rm", "pl-imp/b", "cat", "/made").stdout == b"made\n"
    # without a name: a dangling image
    r = d.pallet("import", str(exported))
    dangling = r.stdout.decode().strip()
    assert dangling in d.docker("images", "-q", "--no-trunc", "-f", "dangling=true").stdout \
        .decode()
    r = d.pallet("import", "-c", "FROBNICATE 1", str(exported), check=False)
    assert r.returncode == 1 and b"FROBNICATE is not a valid change command" in r.stderr
    d.docker("rmi", "pl-imp/a:1", "pl-imp/b", dangling)
    r = d.docker("export", "nothing-here", check=False)
    assert r.returncode == 1 and b"No such container" in r.stderr


def test_prune_collects_content_and_snapshots(fresh_palletd, busybox_tar, tmp_path):
    d = fresh_palletd
    d.docker("load", "-i", busybox_tar)
    # an image with a layer of its own, then made dangling by moving its tag
    cid = d.docker("create", "busybox", "sh", "-c", "head -c 300000 /dev/urandom > /r") \
        .stdout.decode().strip()
    d.docker("start", "-a", cid)
    exported = tmp_path / "e.tar"
    d.docker("export", "-o", str(exported), cid)
    d.docker("rm", cid)
    first = d.docker("import", str(exported), "pl-prune/x:1").stdout.decode().strip()
    before_blobs, before_snaps = d.blobs(), d.snapshots()
    d.docker("tag", "busybox", "pl-prune/x:1")  # moves the tag: the import is dangling now
    assert d.docker("images", "-q", "--no-trunc", "-f", "dangling=true").stdout.decode() \
        .split() == [first]
    # a container keeps busybox
    keep = d.docker("create", "busybox", "true").stdout.decode().strip()
    out = d.pallet("image", "prune", "-f").stdout.decode()
    assert out.startswith("Deleted Images:\ndeleted: " + first + "\n\nTotal reclaimed space: ")
    assert image_ids(d) == [_id(d, "busybox")]
    gone = before_blobs - d.blobs()
    assert first[7:] in gone and len(gone) >= 3, (before_blobs, d.blobs())
    assert len(d.snapshots()) < len(before_snaps) + 1
    # -a: busybox stays (a container uses it) ...
    r = d.docker("image", "prune", "-a", "-f").stdout.decode()
    assert "Total reclaimed space: 0B" in r
    assert image_ids(d) == [_id(d, "busybox")]
    d.docker("rm", keep)
    # ... until nothing does
    r = d.docker("image", "prune", "-a", "-f").stdout.decode()
    assert "untagged: busybox:latest" in r and "untagged: pl-prune/x:1" in r
    assert image_ids(d) == []
    assert wait_for(lambda: not d.blobs(), 10), d.blobs()
    assert d.snapshots() == []


def test_system_df(d):
    status, _, body = d.api("GET", "/v1.43/system/df")
    assert status == 200
    df = json.loads(body)
    assert df["LayersSize"] > 1_000_000
    mine = [i for i in df["Images"] if "busybox:latest" in i["RepoTags"]]
    assert len(mine) == 1 and mine[0]["Containers"] == 0 and mine[0]["Size"] > 1_000_000
    cid = d.docker("create", "busybox", "true").stdout.decode().strip()
    try:
        df = json.loads(d.api("GET", "/v1.43/system/df")[2])
        mine = [i for i in df["Images"] if "busybox:latest" in i["RepoTags"]]
        assert mine[0]["Containers"] == 1
        assert cid in [c["Id"] for c in df["Containers"]]
        out = d.docker("system", "df").stdout.decode().splitlines()
        assert out[1].split()[:3] == ["Images", str(len(df["Images"])), "1"]
    finally:
        d.docker("rm", cid)
    # the image part as the image service computes it: shared sizes, layers once
    d.docker("tag", "busybox", "pl-df/again:1")
    status, _, body = d.api("GET", "/v1.43/images/json?shared-size=1")
    rows = [i for i in json.loads(body) if "pl-df/again:1" in i["RepoTags"]]
    assert rows[0]["SharedSize"] == 0 and rows[0]["Containers"] == 0
    d.docker("rmi", "pl-df/again:1")


def test_image_events(d, tmp_path):
    import time
    since = "%.9f" % time.time()
    bid = _id(d, "busybox")
    d.docker("tag", "busybox", "pl-ev/a:1")
    d.docker("rmi", "pl-ev/a:1")
    d.docker("save", "-o", str(tmp_path / "e.tar"), "busybox")
    d.docker("load", "-i", str(tmp_path / "e.tar"))
    until = str(int(time.time()) + 1)
    r = d.docker("events", "--since", since, "--until", until, "--filter", "type=image",
                 "--format", "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}")
    got = r.stdout.decode().splitlines()
    mine = [x for x in got if not x.startswith("load ")]
    assert mine == [f"tag {bid} pl-ev/a:1", f"untag {bid} {bid}", f"save {bid} {bid}"], got
    assert f"load {bid} {bid}" in got
