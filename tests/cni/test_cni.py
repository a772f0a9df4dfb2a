"""The CNI library (pallet.cni) against Debian's containernetworking-plugins:
ADD, CHECK and DEL of a bridge + host-local + portmap list in a network
namespace of the test's own, the CNI_* environment, result caching (DEL
from the cache once the configuration is gone), errors, and the
configuration directory's rules."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from cni_helpers import PLUGIN_DIRS, Network, nat_rules, needs_plugins

from pallet.cni import conf
from pallet.cni.invoke import CNIError, Environment
from pallet.cni.network import CNI, plugin_config
from pallet.core.errors import InvalidArgument, NotFound
from pallet.linux import netns

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


# --- pure logic ------------------------------------------------------------------------------

def test_parse_conflist_and_single_conf():
    net = conf.parse(json.dumps({"cniVersion": "1.0.0", "name": "n",
                                 "plugins": [{"type": "bridge"},
                                             {"type": "portmap",
                                              "capabilities": {"portMappings": True}}]}))
    assert net.name == "n" and net.types == ("bridge", "portmap")
    assert net.capabilities() == {"portMappings"}
    one = conf.parse(b'{"cniVersion": "0.4.0", "name": "single", "type": "bridge"}')
    assert one.name == "single" and one.cni_version == "0.4.0" and one.types == ("bridge",)
    for bad, why in ((b"[]", "not a json object"), (b"{", "not json"),
                     (b'{"name": "x", "plugins": []}', "has no plugins"),
                     (b'{"plugins": [{"type": "a"}]}', "no network name"),
                     (b'{"name": "x", "plugins": [{}]}', "plugin 0 of network x has no type")):
        with pytest.raises(InvalidArgument, match=why):
            conf.parse(bad, "f.conflist")


def test_conf_dir_order_and_skips(tmp_path):
    d = tmp_path / "net.d"
    d.mkdir()
    (d / "05-broken.conflist").write_text("{nope")
    (d / "10-b.conf").write_text('{"cniVersion": "0.4.0", "name": "b", "type": "bridge"}')
    (d / "20-a.conflist").write_text('{"cniVersion": "1.0.0", "name": "a", '
                                     '"plugins": [{"type": "loopback"}]}')
    (d / "99-ignored.txt").write_text("{}")
    assert [os.path.basename(p) for p in conf.conf_files(str(d))] == \
        ["05-broken.conflist", "10-b.conf", "20-a.conflist"]
    assert [n.name for n in conf.load_dir(str(d))] == ["b"]
    assert [n.name for n in conf.load_dir(str(d), max_count=5)] == ["b", "a"]
    with pytest.raises(NotFound, match="no network config found"):
        conf.load_dir(str(tmp_path / "missing"))


def test_runtime_config_only_for_declared_capabilities():
    net = conf.parse(json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": True,
                                                                 "bandwidth": False}}]}))
    caps = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": 1}}
    first = plugin_config(net, net.plugins[0], None, caps)
    assert first == {"type": "bridge", "name": "n", "cniVersion": "1.0.0"}
    second = plugin_config(net, net.plugins[1], {"cniVersion": "1.0.0"}, caps)
    assert second["runtimeConfig"] == {"portMappings": caps["portMappings"]}
    assert second["prevResult"] == {"cniVersion": "1.0.0"}


def test_render_template():
    text = conf.render_template('{"subnet": "{{.PodCIDR}}", "r": {{ .Routes }}}',
                                {"PodCIDR": "10.9.0.0/24", "Routes": [{"dst": "0.0.0.0/0"}]})
    assert json.loads(text) == {"subnet": "10.9.0.0/24", "r": [{"dst": "0.0.0.0/0"}]}
    with pytest.raises(InvalidArgument, match="unknown field .Nope"):
        conf.render_template("{{.Nope}}", {})


# --- against the real plugins --------------------------------------------------------------------

@pytest.fixture
def network():
    base = tempfile.mkdtemp(prefix="plcni-", dir="/tmp")
    net = Network(base)
    ns_path = os.path.join(base, "netns")
    netns.create(ns_path)
    net.netns = ns_path
    try:
        yield net
    finally:
        netns.remove(ns_path)
        net.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def _addresses(ns_path: str) -> str:
    return subprocess.run(["nsenter", f"--net={ns_path}", "ip", "-o", "addr"],
                          capture_output=True, text=True, check=True).stdout


def _serve_in(ns_path: str, port: int):
    """A TCP server on 0.0.0.0:port inside the namespace that answers 'pong'."""
    def make():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(4)
        return s
    srv = netns.run_in(ns_path, make)

    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.sendall(b"pong")
            c.close()
    threading.Thread(target=loop, daemon=True).start()
    return srv


def _fetch(ip: str, port: int) -> bytes:
    with socket.create_connection((ip, port), timeout=5) as c:
        return c.recv(16)


@needs_plugins
def test_add_check_del_with_portmap(network):
    cni = CNI(PLUGIN_DIRS, network.cache_dir)
    net = conf.load_dir(network.conf_dir)[0]
    env = Environment("c0ffee", network.netns, "eth0",
                      (("IgnoreUnknown", "1"), ("K8S_POD_NAME", "p")))
    host_port = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
    caps = {"portMappings": [{"hostPort": host_port, "containerPort": 8080, "protocol": "tcp"}]}
    result = cni.add(net, env, caps)
    try:
        ips = result.sandbox_ips("eth0")
        assert len(ips) == 1 and ipaddress_in(ips[0].ip, network.subnet)
        assert ips[0].gateway == network.gateway
        assert result.sandbox_mac("eth0")
        assert f"{ips[0].ip}/{network.subnet.prefixlen}" in _addresses(network.netns)
        # host-local keeps the lease in its data dir, under our network's name
        assert os.listdir(os.path.join(network.ipam_dir, network.name))
        assert any(f"--dport {host_port}" in r for r in nat_rules())
        cached = cni.cached(network.name, "c0ffee")
        assert cached is not None and cached.result["ips"][0]["address"].startswith(ips[0].ip)
        assert cached.args == (("IgnoreUnknown", "1"), ("K8S_POD_NAME", "p"))
        srv = _serve_in(network.netns, 8080)
        try:
            assert _fetch(ips[0].ip, 8080) == b"pong"          # the pod, on its bridge
            assert _fetch(network.gateway, host_port) == b"pong"  # the host port, DNAT
        finally:
            srv.close()
    finally:
        cni.delete(net, env)
    assert cni.cached(network.name, "c0ffee") is None
    assert not any(f"--dport {host_port}" in r for r in nat_rules())
    leases = os.listdir(os.path.join(network.ipam_dir, network.name))
    assert not [n for n in leases if n[0].isdigit()]
    assert "eth0" not in _addresses(network.netns)


@needs_plugins
def test_check_and_del_from_cache_after_restart(network):
    # portmap 1.1.1's CHECK looks for an IPv6 chain it never made: bridge alone here
    doc = dict(network.doc, plugins=network.doc["plugins"][:1])
    with open(network.conf_path, "w") as f:
        json.dump(doc, f)
    net = conf.load_dir(network.conf_dir)[0]
    env = Environment("deadbeef", network.netns, "eth0")
    CNI(PLUGIN_DIRS, network.cache_dir).add(net, env)
    CNI(PLUGIN_DIRS, network.cache_dir).check(net, env)
    os.unlink(network.conf_path)   # the configuration is gone, the cache is not
    fresh = CNI(PLUGIN_DIRS, network.cache_dir)
    [entry] = fresh.cache.entries()
    assert (entry.network, entry.container_id, entry.netns) == \
        (network.name, "deadbeef", network.netns)
    fresh.delete_cached(entry)
    assert fresh.cache.entries() == []
    leases = os.listdir(os.path.join(network.ipam_dir, network.name))
    assert not [n for n in leases if n[0].isdigit()]


@needs_plugins
def test_errors(network):
    cni = CNI(PLUGIN_DIRS, network.cache_dir)
    env = Environment("bad", network.netns, "eth0")
    missing = conf.parse('{"cniVersion": "1.0.0", "name": "m", "plugins": [{"type": "nope"}]}')
    with pytest.raises(NotFound, match="failed to find plugin 'nope'"):
        cni.add(missing, env)
    broken = conf.parse(json.dumps({"cniVersion": "1.0.0", "name": "b", "plugins": [
        {"type": "bridge", "bridge": "x" * 20, "ipam": {}}]}))
    with pytest.raises(CNIError) as info:
        cni.add(broken, env)
    assert "plugin type='bridge' failed (add)" in str(info.value)
    assert cni.cached("b", "bad") is None
    with pytest.raises(InvalidArgument, match="no cached result"):
        cni.check(conf.load_dir(network.conf_dir)[0], env)


def ipaddress_in(ip: str, subnet) -> bool:
    import ipaddress
    return ipaddress.ip_address(ip) in subnet
