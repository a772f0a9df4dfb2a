"""Networking end to end: palletd with net_bridge and net_proxy, driven by the
docker CLI, containers from the built-in busybox image."""
from __future__ import annotations

import json
import os
import time

import pytest

from net_helpers import (BUSYBOX, proxies_for, rules_of, tcp_reachable, udp_ask, udp_echo_in,
                      wait_for, wget)

pytestmark = pytest.mark.root

HTTPD = ("busybox", "httpd", "-f", "-p", "80", "-h", "/etc")


def _port(engine, name: str, spec: str = "80/tcp") -> int:
    return int(engine.out("port", name, spec).splitlines()[0].rsplit(":", 1)[1])


def _fetch(seconds: int, url: str) -> tuple:
    """A wget inside a container that gives up after ``seconds`` (not as PID 1,
    which ignores timeout's signal; busybox 1.35's wget -T crashes)."""
    return ("sh", "-c", f"timeout {seconds} wget -q -O - {url}; exit $?")


def _get(url: str, prefix=()) -> str:
    r = wget(list(prefix), url)
    return r.stdout.decode() if r.returncode == 0 else ""


def test_published_port_proxy_and_dnat_paths(engine, client_ns):
    """A busybox httpd published on a host port answers from 127.0.0.1 (through
    pallet-proxy) and from a namespace of ours through the host-side address of
    its link (DNAT, the proxy never sees it)."""
    cid = engine.out("run", "-d", "--name", "web", "--hostname", "webhost", "-p", "80",
                     *HTTPD)
    port = _port(engine, "web")
    info = engine.inspect("web")
    ip = info["NetworkSettings"]["IPAddress"]
    assert ip.startswith(engine.ip_prefix)
    assert info["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0",
                                                            "HostPort": str(port)}]}
    assert info["NetworkSettings"]["Gateway"] == engine.gateway
    assert info["NetworkSettings"]["MacAddress"] == "02:42:" + ":".join(
        f"{int(x):02x}" for x in ip.split("."))
    # proxy path
    assert wait_for(lambda: _get(f"http://127.0.0.1:{port}/hostname")) == "webhost\n"
    assert len(proxies_for(engine.ip_prefix)) == 1
    # DNAT path: from our namespace to the host end of its veth pair
    before = _dnat_packets(engine.prefix)
    got = wget(["nsenter", f"--net={client_ns.path}"],
               f"http://{client_ns.host_ip}:{port}/hostname")
    assert got.stdout == b"webhost\n", got.stderr
    assert _dnat_packets(engine.prefix) > before
    # docker ps shows the mapping
    ps = engine.out("ps", "--format", "{{.Ports}}", "--filter", f"id={cid}")
    assert ps == f"0.0.0.0:{port}->80/tcp"
    engine.docker("rm", "-f", "web")
    assert wait_for(lambda: not proxies_for(engine.ip_prefix))
    assert not [r for r in rules_of(engine.prefix) if "DNAT" in r]
    assert not tcp_reachable("127.0.0.1", port, timeout=0.5)


def _dnat_packets(prefix: str) -> int:
    import subprocess
    out = subprocess.run(["iptables-legacy", "-w", "-t", "nat", "-L", prefix, "-v", "-n", "-x"],
                         capture_output=True, text=True).stdout
    total = 0
    for line in out.splitlines()[2:]:
        fields = line.split()
        if fields and fields[0].isdigit() and "DNAT" in line:
            total += int(fields[0])
    return total


def test_udp_echo_through_published_port(engine, client_ns):
    engine.out("run", "-d", "--name", "udp", "-p", "5353/udp", "busybox", "sleep", "300")
    port = _port(engine, "udp", "5353/udp")
    key = engine.inspect("udp")["NetworkSettings"]["SandboxKey"]
    server = udp_echo_in(key, 5353)
    try:
        assert udp_ask(("127.0.0.1", port), b"hello proxy") == b"HELLO PROXY"
        assert udp_ask((client_ns.host_ip, port), b"hello dnat",
                       netns_path=client_ns.path) == b"HELLO DNAT"
        # several clients, each its own flow
        for i in range(3):
            assert udp_ask(("127.0.0.1", port), f"c{i}".encode()) == f"C{i}".encode()
    finally:
        server.kill()
        server.wait()


