"""100 create/start/rm cycles with published ports leave nothing behind:
no veth, no rule, no proxy, no address, no namespace."""
from __future__ import annotations

import json
import os

import pytest

from net_helpers import link_names, proxies_for, rules_of, wait_for

pytestmark = pytest.mark.root

CYCLES = 100


def _allocated(engine) -> list[str]:
    d = os.path.join(engine.data_root, "network", "ipam")
    held = []
    for name in os.listdir(d):
        with open(os.path.join(d, name)) as f:
            held += list(json.load(f).get("allocated") or {})
    return held


def test_hundred_cycles_leave_nothing(engine):
    import docker

    client = docker.APIClient(base_url=f"unix://{engine.engine.sock}", version="1.43",
                              timeout=60)
    seen_ips, ours_veths = set(), set()
    for i in range(CYCLES):
        host_config = client.create_host_config(port_bindings={80: None, "53/udp": None})
        c = client.create_container("busybox", ["sleep", "300"], ports=[80, (53, "udp")],
                                    host_config=host_config)
        client.start(c["Id"])
        info = client.inspect_container(c["Id"])
        ip = info["NetworkSettings"]["IPAddress"]
        assert ip.startswith(engine.ip_prefix)
        assert ip not in seen_ips or i > 200  # rolling allocation: no quick reuse
        seen_ips.add(ip)
        ours_veths.update(os.listdir(f"/sys/class/net/{engine.bridge}/brif"))
        ports = info["NetworkSettings"]["Ports"]
        assert ports["80/tcp"][0]["HostPort"] and ports["53/udp"][0]["HostPort"]
        if i % 25 == 0:
            assert len(proxies_for(engine.ip_prefix)) == 2
            assert len([r for r in rules_of(engine.prefix) if "DNAT" in r]) == 2
        client.remove_container(c["Id"], force=True)
    # nothing left: veths, rules of containers, proxies, addresses, namespaces
    assert client.containers(all=True) == []
    # (other engineers' engines make veths too: only the ones seen on our bridge count)
    assert len(ours_veths) == CYCLES
    assert ours_veths & link_names() == set()
    assert os.listdir(f"/sys/class/net/{engine.bridge}/brif") == []
    per_container = [r for r in rules_of(engine.prefix)
                     if "DNAT" in r or "--dport" in r or engine.ip_prefix in r.split("-s ")[-1]
                     and "/32" in r]
    assert per_container == []
    assert wait_for(lambda: proxies_for(engine.ip_prefix) == [], timeout=5)
    assert _allocated(engine) == []
    netns_dir = os.path.join(engine.root, "r", "netns")
    assert os.listdir(netns_dir) == []
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if netns_dir + "/" in line]
    endpoints = os.path.join(engine.data_root, "network", "endpoints")
    assert os.listdir(endpoints) == []
    assert os.listdir(os.path.join(engine.data_root, "network", "ports")) == []
    client.close()
