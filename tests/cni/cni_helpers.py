"""Helpers of the CNI tests (also used by tests/cri and tests/contracts/network):
configuration lists for Debian's containernetworking-plugins on a bridge,
subnet and IPAM directory of the test's own, and the clean-up of what those
plugins leave on the host (the bridge, the nat chains of ipMasq and
portmap) even when a test fails.

The plugins run the ``iptables`` command, which on Debian 12 is the
nf_tables one; the rules are read and removed with it.
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))

from engines import free_subnet  # noqa: E402

PLUGIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")
IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"

needs_plugins = pytest.mark.skipif(
    not any(os.path.exists(os.path.join(d, "bridge")) for d in PLUGIN_DIRS),
    reason="needs Debian's containernetworking-plugins")


def conflist(name: str, bridge: str, subnet, data_dir: str, *, portmap: bool = True,
             version: str = "1.0.0") -> dict:
    """bridge + host-local (+ portmap) on ``bridge`` and ``subnet``."""
    plugins = [{"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True,
                "hairpinMode": True,
                "ipam": {"type": "host-local", "dataDir": data_dir,
                         "ranges": [[{"subnet": str(subnet)}]],
                         "routes": [{"dst": "0.0.0.0/0"}]}}]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return {"cniVersion": version, "name": name, "plugins": plugins}


def nat_rules() -> list[str]:
    r = subprocess.run([IPTABLES, "-w", "-t", "nat", "-S"], capture_output=True, text=True)
    return r.stdout.splitlines()


def nat_chains() -> set[str]:
    return {line.split()[1] for line in nat_rules() if line.startswith("-N ")}


class Network:
    """A bridge name, a free subnet, a conf dir and IPAM dir of one test's own;
    :meth:`cleanup` removes the bridge and the nat chains that were not
    there before."""

    def __init__(self, base: str, *, portmap: bool = True, version: str = "1.0.0"):
        sfx = secrets.token_hex(3)
        self.name = f"plcni-{sfx}"
        self.bridge = f"plc{sfx}"
        self.subnet = free_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self.base = base
        self.conf_dir = os.path.join(base, "net.d")
        self.cache_dir = os.path.join(base, "cache")
        self.ipam_dir = os.path.join(base, "ipam")
        os.makedirs(self.conf_dir, exist_ok=True)
        self.doc = conflist(self.name, self.bridge, self.subnet, self.ipam_dir,
                            portmap=portmap, version=version)
        self.conf_path = os.path.join(self.conf_dir, "10-test.conflist")
        with open(self.conf_path, "w") as f:
            json.dump(self.doc, f)
        self.chains_before = nat_chains()
        self.rules_before = set(nat_rules())

    def cleanup(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], stderr=subprocess.DEVNULL)
        # rules first (jumps into chains), then the chains the plugins made
        for line in nat_rules():
            if line.startswith("-A ") and line not in self.rules_before:
                subprocess.run([IPTABLES, "-w", "-t", "nat", "-D", *shlex.split(line)[1:]],
                               stderr=subprocess.DEVNULL)
        new = nat_chains() - self.chains_before
        for flag in ("-F", "-X"):   # chains jump to each other: empty them all first
            for chain in new:
                subprocess.run([IPTABLES, "-w", "-t", "nat", flag, chain],
                               stderr=subprocess.DEVNULL)
