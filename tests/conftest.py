"""Fixtures shared by every test directory.

Each test owns its roots (short paths under /tmp, since unix socket paths are
limited to 108 bytes) and cleans up what it made even when it fails.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (namespaces, mounts, cgroups)")


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory) -> str:
    """The built-in busybox image as a docker-save tarball (built once per run)."""
    built = os.path.join(REPO, "build", "busybox.tar")
    if os.path.exists(built):
        return built
    out = str(tmp_path_factory.mktemp("image") / "busybox.tar")
    subprocess.run([sys.executable, "-m", "pallet.plugins.store_overlay.builtin", out], check=True)
    return out


@pytest.fixture
def pallet_engine(busybox_tar):
    """A palletd (with its pallet-containerd) on its own roots, busybox loaded."""
    from engines import Pallet

    engine = Pallet()
    try:
        engine.start()
        engine.docker("load", "-i", busybox_tar)
        yield engine
    finally:
        engine.stop()
