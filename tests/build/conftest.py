"""Fixtures of the build tests: containerd daemons (Debian's real containerd
1.6 and pallet-containerd) and palletd/dockerd engines on roots of their own,
stopped by pid and cleaned up even when a test fails."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from build_helpers import start_containerd  # noqa: E402


@pytest.fixture(scope="module", params=["pallet", "real"])
def containerd(request):
    """pallet-containerd, then Debian's containerd 1.6, each on its own roots."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = start_containerd(request.param)
    try:
        yield d
    finally:
        d.stop()


def _engine(kind: str, busybox_tar: str, *args):
    from engines import Docker, Pallet

    if os.geteuid() != 0:
        pytest.skip("needs root")
    if kind == "docker" and not Docker.available():
        pytest.skip("dockerd 20.10 (Debian's docker.io) is not installed")
    e = Pallet(*args) if kind == "pallet" else Docker(*args)
    try:
        e.start()
        r = e.docker("load", "-i", busybox_tar)
        assert b"busybox:latest" in r.stdout, r
    except BaseException:
        e.stop()
        raise
    return e


@pytest.fixture(scope="module")
def palletd(busybox_tar):
    """One palletd per test module, busybox loaded."""
    e = _engine("pallet", busybox_tar)
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture(scope="module")
def dockerd(busybox_tar):
    """Debian's dockerd 20.10 on roots of its own, busybox loaded."""
    e = _engine("docker", busybox_tar)
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture
def ctx(tmp_path):
    """A directory for a build context."""
    d = tmp_path / "ctx"
    d.mkdir()
    return d
