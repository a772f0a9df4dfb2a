"""The ``network`` and ``port_proxy`` roles' contracts, against every
installed implementation (``pallet.core.contracts.Network`` and
``PortProxy``), driven as palletd's engine drives them: real namespaces,
bridges, addresses, rules and proxies, each test with names of its own."""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading

import pytest

from contract_helpers import implementations, kernel_for
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "cni"))
from engines import free_subnets, umount_below
from pallet.core import contracts, errors
from pallet.core.paths import Paths

pytestmark = pytest.mark.root


def _bridge_config(sfx: str, subnet) -> dict:
    return {"bridge": f"plc{sfx}", "bip": f"{subnet.network_address + 1}/{subnet.prefixlen}",
            "chain-prefix": f"PLC{sfx.upper()}", "resolv-conf": os.devnull}


def _bridge_cleanup(cfg: dict) -> None:
    from pallet.linux import netlink, networker
    from pallet.plugins.net_bridge import firewall
    from pallet.plugins.net_proxy.publisher import remove_rules

    def clean():
        host = netlink.HostLinks()
        try:
            host.delete(cfg["bridge"])
        finally:
            host.close()
        firewall.remove(cfg["chain-prefix"])
        remove_rules(cfg["chain-prefix"])
    networker.get().call(clean)


def _cni_setup(sfx: str, subnet) -> dict:
    """net_cni on a configuration list of the test's own (bridge, host-local,
    portmap on a bridge and subnet of its own, see tests/cni/cni_helpers.py)."""
    import tempfile

    from cni_helpers import Network

    base = tempfile.mkdtemp(prefix=f"plcni-{sfx}-", dir="/tmp")
    net = Network(base)
    _CNI[base] = net
    return {"conf_dir": net.conf_dir, "bin_dirs": ["/usr/lib/cni", "/opt/cni/bin"],
            "resolv-conf": os.devnull, "_base": base}


def _cni_cleanup(cfg: dict) -> None:
    import shutil

    _CNI.pop(cfg["_base"]).cleanup()   # its bridge and the plugins' nat chains
    shutil.rmtree(cfg["_base"], ignore_errors=True)


_CNI: dict = {}


#: per plugin: its configuration for a test (names of the test's own), and
#: how to remove what outlives its shutdown (the default bridge, chains)
SETUPS = {"net_bridge": (_bridge_config, _bridge_cleanup),
          "net_cni": (_cni_setup, _cni_cleanup)}


def _container(tmp_path, name: str, **extra) -> dict:
    d = tmp_path / name
    d.mkdir()
    info = {"id": secrets.token_hex(32), "name": f"/{name}", "hostname": name,
            "domainname": "", "host_config": {"NetworkMode": "default"},
            "exposed_ports": {}, "hosts_path": str(d / "hosts"),
            "hostname_path": str(d / "hostname"), "resolv_conf_path": str(d / "resolv.conf")}
    info.update(extra)
    return info


@pytest.fixture(params=implementations("network"))
def roles(request, tmp_path):
    """The network role (and the port proxy over it) of a kernel of the test's own."""
    plugin = request.param
    sfx = secrets.token_hex(3)
    (subnet,) = free_subnets(1)
    make_config, cleanup = SETUPS.get(plugin, (lambda *_: {}, lambda cfg: None))
    cfg = make_config(sfx, subnet)
    paths = Paths(str(tmp_path / "data"), str(tmp_path / "exec"))
    plugin_cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    kernel = kernel_for("network", plugin, paths, plugin_cfg, roles=("network", "port_proxy"))
    net = kernel.provide("network")
    proxy = kernel.provide("port_proxy")
    net.start(None)
    proxy.start()
    try:
        yield net, proxy
    finally:
        try:
            proxy.shutdown()
            net.shutdown()
        finally:
            cleanup(cfg)
            umount_below(str(tmp_path))  # the namespaces' mount point


