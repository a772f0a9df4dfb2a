"""Helpers of the CRI tests.  The runtimes themselves (pallet-containerd with
api_cri, Debian's containerd 1.6 with its CRI plugin, each on roots,
sockets, bridges, subnets and cgroup parents of its own, driven by crictl
and by a Python client generated from the same proto, and cleaned up even
when a test fails) are bench/cri.py's, which benchmarks them."""
from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))

from cri import (BUSYBOX, CONTAINERD, CRICTL, PAUSE, ContainerdCri, CriClient,  # noqa: E402,F401
                 CriDaemon, free_port, pause_archive)

needs_root = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
needs_crictl = pytest.mark.skipif(not os.access(CRICTL, os.X_OK), reason="needs crictl")
needs_containerd = pytest.mark.skipif(not os.path.exists(CONTAINERD), reason="needs containerd")


