"""Fixtures of the containerd tests: Debian's real containerd 1.6 and pallet-containerd,
each on its own short roots, stopped by pid and cleaned up even when a test fails."""
from __future__ import annotations

import os

import pytest

from cd_util import CONTAINERD, start_pallet_containerd, start_real_containerd


@pytest.fixture
def real_containerd():
    """Debian's containerd 1.6 with its own root, state, socket and config."""
    if os.geteuid() != 0 or not os.path.exists(CONTAINERD):
        pytest.skip("needs root and /usr/bin/containerd")
    d = start_real_containerd()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def pallet_containerd():
    """pallet-containerd with its own root, state and socket."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = start_pallet_containerd()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(params=["real", "pallet"])
def any_containerd(request):
    """Each test runs against the real containerd and against pallet-containerd."""
    name = "real_containerd" if request.param == "real" else "pallet_containerd"
    return request.getfixturevalue(name)
