"""Fixtures of the CRI tests (helpers in cri_helpers.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cri_helpers import CriDaemon, ContainerdCri  # noqa: E402


@pytest.fixture(scope="module")
def cri(busybox_tar):
    """pallet-containerd with api_cri, busybox in k8s.io (one per test module)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = CriDaemon()
    try:
        d.start()
        d.import_image(busybox_tar)
        yield d
    finally:
        d.stop()