def _in_netns(spec: dict, *argv: str) -> str:
    path = next(ns["path"] for ns in spec["linux"]["namespaces"] if ns["type"] == "network")
    return subprocess.run(["nsenter", f"--net={path}", *argv], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def test_objects_fill_the_contracts(roles):
    net, proxy = roles
    assert isinstance(net, contracts.Network) and isinstance(proxy, contracts.PortProxy)


def test_networks_are_created_listed_inspected_and_removed(roles):
    net, _ = roles
    (subnet,) = free_subnets(1)
    name = f"ct-{secrets.token_hex(3)}"
    created = net.create_network({"Name": name, "Driver": "bridge",
                                  "IPAM": {"Config": [{"Subnet": str(subnet)}]},
                                  "Labels": {"contract": "yes"}})
    try:
        assert created["Id"]
        got = net.inspect_network(name)
        assert got["Id"] == created["Id"] and got["Name"] == name
        assert got["IPAM"]["Config"][0]["Subnet"] == str(subnet)
        assert net.inspect_network(created["Id"])["Name"] == name
        assert name in [n["Name"] for n in net.list_networks({"label": ["contract=yes"]})]
        with pytest.raises(errors.PalletError) as e:
            net.create_network({"Name": name, "Driver": "bridge"})
        assert e.value.http_status == 409
    finally:
        net.remove_network(name)
    with pytest.raises(errors.NotFound):
        net.inspect_network(name)
    with pytest.raises(errors.NotFound):
        net.remove_network(name)


def test_a_container_gets_a_sandbox_and_loses_it(roles, tmp_path):
    net, _ = roles
    c = _container(tmp_path, "sbx")
    net.register(c | {"networking_config": {}})
    settings = net.setup(c)
    try:
        ip = settings["IPAddress"]
        assert ip and settings["Gateway"] and settings["SandboxKey"]
        spec = {"linux": {"namespaces": [{"type": "network"}]}, "mounts": []}
        net.build_spec(spec, c)
        assert ip in _in_netns(spec, "ip", "-4", "addr")
        ping = ["nsenter", f"--net={settings['SandboxKey']}", "busybox", "ping", "-c1", "-W2",
                settings["Gateway"]]
        assert subprocess.run(ping, capture_output=True).returncode == 0
        assert any(m["destination"] == "/etc/hosts" for m in spec["mounts"])
        assert net.settings(c["id"])["IPAddress"] == ip
    finally:
        net.release(c["id"])
        net.unregister(c["id"])
    assert not os.path.exists(settings["SandboxKey"])


def test_connect_and_disconnect_a_running_container(roles, tmp_path):
    net, _ = roles
    (subnet,) = free_subnets(1)
    other = f"ct-{secrets.token_hex(3)}"
    net.create_network({"Name": other, "Driver": "bridge",
                        "IPAM": {"Config": [{"Subnet": str(subnet)}]}})
    c = _container(tmp_path, "conn")
    net.register(c | {"networking_config": {}})
    net.setup(c)
    try:
        net.connect(other, c, {"Aliases": ["extra"]})
        nets = net.settings(c["id"])["Networks"]
        assert other in nets and nets[other]["IPAddress"].startswith(
            str(subnet.network_address)[:-1])
        with pytest.raises(errors.Conflict):
            net.remove_network(other)
        net.disconnect(other, c["id"], False)
        assert other not in net.settings(c["id"])["Networks"]
        with pytest.raises(errors.Conflict):
            net.disconnect(other, c["id"], False)
    finally:
        net.release(c["id"])
        net.unregister(c["id"])
        net.remove_network(other)


def test_unknown_network_is_refused_at_register(roles, tmp_path):
    net, _ = roles
    c = _container(tmp_path, "bad", host_config={"NetworkMode": "no-such-network"})
    # not a 404: the docker CLI takes a 404 from create for a missing image
    with pytest.raises(errors.InvalidArgument):
        net.register(c | {"networking_config": {}})


def _serve_once(ns_path: str, port: int, reply: bytes) -> threading.Thread:
    """A one-shot TCP server inside the container's namespace."""
    from pallet.linux import netns

    ready = threading.Event()

    def run():
        srv = netns.run_in(ns_path, lambda: socket.create_server(("0.0.0.0", port)))
        ready.set()
        srv.settimeout(30)
        try:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(reply)
        finally:
            srv.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(10)
    return t


def test_published_port_reaches_the_container(roles, tmp_path):
    net, proxy = roles
    host_port = free_tcp_port()
    c = _container(tmp_path, "pub", exposed_ports={"8080/tcp": {}}, host_config={
        "NetworkMode": "default",
        "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]}})
    proxy.check(c["host_config"], c["exposed_ports"])
    with pytest.raises(errors.InvalidArgument):
        proxy.check({"PortBindings": {"80/xyz": [{"HostPort": "1"}]}}, {})
    net.register(c | {"networking_config": {}})
    settings = net.setup(c)
    try:
        ports = proxy.publish(c)
        assert ports["8080/tcp"][0]["HostPort"] == str(host_port)
        assert proxy.ports(c["id"]) == ports
        assert any(p.get("PublicPort") == host_port for p in proxy.ports_list(c["id"]))
        server = _serve_once(settings["SandboxKey"], 8080, b"hello through the proxy")
        with socket.create_connection(("127.0.0.1", host_port), timeout=10) as s:
            assert s.recv(100) == b"hello through the proxy"
        server.join(10)
        second = _container(tmp_path, "pub2", exposed_ports={"8080/tcp": {}},
                            host_config=c["host_config"])
        net.register(second | {"networking_config": {}})
        net.setup(second)
        try:
            with pytest.raises(errors.PalletError, match="already allocated"):
                proxy.publish(second)
        finally:
            net.release(second["id"])
            net.unregister(second["id"])
    finally:
        proxy.unpublish(c["id"])
        net.release(c["id"])
        net.unregister(c["id"])
    assert proxy.ports(c["id"]) in ({}, None)


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
