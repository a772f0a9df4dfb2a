"""palletd under test: its own short roots and socket, busybox loaded, driven by
the unmodified docker CLI and docker-py; stopped by pid and cleaned up (its
containers, children, mounts, cgroups) even when a test fails.

``PALLET_API_CONTAINERD=real`` runs palletd against Debian's containerd 1.6
(``palletd --containerd``) instead of letting it start pallet-containerd:
the same tests then prove palletd's containerd client on the real thing.
``PALLET_API_PALLETD`` replaces the palletd command (a development harness).
"""
from __future__ import annotations

import os
import pytest

from api_harness import Palletd


def _mode() -> str:
    return os.environ.get("PALLET_API_CONTAINERD", "pallet")


@pytest.fixture(scope="module")
def palletd(busybox_tar):
    """One palletd per test module, busybox loaded."""
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    d = Palletd(_mode())
    try:
        d.start()
        r = d.docker("load", "-i", busybox_tar)
        assert b"Loaded image: busybox:latest" in r.stdout, r
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def fresh_palletd(busybox_tar):
    """A palletd of its own for tests that stop or restart it."""
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    d = Palletd(_mode())
    try:
        d.start()
        d.docker("load", "-i", busybox_tar)
        yield d
    finally:
        d.cleanup()
