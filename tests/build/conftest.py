"""Fixtures of the build tests: containerd daemons (Debian's real containerd
1.6 and pallet-containerd) and palletd/dockerd engines on roots of their own,
stopped by pid and cleaned up even when a test fails."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from build_helpers import engine_with_busybox, start_containerd  # noqa: E402


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


@pytest.fixture(scope="module")
def palletd(busybox_tar):
    """One palletd per test module, busybox loaded."""
    e = engine_with_busybox("pallet", busybox_tar)
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture(scope="module")
def dockerd(busybox_tar):
    """Debian's dockerd 20.10 on roots of its own, busybox loaded."""
    e = engine_with_busybox("docker", busybox_tar)
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