def test_port_ranges_and_publish_all(engine):
    base = 40000 + int(engine.sfx, 16) % 20000
    engine.out("run", "-d", "--name", "rng", "-p", f"{base}-{base + 1}:80-81",
               "--expose", "90", "-P", "busybox", "sleep", "300")
    ports = engine.inspect("rng")["NetworkSettings"]["Ports"]
    assert ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(base)}]
    assert ports["81/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(base + 1)}]
    assert int(ports["90/tcp"][0]["HostPort"]) > 0
    out = engine.out("port", "rng")
    assert f"80/tcp -> 0.0.0.0:{base}" in out and "90/tcp -> 0.0.0.0:" in out
    # a host range for one port: the first free one is taken
    engine.out("run", "-d", "--name", "rng2", "-p", f"127.0.0.1:{base}-{base + 5}:80",
               "busybox", "sleep", "300")
    got = engine.inspect("rng2")["NetworkSettings"]["Ports"]["80/tcp"][0]
    assert got["HostIp"] == "127.0.0.1" and base + 2 <= int(got["HostPort"]) <= base + 5


def test_port_already_allocated(engine):
    engine.out("run", "-d", "--name", "first", "-p", "80", *HTTPD)
    port = _port(engine, "first")
    r = engine.docker("run", "-d", "--name", "second", "-p", f"{port}:80", *HTTPD, check=False)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert f"Bind for 0.0.0.0:{port} failed: port is already allocated" in err
    assert "driver failed programming external connectivity on endpoint second" in err
    assert engine.inspect("second")["State"]["Running"] is False
    # the first one still serves; the failed one left no rule or proxy
    assert wait_for(lambda: _get(f"http://127.0.0.1:{port}/hostname"))
    assert len([r for r in rules_of(engine.prefix) if "DNAT" in r]) == 1
    assert len(proxies_for(engine.ip_prefix)) == 1


def test_user_network_names_aliases_isolation(engine, upstream):
    n1, n2 = (f"pn{engine.sfx}a", f"pn{engine.sfx}b")
    from net_helpers import free_subnets
    s1, s2 = free_subnets(2)
    engine.networks_made += [n1, n2]
    nid = engine.out("network", "create", "--subnet", str(s1), "--label", "k=v", n1)
    engine.out("network", "create", "--subnet", str(s2), n2)
    alpha = engine.out("run", "-d", "--name", f"alpha{engine.sfx}", "--network", n1,
                       "--network-alias", "web-alias", "--ip", str(s1.network_address + 9),
                       *HTTPD)
    a_ip = engine.inspect(alpha)["NetworkSettings"]["Networks"][n1]["IPAddress"]
    assert a_ip == str(s1.network_address + 9)
    assert "web-alias" in engine.inspect(alpha)["NetworkSettings"]["Networks"][n1]["Aliases"]
    # by name and by alias from another container of the network
    for target in (f"alpha{engine.sfx}", "web-alias", alpha[:12]):
        r = engine.docker("run", "--rm", "--network", n1, "busybox",
                          *_fetch(5, f"http://{target}/hostname"), check=False)
        assert r.stdout.decode().strip() == alpha[:12], (target, r.stderr)
    r = engine.docker("run", "--rm", "--network", n1, "busybox", "cat", "/etc/resolv.conf")
    assert "nameserver 127.0.0.11" in r.stdout.decode()
    assert "options ndots:0" in r.stdout.decode()
    # names outside the network are forwarded to the host's (test) resolvers
    r = engine.docker("run", "--rm", "--network", n1, "busybox", "nslookup",
                      "upstream.pallet.test", "127.0.0.11", check=False)
    assert "10.99.88.77" in r.stdout.decode(), r.stdout + r.stderr
    # not across networks: no name, no route
    r = engine.docker("run", "--rm", "--network", n2, "busybox", "nslookup",
                      f"alpha{engine.sfx}", "127.0.0.11", check=False)
    assert a_ip not in r.stdout.decode()
    r = engine.docker("run", "--rm", "--network", n2, "busybox",
                      *_fetch(2, f"http://{a_ip}/hostname"), check=False)
    assert r.returncode != 0
    r = engine.docker("run", "--rm", "busybox",
                      *_fetch(2, f"http://{a_ip}/hostname"), check=False)
    assert r.returncode != 0, "the default bridge reached a user-defined network"
    # inspect, ls, filters
    info = json.loads(engine.out("network", "inspect", n1))[0]
    assert info["Id"] == nid and info["Driver"] == "bridge" and info["Labels"] == {"k": "v"}
    assert info["IPAM"]["Config"][0]["Subnet"] == str(s1)
    assert alpha in info["Containers"]
    assert info["Containers"][alpha]["IPv4Address"] == f"{a_ip}/{s1.prefixlen}"
    names = engine.out("network", "ls", "--format", "{{.Name}}").split()
    assert {"bridge", "host", "none", n1, n2} <= set(names)
    assert engine.out("network", "ls", "-q", "--filter", "label=k=v") == nid[:12]
    # rm refuses while in use; isolation rules exist for both bridges
    r = engine.docker("network", "rm", n1, check=False)
    assert r.returncode != 0 and "active endpoints" in r.stderr.decode()
    iso = [line for line in rules_of(engine.prefix) if "ISOLATION-2 -o" in line]
    assert len(iso) == 3


def test_connect_disconnect_running_container(engine):
    from net_helpers import free_subnets
    n1 = f"pc{engine.sfx}"
    (s1,) = free_subnets(1)
    engine.networks_made.append(n1)
    engine.out("network", "create", "--subnet", str(s1), n1)
    web = engine.out("run", "-d", "--name", f"w{engine.sfx}", *HTTPD)
    engine.out("network", "connect", "--alias", "late", n1, web)
    nets = engine.inspect(web)["NetworkSettings"]["Networks"]
    assert set(nets) == {"bridge", n1}
    ip1 = nets[n1]["IPAddress"]
    r = engine.docker("run", "--rm", "--network", n1, "busybox",
                      *_fetch(5, "http://late/hostname"), check=False)
    assert r.stdout.decode().strip() == web[:12], r.stderr
    engine.out("network", "disconnect", n1, web)
    assert set(engine.inspect(web)["NetworkSettings"]["Networks"]) == {"bridge"}
    r = engine.docker("run", "--rm", "--network", n1, "busybox",
                      *_fetch(2, f"http://{ip1}/hostname"), check=False)
    assert r.returncode != 0
    engine.docker("rm", "-f", web)
    engine.out("network", "rm", n1)
    assert n1 not in engine.out("network", "ls", "--format", "{{.Name}}").split()
    engine.networks_made.remove(n1)


def test_network_prune_and_errors(engine):
    from net_helpers import free_subnets
    (s1,) = free_subnets(1)
    keep, gone = f"pk{engine.sfx}", f"pg{engine.sfx}"
    engine.networks_made += [keep, gone]
    engine.out("network", "create", "--subnet", str(s1), keep)
    engine.out("network", "create", gone)  # subnet picked by the daemon
    engine.out("run", "-d", "--network", keep, "busybox", "sleep", "300")
    r = engine.docker("network", "create", keep, check=False)
    assert r.returncode != 0 and f"network with name {keep} already exists" in r.stderr.decode()
    r = engine.docker("network", "rm", "bridge", check=False)
    assert "pre-defined network" in r.stderr.decode()
    r = engine.docker("run", "--network", f"nosuch{engine.sfx}", "busybox", "true",
                      check=False)
    assert f"network nosuch{engine.sfx} not found" in r.stderr.decode()
    r = engine.docker("run", "--ip", "10.1.2.3", "busybox", "true", check=False)
    assert "user defined networks only" in r.stderr.decode()
    # an internal network: no default route, no masquerade
    internal = f"pi{engine.sfx}"
    engine.networks_made.append(internal)
    (s2,) = free_subnets(1)
    engine.out("network", "create", "--internal", "--subnet", str(s2), internal)
    routes = engine.out("run", "--rm", "--network", internal, "busybox", "ip", "route")
    assert "default" not in routes and str(s2) in routes
    assert not [r for r in rules_of(engine.prefix) if str(s2) in r and "MASQUERADE" in r]
    pruned = engine.out("network", "prune", "-f")
    assert gone in pruned and keep not in pruned
    names = engine.out("network", "ls", "--format", "{{.Name}}").split()
    assert keep in names and gone not in names and internal not in names


def test_host_and_container_network_modes(engine):
    import random
    port = random.randrange(20000, 30000)
    # --network host: the host's interfaces, a port bound on the host's loopback
    engine.out("run", "-d", "--name", "hostnet", "--network", "host", "busybox", "httpd",
               "-f", "-p", f"127.0.0.1:{port}", "-h", "/etc")
    assert wait_for(lambda: tcp_reachable("127.0.0.1", port))
    info = engine.inspect("hostnet")
    assert list(info["NetworkSettings"]["Networks"]) == ["host"]
    assert info["NetworkSettings"]["IPAddress"] == ""
    # container:NAME shares the namespace: loopback, address, hostname
    web = engine.out("run", "-d", "--name", "shared", "--hostname", "sharedhost", *HTTPD)
    links_seen = engine.out("run", "--rm", "--network", "host", "busybox", "cat",
                            "/proc/net/dev")
    assert engine.bridge in links_seen
    ip = engine.inspect(web)["NetworkSettings"]["IPAddress"]
    r = engine.docker("run", "--rm", "--network", "container:shared", "busybox", "sh", "-c",
                      "timeout 5 wget -q -O - http://127.0.0.1/hostname; ip -4 addr show eth0; "
                      "hostname")
    out = r.stdout.decode()
    assert out.startswith("sharedhost\n"), out + r.stderr.decode()
    assert f"inet {ip}/" in out
    assert out.strip().endswith("sharedhost")
    r = engine.docker("run", "--rm", "--network", "container:shared", "-p", "80",
                      "busybox", "true", check=False)
    assert r.returncode != 0 and "conflicting options" in r.stderr.decode()
    # --network none: loopback only
    out = engine.out("run", "--rm", "--network", "none", "busybox", "cat", "/proc/net/dev")
    assert "lo:" in out and "eth0" not in out


def test_etc_files_as_docker_writes_them(engine, upstream):
    out = engine.out("run", "--rm", "--hostname", "h1", "--add-host", "db:10.1.2.3",
                     "--add-host", "gw:host-gateway", "busybox", "sh", "-c",
                     "cat /etc/hosts; echo ==; cat /etc/hostname; echo ==; cat /etc/resolv.conf")
    hosts, hostname, resolv = out.split("==\n")
    assert hosts.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    assert "10.1.2.3\tdb\n" in hosts and f"{engine.gateway}\tgw\n" in hosts
    assert hosts.rstrip().splitlines()[-1].endswith("\th1")
    assert hostname == "h1\n"
    # the test host's only resolver is on loopback: dropped, docker's defaults instead
    assert upstream.ip not in resolv
    assert "nameserver 8.8.8.8" in resolv
    out = engine.out("run", "--rm", "--dns", "10.9.9.9", "--dns-search", "example.test",
                     "--dns-option", "ndots:3", "busybox", "cat", "/etc/resolv.conf")
    assert out.splitlines() == ["search example.test", "nameserver 10.9.9.9", "options ndots:3"]


def test_icc_false_blocks_default_bridge(make_engine):
    engine = make_engine(icc=False)
    web = engine.out("run", "-d", *HTTPD)
    ip = engine.inspect(web)["NetworkSettings"]["IPAddress"]
    r = engine.docker("run", "--rm", "busybox",
                      *_fetch(2, f"http://{ip}/hostname"), check=False)
    assert r.returncode != 0
    assert any(f"-i {engine.bridge} -o {engine.bridge} -j DROP" in line
               for line in rules_of(engine.prefix))


def test_userland_proxy_off_hairpin_and_localhost(make_engine, client_ns):
    """Without pallet-proxy, DNAT carries everything: 127.0.0.1 (route_localnet),
    the client namespace, and a container reaching its own published port
    through the host's address (hairpin NAT)."""
    engine = make_engine(**{"userland-proxy": False})
    engine.out("run", "-d", "--name", "hp", "-p", "80", *HTTPD)
    port = _port(engine, "hp")
    cid = engine.inspect("hp")["Id"]
    assert proxies_for(engine.ip_prefix) == []
    assert wait_for(lambda: _get(f"http://127.0.0.1:{port}/hostname")) == cid[:12] + "\n"
    got = wget(["nsenter", f"--net={client_ns.path}"],
               f"http://{client_ns.host_ip}:{port}/hostname")
    assert got.stdout.decode() == cid[:12] + "\n"
    # hairpin: from inside the container to the gateway's published port
    key = engine.inspect("hp")["NetworkSettings"]["SandboxKey"]
    got = wget(["nsenter", f"--net={key}"], f"http://{engine.gateway}:{port}/hostname")
    assert got.stdout.decode() == cid[:12] + "\n"
    assert any("HAIRPIN" in r and "MASQUERADE" in r for r in rules_of(engine.prefix))


def test_hairpin_with_userland_proxy(engine):
    engine.out("run", "-d", "--name", "hp2", "-p", "80", *HTTPD)
    port = _port(engine, "hp2")
    cid = engine.inspect("hp2")["Id"]
    r = engine.docker("run", "--rm", "busybox",
                      *_fetch(5, f"http://{engine.gateway}:{port}/hostname"), check=False)
    assert r.stdout.decode() == cid[:12] + "\n"
    key = engine.inspect("hp2")["NetworkSettings"]["SandboxKey"]
    got = wget(["nsenter", f"--net={key}"], f"http://{engine.gateway}:{port}/hostname")
    assert got.stdout.decode() == cid[:12] + "\n"


def test_stop_removes_rules_proxies_addresses(engine):
    engine.out("run", "-d", "--name", "st", "-p", "80", "-p", "53/udp", *HTTPD)
    info = engine.inspect("st")
    veth_before = _host_veths(engine.bridge)
    assert len(veth_before) == 1
    assert len(proxies_for(engine.ip_prefix)) == 2
    engine.out("stop", "-t", "1", "st")
    assert _host_veths(engine.bridge) == set()
    assert proxies_for(engine.ip_prefix) == []
    assert not [r for r in rules_of(engine.prefix) if "DNAT" in r or "--dport" in r]
    stopped = engine.inspect("st")["NetworkSettings"]
    assert stopped["IPAddress"] == "" and stopped["Ports"] == {}
    assert "bridge" in stopped["Networks"]
    # restart: a fresh sandbox, published again
    engine.out("start", "st")
    again = engine.inspect("st")["NetworkSettings"]
    assert again["IPAddress"] and again["SandboxKey"] != info["NetworkSettings"]["SandboxKey"]
    port = int(again["Ports"]["80/tcp"][0]["HostPort"])
    assert wait_for(lambda: _get(f"http://127.0.0.1:{port}/hostname"))


def _host_veths(bridge: str) -> set[str]:
    d = f"/sys/class/net/{bridge}/brif"
    try:
        return set(os.listdir(d))
    except FileNotFoundError:
        return set()


def test_killed_daemon_reconciles(make_engine):
    """palletd (with --live-restore, so that its containers outlive it) killed
    with -9: its proxies die with it; at its next start the running container
    is published again, the one that died meanwhile leaves no rule, proxy,
    address, veth or namespace behind."""
    engine = make_engine("--live-restore")
    engine.out("run", "-d", "--name", "live", "-p", "80", *HTTPD)
    engine.out("run", "-d", "--name", "dies", "-p", "80", "busybox", "sleep", "300")
    live_port = _port(engine, "live")
    dies = engine.inspect("dies")
    dies_ip = dies["NetworkSettings"]["IPAddress"]
    dies_key = dies["NetworkSettings"]["SandboxKey"]
    assert len(proxies_for(engine.ip_prefix)) == 2
    engine.kill_daemon()
    assert wait_for(lambda: not proxies_for(engine.ip_prefix), timeout=10)
    os.kill(dies["State"]["Pid"], 9)  # the container dies while palletd is away
    time.sleep(0.5)
    engine.restart()
    # the live one is published again on the same port
    assert wait_for(lambda: _get(f"http://127.0.0.1:{live_port}/hostname"), timeout=15)
    assert wait_for(lambda: len(proxies_for(engine.ip_prefix)) == 1)
    rules = rules_of(engine.prefix)
    assert not [r for r in rules if dies_ip + ":" in r or f"{dies_ip}/32" in r]
    assert len([r for r in rules if "DNAT" in r]) == 1
    assert not os.path.exists(dies_key)
    assert len(_host_veths(engine.bridge)) == 1
    ipam = [f for f in os.listdir(os.path.join(engine.data_root, "network", "ipam"))]
    held = []
    for f in ipam:
        with open(os.path.join(engine.data_root, "network", "ipam", f)) as fh:
            held += list(json.load(fh)["allocated"])
    assert dies_ip not in held
    # and a clean SIGTERM restart keeps the live one working too
    engine.stop_daemon()
    engine.restart()
    assert wait_for(lambda: _get(f"http://127.0.0.1:{live_port}/hostname"), timeout=15)
    before = rules_of(engine.prefix)
    engine.stop_daemon()
    engine.restart()
    assert sorted(rules_of(engine.prefix)) == sorted(before), "rules duplicated on restart"


def test_restart_without_live_restore_cleans_up(engine):
    """Without --live-restore palletd stops its containers when it stops, as
    dockerd does: their rules, proxies and addresses go with them."""
    engine.out("run", "-d", "--name", "gone", "-p", "80", *HTTPD)
    assert len(proxies_for(engine.ip_prefix)) == 1
    engine.stop_daemon()
    assert proxies_for(engine.ip_prefix) == []
    engine.restart()
    assert engine.inspect("gone")["State"]["Running"] is False
    assert not [r for r in rules_of(engine.prefix) if "DNAT" in r]
    assert _host_veths(engine.bridge) == set()


def test_busybox_binary_available():
    assert os.path.exists(BUSYBOX)
