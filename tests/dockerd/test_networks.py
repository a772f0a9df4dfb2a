"""Networks as dockerd 20.10 shapes them: IPAM with an IPv4 range, gateway
and auxiliary addresses beside an IPv6 subnet (dual stack), options and
labels echoed, endpoints with ``IPv6Address``, ``MacAddress`` and
``Aliases``, ``Links`` in ``NetworkingConfig``; the same requests to palletd
and dockerd and their answers compared (ids, times and the subnets, which
differ per engine, put aside).  Then what only palletd is asked here (dockerd
runs without iptables): ip6tables rules in pallet's chains, gone with the
network, and the default bridge with ``fixed-cidr-v6``."""
from __future__ import annotations

import ipaddress
import json
import random
import secrets
import subprocess

import pytest

from ctr_helpers import out, start_palletd
from engines import free_subnets


def _v6() -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network(f"fd{random.randrange(256):02x}:{random.randrange(65536):x}:"
                                 f"{random.randrange(65536):x}::/64")


def _plan():
    (v4,) = free_subnets(1)
    return {"v4": v4, "v6": _v6(), "bridge": "plt" + secrets.token_hex(3)}


def _network_body(p, name="dual") -> dict:
    v4, v6 = p["v4"], p["v6"]
    return {"Name": name, "EnableIPv6": True, "Attachable": True, "Labels": {"l": "v"},
            "Options": {"com.docker.network.bridge.name": p["bridge"], "foo": "bar"},
            "IPAM": {"Driver": "default", "Options": {"io": "x"}, "Config": [
                {"Subnet": str(v4), "IPRange": str(list(v4.subnets(new_prefix=26))[1]),
                 "Gateway": str(v4.network_address + 254),
                 "AuxiliaryAddresses": {"host1": str(v4.network_address + 65)}},
                {"Subnet": str(v6), "Gateway": str(v6.network_address + 1)}]}}


def _norm(text: str, p) -> str:
    """Addresses of the engine's own subnets written relative to them."""
    v4, v6 = p["v4"], p["v6"]
    for net, tag in ((v6, "V6"), (v4, "V4")):
        prefix = str(net.network_address).rstrip(":") if net.version == 6 else \
            ".".join(str(net.network_address).split(".")[:3]) + "."
        text = text.replace(prefix, tag if net.version == 6 else tag + ".")
    return text.replace(str(v4), "V4NET").replace(str(v6), "V6NET").replace(p["bridge"], "BR")


def _scenario(engine, p) -> dict:
    got = {}
    status, _, body = engine.api("POST", "/v1.41/networks/create", _network_body(p))
    assert status == 201, body
    view = json.loads(engine.api("GET", "/v1.41/networks/dual")[2])
    for key in ("Id", "Created", "Containers"):
        view.pop(key)
    got["inspect"] = json.loads(_norm(json.dumps(view), p))
    two = {"Name": "dual2", "IPAM": {"Config": [{"Subnet": "10.1.0.0/24"},
                                                 {"Subnet": "10.2.0.0/24"}]}}
    status, _, body = engine.api("POST", "/v1.41/networks/create", two)
    got["two_v4"] = (status, json.loads(body)["message"])
    v6 = p["v6"]
    st, _, body = engine.api("POST", "/v1.41/containers/create", {
        "Image": "busybox", "Cmd": ["sleep", "300"], "MacAddress": "02:42:ac:11:00:99",
        "HostConfig": {"NetworkMode": "dual"},
        "NetworkingConfig": {"EndpointsConfig": {"dual": {
            "IPAMConfig": {"IPv6Address": str(v6.network_address + 0x99)},
            "Aliases": ["al1"]}}}})
    assert st == 201, body
    a = json.loads(body)["Id"]
    engine.docker("start", a)
    st, _, body = engine.api("POST", "/v1.41/containers/create", {
        "Image": "busybox", "Cmd": ["sleep", "300"], "HostConfig": {"NetworkMode": "dual"},
        "NetworkingConfig": {"EndpointsConfig": {"dual": {"Links": [f"{a}:foo"]}}}})
    b = json.loads(body)["Id"]
    engine.docker("start", b)
    for cid, tag in ((a, "a"), (b, "b")):
        c = json.loads(engine.api("GET", f"/v1.41/containers/{cid}/json")[2])
        ep = dict(c["NetworkSettings"]["Networks"]["dual"])
        for key in ("NetworkID", "EndpointID"):
            ep.pop(key)
        ep["Aliases"] = [x if x != cid[:12] else "SHORTID" for x in ep["Aliases"] or []]
        ep["Links"] = [x.replace(a, "A") for x in ep["Links"] or []] or None
        if cid == b:  # derived from the IPv4 address (dockerd 20.10's 02:42 + its bytes)
            ip = ipaddress.IPv4Address(ep["IPAddress"])
            assert ep["MacAddress"] == "02:42:" + ":".join(f"{x:02x}" for x in ip.packed)
            ep["MacAddress"] = "DERIVED"
        got[f"endpoint_{tag}"] = json.loads(_norm(json.dumps(ep), p))
        addr = out(engine.docker("exec", cid, "ip", "-o", "addr", "show", "eth0"))
        got[f"addr_{tag}"] = sorted(_norm(" ".join(w for w in ln.split()[1:5]), p)
                                    for ln in addr.splitlines() if "fe80" not in ln)
        got[f"route6_{tag}"] = _norm(out(engine.docker("exec", cid, "ip", "-6", "route",
                                                       "show", "default")).split(" metric")[0],
                                     p).split(" expires")[0]
        hosts = out(engine.docker("exec", cid, "cat", "/etc/hosts")).splitlines()
        got[f"hosts_{tag}"] = [_norm(ln.replace(cid[:12], "HOST"), p) for ln in hosts]
    got["aaaa"] = _norm(out(engine.docker("exec", b, "nslookup", "-type=AAAA", "al1")), p) \
        .split("Non-authoritative answer:")[-1].strip()
    got["ping6"] = engine.docker("exec", b, "ping", "-6", "-c1", "-W5", "al1",
                                 check=False).returncode
    engine.docker("rm", "-f", a, b)
    engine.api("DELETE", "/v1.41/networks/dual")
    return got


