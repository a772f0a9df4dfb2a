"""Published ports as docker describes them: the bindings a container asks
for, and the ``NetworkSettings.Ports`` map and ``Ports`` list it reports.

``HostConfig.PortBindings`` maps ``"80/tcp"`` to a list of
``{"HostIp", "HostPort"}``; ``HostPort`` is a port, a range (``"8080-8090"``:
the first free one is taken) or empty (an ephemeral port).  With
``PublishAllPorts`` (``-P``) every exposed port without a binding gets an
ephemeral one.
"""
from __future__ import annotations

import ipaddress

import attrs

from pallet.core.errors import InvalidArgument, NotImplementedYet


@attrs.frozen
class Request:
    """One binding to make: container port/proto, host ip, host port range."""

    container_port: int
    proto: str
    host_ip: str
    low: int      # 0: ephemeral
    high: int


def parse_port_key(key: str) -> tuple[int, str]:
    """``"80/tcp"`` -> (80, "tcp"); a missing protocol is tcp."""
    text = str(key)
    port, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if proto == "sctp":
        raise NotImplementedYet("publishing sctp ports is not supported")
    if proto not in ("tcp", "udp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    try:
        n = int(port)
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {port}") from None
    if not 0 < n < 65536:
        raise InvalidArgument(f"invalid containerPort: {port}")
    return n, proto


def _host_range(text: str) -> tuple[int, int]:
    text = (text or "").strip()
    if not text:
        return 0, 0
    lo, sep, hi = text.partition("-")
    try:
        low = int(lo)
        high = int(hi) if sep else low
    except ValueError:
        raise InvalidArgument(f"invalid hostPort: {text}") from None
    if not (0 <= low <= high < 65536) or (low == 0 and high != 0):
        raise InvalidArgument(f"invalid hostPort: {text}")
    return low, high


def requests(host_config: dict, exposed_ports) -> list[Request]:
    """Every binding asked for by ``-p`` and ``-P``, in a stable order."""
    out: list[Request] = []
    bindings = host_config.get("PortBindings") or {}
    if not isinstance(bindings, dict):
        raise InvalidArgument("invalid HostConfig.PortBindings")
    seen = set()
    for key in sorted(bindings, key=lambda k: parse_port_key(k)):
        port, proto = parse_port_key(key)
        seen.add((port, proto))
        hosts = bindings[key] or [{}]
        if not isinstance(hosts, list):
            raise InvalidArgument(f"invalid port binding for {key}")
        for h in hosts:
            h = h or {}
            if not isinstance(h, dict):
                raise InvalidArgument(f"invalid port binding for {key}")
            ip = (h.get("HostIp") or "").strip("[]")
            if ip:
                try:
                    addr = ipaddress.ip_address(ip)
                except ValueError:
                    raise InvalidArgument(f"invalid IP address: {ip}") from None
                if addr.version != 4:
                    continue  # IPv6 bindings: pallet publishes IPv4 only
            low, high = _host_range(h.get("HostPort") or "")
            out.append(Request(port, proto, ip, low, high))
    if host_config.get("PublishAllPorts"):
        for key in sorted(exposed_ports or {}, key=lambda k: parse_port_key(k)):
            port, proto = parse_port_key(key)
            if (port, proto) not in seen:
                out.append(Request(port, proto, "", 0, 0))
    return out


def exposed(host_config: dict, exposed_ports) -> list[str]:
    """Every ``port/proto`` the container exposes or publishes."""
    keys = set()
    for key in list(exposed_ports or {}) + list(host_config.get("PortBindings") or {}):
        port, proto = parse_port_key(key)
        keys.add((port, proto))
    return [f"{p}/{proto}" for p, proto in sorted(keys)]


def ports_map(mappings: list[dict], exposed_keys: list[str]) -> dict:
    """docker's ``NetworkSettings.Ports``."""
    out: dict = {k: None for k in exposed_keys}
    for m in mappings:
        key = f"{m['container_port']}/{m['proto']}"
        if out.get(key) is None:
            out[key] = []
        out[key].append({"HostIp": m["host_ip"], "HostPort": str(m["host_port"])})
    return out


def ports_list(mappings: list[dict], exposed_keys: list[str]) -> list[dict]:
    """docker's ``Ports`` of ``GET /containers/json`` (the PORTS column)."""
    out = []
    published = set()
    for m in mappings:
        published.add(f"{m['container_port']}/{m['proto']}")
        out.append({"IP": m["host_ip"], "PrivatePort": m["container_port"],
                    "PublicPort": m["host_port"], "Type": m["proto"]})
    for key in exposed_keys:
        if key not in published:
            port, proto = parse_port_key(key)
            out.append({"PrivatePort": port, "Type": proto})
    return out


def local_port_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (docker's port allocator uses it too)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            if 0 < lo <= hi < 65536:
                return lo, hi
    except (OSError, ValueError):
        pass
    return 49153, 60999
