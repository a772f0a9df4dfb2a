"""store_native through palletd end to end: ``[roles] image_store =
"store_native"`` alone makes the whole chain use plain copies (no overlayfs
anywhere): docker load, save, pull from a local registry, container runs,
a named volume filled from the image, docker cp both ways, and GC of what
a removed image and container leave.  One palletd for the module."""
from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile

import pytest

from engines import Pallet

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "registry"))

pytestmark = pytest.mark.root

NATIVE = 'image_store = "store_native"'


@pytest.fixture(scope="module")
def engine(busybox_tar):
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    e = Pallet(config=f"[roles]\n{NATIVE}\n")
    try:
        e.start()
        e.docker("load", "-i", busybox_tar)
        yield e
    finally:
        e.stop()


def docker(engine, *args: str, check: bool = True) -> str:
    r = engine.docker(*args, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {r.stderr.decode(errors='replace')}")
    return r.stdout.decode()


def snapshot_dirs(engine) -> set[str]:
    root = os.path.join(engine.data_root, "containerd", "io.containerd.snapshotter.v1.native",
                        "snapshots")
    return set(os.listdir(root)) if os.path.isdir(root) else set()


def test_the_chain_uses_native_copies(engine):
    assert docker(engine, "info", "--format", "{{.Driver}}").strip() == "native"
    containerd_root = os.path.join(engine.data_root, "containerd")
    assert snapshot_dirs(engine)  # busybox's layer, unpacked at load
    assert not os.path.exists(os.path.join(containerd_root,
                                           "io.containerd.snapshotter.v1.overlayfs"))
    # the container's root is a plain directory bind-mounted, not an overlay
    mounts = docker(engine, "run", "--rm", "busybox", "cat", "/proc/self/mounts")
    root_line = next(line for line in mounts.splitlines() if line.split()[1] == "/")
    assert root_line.split()[2] != "overlay"


def test_runs_write_their_own_copy(engine):
    cid = docker(engine, "run", "-d", "busybox", "sh", "-c",
                 "echo changed > /etc/motd; rm /bin/true; sleep 300").strip()
    try:
        out = docker(engine, "exec", cid, "sh", "-c", "cat /etc/motd; ls /bin/true || echo gone")
        assert out.split() == ["changed", "gone"]
        # the image (and another container of it) is untouched
        assert docker(engine, "run", "--rm", "busybox", "ls", "/bin/true").strip() == "/bin/true"
        before = snapshot_dirs(engine)
    finally:
        docker(engine, "rm", "-f", cid)
    assert len(snapshot_dirs(engine)) == len(before) - 1  # its own copy went with it


def test_named_volume_is_filled_from_the_image(engine):
    vol = "native-etc"
    try:
        listing = docker(engine, "run", "--rm", "-v", f"{vol}:/etc", "busybox",
                         "sh", "-c", "ls /etc; echo added > /etc/added")
        assert {"passwd", "group"} <= set(listing.split())
        out = docker(engine, "run", "--rm", "-v", f"{vol}:/data", "busybox",
                     "sh", "-c", "head -1 /data/passwd; cat /data/added")
        assert out.split("\n")[:2] == ["root:x:0:0:root:/root:/bin/sh", "added"]
    finally:
        docker(engine, "volume", "rm", "-f", vol, check=False)


def test_docker_cp_both_ways(engine, tmp_path):
    cid = docker(engine, "create", "busybox", "cat", "/tmp/in.txt").strip()
    try:
        src = tmp_path / "in.txt"
        src.write_text("from the host\n")
        docker(engine, "cp", str(src), f"{cid}:/tmp/in.txt")
        docker(engine, "cp", f"{cid}:/etc/passwd", str(tmp_path / "passwd"))
        assert (tmp_path / "passwd").read_text().startswith("root:x:0:0:")
        docker(engine, "start", cid)
        assert docker(engine, "wait", cid).strip() == "0"
        assert docker(engine, "logs", cid) == "from the host\n"
        docker(engine, "cp", f"{cid}:/tmp/in.txt", str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "from the host\n"
    finally:
        docker(engine, "rm", "-f", cid)


def test_save_and_load_round_trip(engine, tmp_path):
    image_id = docker(engine, "image", "inspect", "--format", "{{.Id}}", "busybox").strip()
    out = str(tmp_path / "saved.tar")
    docker(engine, "tag", "busybox", "native/copy:v1")
    docker(engine, "save", "-o", out, "native/copy:v1")
    with tarfile.open(out) as tf:
        assert "manifest.json" in tf.getnames()
    docker(engine, "rmi", "native/copy:v1")
    loaded = docker(engine, "load", "-i", out)
    assert "Loaded image: native/copy:v1" in loaded
    assert docker(engine, "image", "inspect", "--format", "{{.Id}}",
                  "native/copy:v1").strip() == image_id
    assert docker(engine, "run", "--rm", "native/copy:v1", "echo", "ok").strip() == "ok"
    docker(engine, "rmi", "native/copy:v1")


def test_pull_from_a_registry_and_gc(engine, busybox_tar):
    if not (shutil.which("docker-registry") and shutil.which("skopeo")):
        pytest.skip("needs docker-registry and skopeo")
    from pallet.distribution.platforms import Platform
    from registry_helpers import RegistryServer, oci_image, oci_layout, skopeo_copy

    base = tempfile.mkdtemp(prefix="pl-sn-")
    reg = RegistryServer(os.path.join(base, "reg"))
    try:
        reg.start()
        skopeo_copy(f"docker-archive:{busybox_tar}", f"docker://{reg.host}/lib/busybox:latest")
        layout = os.path.join(base, "layout")
        desc = oci_image(layout, [{"a/one": b"1" * 4096}, {"b/two": b"2" * 4096}],
                         arch=Platform.host().architecture)
        oci_layout(layout, [desc], "v1")
        skopeo_copy(f"oci:{layout}:v1", f"docker://{reg.host}/native/two:v1")

        # nothing uses busybox now: removing it collects its layer's copy
        docker(engine, "rmi", "busybox")
        assert snapshot_dirs(engine) == set()
        busybox = f"{reg.host}/lib/busybox:latest"
        assert "Downloaded newer image" in docker(engine, "pull", busybox)
        assert docker(engine, "run", "--rm", busybox, "echo", "pulled").strip() == "pulled"
        docker(engine, "tag", busybox, "busybox")
        # the layer's copy, and the init layer the run made on it (unused now:
        # the next collection may take it, as containerd's would)
        before = snapshot_dirs(engine)
        docker(engine, "pull", f"{reg.host}/native/two:v1")
        added = snapshot_dirs(engine) - before
        assert len(added) == 2
        docker(engine, "rmi", f"{reg.host}/native/two:v1")
        left = snapshot_dirs(engine)
        assert not left & added and left <= before
        assert docker(engine, "run", "--rm", "busybox", "echo", "kept").strip() == "kept"
    finally:
        reg.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_build_on_native_copies(engine, tmp_path):
    """docker build on the copy-based store: the RUN step's layer (a file
    added, one deleted) comes from the diff service over native snapshots."""
    import subprocess

    from engines import DOCKER_CLI

    (tmp_path / "f").write_text("hello\n")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nCOPY f /f\nRUN cat /f > /g && rm /bin/true\n")
    r = subprocess.run([DOCKER_CLI, "build", "-q", "-t", "native-built", str(tmp_path)],
                       env=dict(engine.env, DOCKER_BUILDKIT="0"), capture_output=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    try:
        assert docker(engine, "run", "--rm", "native-built", "sh", "-c",
                      "cat /g; test -e /bin/true || echo gone") == "hello\ngone\n"
    finally:
        docker(engine, "rmi", "-f", "native-built", check=False)