def test_dual_stack_network_like_dockerd(palletd, dockerd):
    ours, theirs = _scenario(palletd, _plan()), _scenario(dockerd, _plan())
    assert ours == theirs
    assert ours["endpoint_a"]["GlobalIPv6Address"] == "V6::99"
    assert ours["endpoint_a"]["MacAddress"] == "02:42:ac:11:00:99"
    assert ours["endpoint_b"]["Links"] == ["A:foo"] and ours["ping6"] == 0


def _ip6_rules(prefix: str) -> str:
    save = subprocess.run(["ip6tables-legacy-save"], capture_output=True, text=True).stdout
    return "\n".join(ln for ln in save.splitlines() if prefix in ln)


def test_ip6tables_rules_follow_the_networks(palletd):
    p = _plan()
    prefix = palletd.net.prefix
    palletd.api("POST", "/v1.43/networks/create", _network_body(p, "dual6"))
    try:
        cid = out(palletd.docker("run", "-d", "--network", "dual6", "--ip6",
                                 str(p["v6"].network_address + 7), "busybox", "sleep", "300"))
        rules = _ip6_rules(prefix)
        assert f"-A {prefix}-FORWARD -i {p['bridge']} ! -o {p['bridge']} -j ACCEPT" in rules
        assert f"-A {prefix}-ISOLATION-2 -o {p['bridge']} -j DROP" in rules
        assert f"-A FORWARD -j {prefix}-FORWARD" in rules
        ns = json.loads(palletd.docker("inspect", cid).stdout)[0]["NetworkSettings"]
        assert ns["Networks"]["dual6"]["GlobalIPv6Address"] == str(p["v6"].network_address + 7)
        palletd.docker("rm", "-f", cid)
    finally:
        palletd.api("DELETE", "/v1.43/networks/dual6")
    assert _ip6_rules(prefix) == ""  # no IPv6 network left: pallet's ip6tables chains go


def test_default_bridge_fixed_cidr_v6(busybox_tar):
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root")
    v6 = _v6()
    from api_harness import Palletd
    d = Palletd("pallet", config="")
    # the default bridge of this palletd gets an IPv6 range
    with open(d.extra_args[-1], "a") as f:
        pass
    d.net.bridge_options.update({"ipv6": True, "fixed-cidr-v6": str(v6)})
    with open(d.extra_args[-1], "w") as f:
        f.write(d.net.toml())
    try:
        d.start()
        d.docker("load", "-i", busybox_tar)
        cid = out(d.docker("run", "-d", "busybox", "sleep", "300"))
        ns = json.loads(d.docker("inspect", cid).stdout)[0]["NetworkSettings"]
        assert ipaddress.ip_address(ns["GlobalIPv6Address"]) in v6
        assert ns["IPv6Gateway"] == str(v6.network_address + 1) and \
            ns["GlobalIPv6PrefixLen"] == 64
        bridge = json.loads(d.docker("network", "inspect", "bridge").stdout)[0]
        assert bridge["EnableIPv6"] and bridge["IPAM"]["Config"][1]["Subnet"] == str(v6)
        d.docker("rm", "-f", cid)
    finally:
        d.cleanup()

