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

from ctr_helpers import start_palletd


@pytest.fixture(scope="module")
def palletd(busybox_tar):
    """One palletd per test module, busybox loaded."""
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    d = start_palletd(busybox_tar)
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def d(palletd):
    """The module's palletd, by the short name the container-operation tests use."""
    return palletd


@pytest.fixture
def fresh_palletd(busybox_tar):
    """A palletd of its own for tests that stop or restart it."""
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    d = start_palletd(busybox_tar)
    try:
        yield d
    finally:
        d.cleanup()
