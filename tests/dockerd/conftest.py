"""palletd beside Debian's dockerd 20.10: the same requests, through the same
clients, to both, and their answers compared.

``palletd`` is tests/api's harness (its own roots, socket, bridge and chains,
busybox loaded); ``dockerd`` is bench's Docker engine on roots of its own
(``--bridge=none --iptables=false``: it touches neither the host's network
nor its rules), busybox loaded; the dockerd tests skip where it is not
installed.  Both are stopped by pid, their containers removed, even when a
test fails.
"""
from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "api"))

from ctr_helpers import start_palletd  # noqa: E402
from engines import Docker  # noqa: E402


def _root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture(scope="module")
def palletd(busybox_tar):
    _root()
    d = start_palletd(busybox_tar)
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def dockerd(busybox_tar):
    _root()
    if not Docker.available():
        pytest.skip("needs Debian's dockerd")
    from dockerd_helpers import RealDocker

    d = RealDocker()
    try:
        d.start()
        d.docker("load", "-i", busybox_tar)
        yield d
    finally:
        d.cleanup()
