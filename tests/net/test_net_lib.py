"""The networking library without palletd: namespaces, rule syncing, the
driver's reconciliation of state left by a daemon that died."""
from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from net_helpers import free_subnets, rules_of
from pallet.plugins.net_bridge import firewall, networks
from pallet.linux import netlink as links, netns, xtables
from pallet.linux import networker as workermod

pytestmark = pytest.mark.root


def test_named_namespace_lifecycle(tmp_path):
    path = str(tmp_path / "ns")
    got = netns.create(path, then=lambda: open("/proc/thread-self/net/dev").read())
    try:
        assert "lo:" in got and "eth0" not in got
        assert netns.is_namespace(path)
        assert netns.pids_in(path) == []
        own = os.readlink("/proc/self/ns/net")
        assert netns.run_in(path, lambda: os.readlink("/proc/thread-self/ns/net")) != own
        assert os.readlink("/proc/self/ns/net") == own  # the caller never moved
        with pytest.raises(FileExistsError):
            netns.create(path)
    finally:
        netns.remove(path)
    assert not os.path.exists(path) and not netns.is_namespace(path)


def test_rule_sync_is_idempotent_and_removable():
    prefix = f"PLL{secrets.token_hex(3).upper()}"
    (subnet,) = free_subnets(1)
    nets = [networks.Network(id="1", name="a", bridge=f"pll{prefix[-6:].lower()}",
                             subnet=str(subnet), icc=False)]
    wk = workermod.get()
    try:
        for _ in range(3):
            wk.call(firewall.apply, prefix, nets)
        rules = rules_of(prefix)
        assert len(rules) == len(set(rules)), "duplicated rules"
        assert sum("-A FORWARD -j" in r for r in rules) == 1
        assert sum("-A POSTROUTING -j" in r for r in rules) == 1
        assert any("MASQUERADE" in r and str(subnet) in r for r in rules)
        wk.call(firewall.apply, prefix, [])
        assert not [r for r in rules_of(prefix) if str(subnet) in r]
    finally:
        wk.call(firewall.remove, prefix)
    assert rules_of(prefix) == []
    assert not [c for c in wk.call(xtables.chain_names, "filter") if c.startswith(prefix)]


def test_driver_reconciles_a_dead_daemons_state(tmp_path):
    """A sandbox whose container is gone (no process in its namespace), an
    orphan namespace file and a stale address are cleaned at start."""
    from pallet.plugins.net_bridge.driver import BridgeDriver

    sfx = secrets.token_hex(3)
    (subnet,) = free_subnets(1)
    cfg = {"bridge": f"plr{sfx}", "bip": f"{subnet.network_address + 1}/{subnet.prefixlen}",
           "chain-prefix": f"PLR{sfx.upper()}", "resolv-conf": os.devnull}
    roots = (str(tmp_path / "net"), str(tmp_path / "run"))
    cdir = tmp_path / "c"
    cdir.mkdir()
    info = {"id": "a" * 64, "name": "gone", "host_config": {},
            "hosts_path": str(cdir / "hosts"), "hostname_path": str(cdir / "hostname"),
            "resolv_conf_path": str(cdir / "resolv.conf")}
    wk = workermod.get()
    d = BridgeDriver(network_root=roots[0], exec_root=roots[1], config=cfg)
    try:
        d.start()
        settings = d.setup(info)
        key, ip = settings["SandboxKey"], settings["IPAddress"]
        veth = wk.call(lambda: d._port_target("a" * 64))["host_ifname"]
        assert os.path.exists(f"/sys/class/net/{veth}")
        assert (cdir / "hosts").read_text().endswith(f"{ip}\t{'a' * 12}\n")
        orphan = os.path.join(roots[1], "netns", "orphan")
        netns.create(orphan)
        d.shutdown()  # the daemon goes away; nothing runs in the sandbox
        d2 = BridgeDriver(network_root=roots[0], exec_root=roots[1], config=cfg)
        d2.start()
        assert not os.path.exists(key) and not os.path.exists(orphan)
        assert d2.settings("a" * 64)["IPAddress"] == ""
        assert ip not in d2.pools[d2.default_network.id].allocated
        d2._veth_reaper and d2._veth_reaper.drain()
        assert not os.path.exists(f"/sys/class/net/{veth}")
        d2.unregister("a" * 64)
        d2.shutdown()
    finally:
        def clean():
            hl = links.HostLinks()
            try:
                hl.delete(cfg["bridge"])
            finally:
                hl.close()
            firewall.remove(cfg["chain-prefix"])
        wk.call(clean)
        netns.release_dir(os.path.join(roots[1], "netns"))
        subprocess.run(["umount", "-l", os.path.join(roots[1], "netns")],
                       stderr=subprocess.DEVNULL)
