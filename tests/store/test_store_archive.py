"""Archives: the built-in busybox image, docker-save and OCI layout readers,
the docker-save writer, and reference normalisation."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from pallet.core.errors import InvalidArgument, NotFound
from pallet.distribution import busybox_image as builtin
from pallet.distribution.archive import normalize_name, read_archive
from pallet.distribution.mediatypes import (
    MT_DOCKER_CONFIG,
    MT_DOCKER_LAYER,
    MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_MANIFEST,
    MT_OCI_MANIFEST)
from pallet.distribution.platforms import Platform, chain_ids


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_builtin_is_deterministic(tmp_path, busybox_tar):
    other = tmp_path / "again.tar"
    image = builtin.write_archive(str(other))
    with open(busybox_tar, "rb") as a, open(other, "rb") as b:
        assert a.read() == b.read()
    assert image.image_id == builtin.build_image().image_id


def test_builtin_layer_contents():
    layer = builtin.build_layer()
    with tarfile.open(fileobj=io.BytesIO(layer)) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert members["bin/busybox"].isreg() and members["bin/busybox"].mode == 0o755
        assert members["bin/sh"].islnk() and members["bin/sh"].linkname == "bin/busybox"
        assert members["tmp"].mode == 0o1777 and members["root"].mode == 0o700
        assert "home" in members and "linuxrc" not in members
        passwd = tf.extractfile("etc/passwd").read().decode()
        assert passwd.startswith("root:x:0:0:") and "nobody:x:65534:65534:" in passwd
        assert "root:x:0:" in tf.extractfile("etc/group").read().decode()
        assert {m.mtime for m in members.values()} == {builtin.EPOCH}
        for applet in builtin.applet_paths():
            assert members[applet].islnk()
    config = json.loads(builtin.build_config(sha(layer)))
    assert config["config"]["Cmd"] == ["sh"]
    assert config["config"]["Env"][0].startswith("PATH=")
    assert config["architecture"] == Platform.host().architecture
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha(layer)]}


def test_read_builtin_archive(busybox_tar):
    image = builtin.build_image()
    with read_archive(busybox_tar) as archive:
        assert archive.format == "docker"
        (img,) = archive.images()
        assert img.name == "docker.io/library/busybox:latest"
        assert img.ref_name == "busybox:latest"
        assert img.target == image.manifest  # synthesised manifest == the built one
        blobs = {b.digest: b for b in archive.blobs()}
        assert blobs[image.config.digest].media_type == MT_DOCKER_CONFIG
        assert blobs[image.layer.digest].media_type == MT_DOCKER_LAYER
        assert blobs[image.manifest.digest].media_type == MT_DOCKER_MANIFEST
        for b in blobs.values():
            with b.open() as f:
                data = f.read()
            assert (sha(data), len(data)) == (b.digest, b.size)


def test_import_resolve_and_export_round_trip(store, busybox_tar, tmp_path):
    (rec,) = store.import_archive(busybox_tar, "default")
    assert rec.name == "docker.io/library/busybox:latest"
    assert len(store.content.list()) == 3
    # importing again changes nothing but the record's time
    store.import_archive(busybox_tar, "default")
    assert len(store.content.list()) == 3
    resolved = store.resolve(rec.target)
    assert resolved.config["config"]["Cmd"] == ["sh"]
    assert resolved.diff_ids == (resolved.layers[0].digest,)
    assert resolved.chain_ids == resolved.diff_ids

    store.metadata.create_image("default", type(rec)("docker.io/library/other:1", rec.target))
    out = tmp_path / "export.tar"
    store.export_archive(str(out), "default",
                         ["docker.io/library/busybox:latest", "docker.io/library/other:1"])
    with tarfile.open(out) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))
        index = json.load(tf.extractfile("index.json"))
    assert {"manifest.json", "index.json", "oci-layout"} <= set(names)
    assert manifest == [{"Config": "blobs/sha256/" + resolved.config_desc.digest[7:],
                         "RepoTags": ["busybox:latest", "other:1"],
                         "Layers": ["blobs/sha256/" + resolved.layers[0].digest[7:]]}]
    assert [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]] == \
        ["docker.io/library/busybox:latest", "docker.io/library/other:1"]
    with read_archive(str(out)) as archive:
        assert sorted((i.name, i.target.digest) for i in archive.images()) == \
            [("docker.io/library/busybox:latest", rec.target.digest),
             ("docker.io/library/other:1", rec.target.digest)]


def _add(tf, name, data=b"", sym=None):
    ti = tarfile.TarInfo(name)
    if sym is not None:
        ti.type, ti.linkname = tarfile.SYMTYPE, sym
        tf.addfile(ti)
    else:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))


def _layer_tar(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            _add(tf, name, data)
    return buf.getvalue()


def test_old_docker_save_layout(tmp_path):
    """docker < 25: <id>/layer.tar (one gzip'd, one a symlink to a shared
    layer), <hex>.json config, names only in the ``repositories`` file."""
    l1 = _layer_tar({"a": b"1"})
    l2 = gzip.compress(_layer_tar({"b": b"2"}), mtime=0)
    diff2 = sha(gzip.decompress(l2))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers",
                                    "diff_ids": [sha(l1), diff2, sha(l1)]}}).encode()
    cfg_hex = sha(config)[7:]
    path = tmp_path / "old.tar"
    with tarfile.open(path, "w") as tf:
        _add(tf, "aaaa/layer.tar", l1)
        _add(tf, "bbbb/layer.tar", l2)
        _add(tf, "cccc/layer.tar", sym="../aaaa/layer.tar")
        _add(tf, f"{cfg_hex}.json", config)
        _add(tf, "manifest.json", json.dumps([{
            "Config": f"{cfg_hex}.json", "RepoTags": None,
            "Layers": ["aaaa/layer.tar", "bbbb/layer.tar", "cccc/layer.tar"]}]).encode())
        _add(tf, "repositories", json.dumps({"example/app": {"v1": "cccc"}}).encode())
    with read_archive(str(path)) as archive:
        (img,) = archive.images()
        assert img.name == "docker.io/example/app:v1"
        blobs = {b.digest: b for b in archive.blobs()}
        assert blobs[sha(l1)].media_type == MT_DOCKER_LAYER
        assert blobs[sha(l2)].media_type == MT_DOCKER_LAYER_GZIP
        manifest = json.loads(blobs[img.target.digest].open().read())
    assert manifest["mediaType"] == MT_DOCKER_MANIFEST
    assert manifest["config"] == {"mediaType": MT_DOCKER_CONFIG, "digest": sha(config),
                                  "size": len(config)}
    assert [x["digest"] for x in manifest["layers"]] == [sha(l1), sha(l2), sha(l1)]
    assert chain_ids([sha(l1), diff2])[1] == \
        sha(f"{sha(l1)} {diff2}".encode())


def test_compressed_archive_and_unnamed_image(tmp_path, busybox_tar):
    with open(busybox_tar, "rb") as f:
        data = f.read()
    # rewrite without RepoTags, then gzip the whole tarball (docker load accepts it)
    src = tarfile.open(fileobj=io.BytesIO(data))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for m in src.getmembers():
            if m.name == "manifest.json":
                doc = json.load(src.extractfile(m))
                doc[0]["RepoTags"] = []
                _add(tf, m.name, json.dumps(doc).encode())
            elif m.name not in ("index.json",):
                tf.addfile(m, src.extractfile(m) if m.isreg() else None)
    path = tmp_path / "untagged.tar.gz"
    path.write_bytes(gzip.compress(buf.getvalue()))
    with read_archive(str(path)) as archive:
        (img,) = archive.images()
        assert img.name is None and img.target == builtin.build_image().manifest


def _oci_layout(root, ref_annotations):
    layer = _layer_tar({"hello": b"world"})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha(layer), "size": len(layer)}]}).encode()
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for data in (layer, config, manifest):
        (blobs / sha(data)[7:]).write_bytes(data)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": MT_OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
         "annotations": a} for a in ref_annotations]}))
    return sha(manifest), sha(layer)


def test_oci_layout_directory(tmp_path, store):
    root = tmp_path / "layout"
    mdigest, ldigest = _oci_layout(root, [
        {"org.opencontainers.image.ref.name": "latest"},
        {"io.containerd.image.name": "localhost:5000/app:2"},
        {"org.opencontainers.image.ref.name": "example.com/x/y:3"}])
    with read_archive(str(root)) as archive:
        assert archive.format == "oci"
        assert [(i.name, i.ref_name) for i in archive.images()] == [
            (None, "latest"), ("localhost:5000/app:2", "localhost:5000/app:2"),
            ("example.com/x/y:3", "example.com/x/y:3")]
        types = {b.digest: b.media_type for b in archive.blobs()}
        assert types[mdigest] == MT_OCI_MANIFEST
        assert types[ldigest] == "application/vnd.oci.image.layer.v1.tar"
    recs = store.import_archive(str(root), "default", base_name="mine/app")
    assert sorted(r.name for r in recs) == ["docker.io/mine/app:latest", "example.com/x/y:3",
                                            "localhost:5000/app:2"]
    assert store.resolve(recs[0].target).layers[0].digest == ldigest


def test_oci_layout_as_tar(tmp_path):
    root = tmp_path / "layout"
    _oci_layout(root, [{"io.containerd.image.name": "docker.io/library/t:1"}])
    path = tmp_path / "oci.tar"
    with tarfile.open(path, "w") as tf:
        tf.add(root, arcname=".")
    with read_archive(str(path)) as archive:
        assert [i.name for i in archive.images()] == ["docker.io/library/t:1"]


def test_bad_archives(tmp_path):
    with pytest.raises(NotFound):
        read_archive(str(tmp_path / "missing.tar"))
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(InvalidArgument):
        read_archive(str(tmp_path / "junk.tar"))
    with tarfile.open(tmp_path / "empty.tar", "w") as tf:
        _add(tf, "hello", b"x")
    with pytest.raises(InvalidArgument, match="neither manifest.json"):
        read_archive(str(tmp_path / "empty.tar"))
    with tarfile.open(tmp_path / "broken.tar", "w") as tf:
        _add(tf, "manifest.json", json.dumps([{"Config": "nope.json", "Layers": []}]).encode())
    with pytest.raises(InvalidArgument, match="missing file"):
        read_archive(str(tmp_path / "broken.tar"))


@pytest.mark.parametrize("given, normalised", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("user/app:v", "docker.io/user/app:v"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("registry.example.com/a/b:c", "registry.example.com/a/b:c"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
])
def test_reference_normalisation(given, normalised):
    assert normalize_name(given) == normalised


@pytest.mark.parametrize("bad", ["Busybox", "busy box", "", "a" * 64, "x:bad tag"])
def test_invalid_references(bad):
    with pytest.raises(InvalidArgument):
        normalize_name(bad)


def test_builtin_command_line(tmp_path):
    out = tmp_path / "cli.tar"
    proc = subprocess.run([sys.executable, "-m", "pallet.distribution.busybox_image",
                           str(out), "--name", "busybox:latest", "--name", "test/bb:1"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == builtin.build_image().image_id
    with read_archive(str(out)) as archive:
        assert sorted(i.name for i in archive.images()) == [
            "docker.io/library/busybox:latest", "docker.io/test/bb:1"]
    proc = subprocess.run([sys.executable, "-m", "pallet.distribution.busybox_image",
                           str(out), "--busybox", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "no such file" in proc.stderr
    assert os.path.exists(out)  # the earlier archive is untouched
