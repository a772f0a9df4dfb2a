"""Helpers of the CNI tests (also used by tests/cri and tests/contracts/network):
configuration lists for Debian's containernetworking-plugins on a bridge,
subnet and IPAM directory of the test's own, and the clean-up of what those
plugins leave on the host (the bridge, the nat chains of ipMasq and
portmap) even when a test fails.

The plugins run the ``iptables`` command, which on Debian 12 is the
nf_tables one; the rules are read and removed with it.
"""
from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))

from cri import PLUGIN_DIRS, CniNetwork as Network, conflist, nat_chains, nat_rules  # noqa: E402,F401

needs_plugins = pytest.mark.skipif(
    not any(os.path.exists(os.path.join(d, "bridge")) for d in PLUGIN_DIRS),
    reason="needs Debian's containernetworking-plugins")


