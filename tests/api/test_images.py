"""docker load (docker-save and OCI layout archives) and docker rmi."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from api_harness import Palletd

pytestmark = pytest.mark.root


def _oci_only(src: str, dst: str, name: str) -> None:
    """The same image as an OCI layout archive alone (no manifest.json), named ``name``."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            if m.name in ("manifest.json", "repositories"):
                continue
            data = tin.extractfile(m).read() if m.isfile() else None
            if m.name == "index.json":
                index = json.loads(data)
                for d in index["manifests"]:
                    d["annotations"] = {"io.containerd.image.name": name,
                                        "org.opencontainers.image.ref.name": name.rsplit(":")[-1]}
                data = json.dumps(index).encode()
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if data is not None else None)


def test_load_oci_layout_and_rmi(fresh_palletd: Palletd, busybox_tar, tmp_path):
    d = fresh_palletd
    oci = str(tmp_path / "oci.tar")
    _oci_only(busybox_tar, oci, "docker.io/library/pa-oci:v1")
    r = d.docker("load", "-i", oci)
    assert r.stdout == b"Loaded image: pa-oci:v1\n"
    assert d.docker("run", "--rm", "pa-oci:v1", "echo", "oci").stdout == b"oci\n"
    images = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode().split()
    assert sorted(images) == ["busybox:latest", "pa-oci:v1"]
    # two names for one image: rmi by name only untags
    assert d.docker("rmi", "pa-oci:v1").stdout == b"Untagged: pa-oci:v1\n"
    # a container uses the image: refused without force
    cid = d.docker("create", "busybox", "true").stdout.decode().strip()
    r = d.docker("rmi", "busybox", check=False)
    assert r.returncode != 0 and b"conflict" in r.stderr.lower()
    d.docker("rm", cid)
    image_id = json.loads(d.docker("image", "inspect", "busybox").stdout)[0]["Id"]
    out = d.docker("rmi", "busybox").stdout.decode()
    assert "Untagged: busybox:latest" in out and f"Deleted: {image_id}" in out
    assert d.docker("images", "-q").stdout == b""
    r = d.docker("run", "--rm", "busybox", "true", check=False)
    assert r.returncode == 125
    # and it loads again
    assert b"Loaded image: busybox:latest" in d.docker("load", "-i", busybox_tar).stdout
    assert d.docker("run", "--rm", "busybox", "echo", "back").stdout == b"back\n"


def test_load_quiet_and_docker_py(fresh_palletd: Palletd, busybox_tar):
    d = fresh_palletd
    r = d.docker("load", "-q", "-i", busybox_tar)
    assert b"Loaded image: busybox:latest" in r.stdout
    c = d.client()
    with open(busybox_tar, "rb") as f:
        loaded = c.images.load(f.read())
    assert "busybox:latest" in loaded[0].tags
    c.images.remove("busybox:latest")
    assert c.images.list() == []
