"""Debian's ctr against pallet-containerd, and pallet-ctr against both daemons."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import CTR, VENV_BIN

pytestmark = pytest.mark.root
BUSYBOX_IMAGE = os.path.join(os.path.dirname(__file__), "..", "cli", "busybox_image.py")


def pallet_ctr(address: str, *args, namespace: str = "default") -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(VENV_BIN, "pallet-ctr"), "-a", address, "-n", namespace,
                           *args], capture_output=True, text=True, timeout=60)


def build_tarball(base: str) -> str:
    out = os.path.join(base, "busybox.tar")
    subprocess.run([sys.executable, BUSYBOX_IMAGE, out], check=True, capture_output=True)
    return out


def test_debian_ctr_against_pallet(pallet_containerd):
    d = pallet_containerd
    out = d.ctr("version")
    assert "Server:" in out and "Revision: pallet" in out and "UUID: " in out
    assert d.ctr("namespaces", "ls").splitlines() == ["NAME LABELS "]
    assert d.ctr("images", "ls").splitlines()[0].split() == \
        ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    assert d.ctr("containers", "ls").splitlines() == ["CONTAINER    IMAGE    RUNTIME    "]
    assert d.ctr("tasks", "ls").splitlines() == ["TASK    PID    STATUS    "]
    plugins = d.ctr("plugins", "ls")
    assert "io.containerd.snapshotter.v1    overlayfs" in plugins
    d.ctr("namespaces", "create", "other", "a=b")
    assert "other a=b" in d.ctr("namespaces", "ls")
    d.ctr("namespaces", "rm", "other")


def test_debian_ctr_import_and_run(pallet_containerd):
    d = pallet_containerd
    tar = build_tarball(d.base)
    d.ctr("images", "import", tar)
    images = d.ctr("images", "ls")
    assert "docker.io/library/busybox:latest" in images and "linux/" in images
    r = subprocess.run([CTR, "--address", d.address, "run", "--rm",
                        "docker.io/library/busybox:latest", "ctr-run-1", "echo", "hi-from-ctr"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "hi-from-ctr"
    assert d.ctr("containers", "ls").splitlines()[1:] == []


@pytest.mark.parametrize("command", [("namespaces", "ls"), ("containers", "ls"), ("tasks", "ls"),
                                     ("plugins", "ls"), ("images", "ls")])
def test_pallet_ctr_prints_what_ctr_prints(any_containerd, command):
    d = any_containerd
    d.ctr("namespaces", "create", "pl-ns", "x=y")
    if command[0] in ("images", "containers"):
        tar = build_tarball(d.base)
        d.ctr("images", "import", tar)
    if command[0] == "containers":
        d.ctr("containers", "create", "docker.io/library/busybox:latest", "pl-c1", "sh")
    r = pallet_ctr(d.address, *command)
    assert r.returncode == 0, r.stderr
    assert r.stdout == d.ctr(*command)
    if command[0] == "containers":
        d.ctr("containers", "rm", "pl-c1")


def test_pallet_ctr_version_and_errors(any_containerd):
    r = pallet_ctr(any_containerd.address, "version")
    assert r.returncode == 0 and "Server:" in r.stdout and "Client:" in r.stdout
    r = pallet_ctr("/tmp/pl-nowhere.sock", "version")
    assert r.returncode == 1 and r.stderr.startswith("pallet-ctr: ") and "Traceback" not in r.stderr
    r = pallet_ctr(any_containerd.address, "frobnicate")
    assert r.returncode == 2 and "Traceback" not in r.stderr
