"""Networks as dockerd describes them: the records, the create request, the
inspect and list shapes.

Three networks always exist, as in dockerd: ``bridge`` (the default bridge,
whose Linux bridge name, subnet, range and ICC come from the plugin's
configuration), ``host`` and ``none``.  User-defined ones are bridge networks
with a bridge named ``br-<id[:12]>`` unless the option
``com.docker.network.bridge.name`` names it.
"""
from __future__ import annotations

import ipaddress
import re
import secrets

from pallet.core.errors import InvalidArgument, NotFound, NotImplementedYet
from pallet.plugins.net_bridge.ipam import parse_address, parse_subnet

OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_HOST_IP = "com.docker.network.bridge.host_binding_ipv4"
OPT_DEFAULT = "com.docker.network.bridge.default_bridge"

PREDEFINED = ("bridge", "host", "none")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

#: the pools user-defined networks get a subnet from when none is asked for
#: (dockerd's defaults: 172.17-31.0.0/16, then 192.168.0-240.0/20)
AUTO_POOLS = ([ipaddress.IPv4Network(f"172.{i}.0.0/16") for i in range(17, 32)]
              + [ipaddress.IPv4Network(f"192.168.{i}.0/20") for i in range(0, 256, 16)])


def new_id() -> str:
    return secrets.token_hex(32)


def _bool_opt(value, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "t", "true", "yes", "on"):
        return True
    if text in ("0", "f", "false", "no", "off"):
        return False
    raise InvalidArgument(f"invalid boolean option value {value!r}")


class Network:
    """One network record (persisted as JSON)."""

    FIELDS = ("id", "name", "driver", "created", "subnet", "gateway", "ip_range", "internal",
              "attachable", "labels", "options", "bridge", "mtu", "icc", "masquerade",
              "host_ip", "default", "user_subnet", "materialized")

    def __init__(self, **kw):
        self.id: str = kw["id"]
        self.name: str = kw["name"]
        self.driver: str = kw.get("driver", "bridge")
        self.created: str = kw.get("created", "")
        self.subnet: str = kw.get("subnet", "")
        self.gateway: str = kw.get("gateway", "")
        self.ip_range: str = kw.get("ip_range", "")
        self.internal: bool = bool(kw.get("internal", False))
        self.attachable: bool = bool(kw.get("attachable", False))
        self.labels: dict = dict(kw.get("labels") or {})
        self.options: dict = dict(kw.get("options") or {})
        self.bridge: str = kw.get("bridge", "")
        self.mtu: int = int(kw.get("mtu") or 1500)
        self.icc: bool = bool(kw.get("icc", True))
        self.masquerade: bool = bool(kw.get("masquerade", True))
        self.host_ip: str = kw.get("host_ip", "0.0.0.0")
        self.default: bool = bool(kw.get("default", False))
        self.user_subnet: bool = bool(kw.get("user_subnet", False))
        self.materialized: bool = bool(kw.get("materialized", False))

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    @classmethod
    def from_json(cls, obj: dict) -> "Network":
        return cls(**{k: obj[k] for k in cls.FIELDS if k in obj})

    @property
    def is_bridge(self) -> bool:
        return self.driver == "bridge"

    @property
    def user_defined(self) -> bool:
        """A network whose containers get the embedded DNS server."""
        return self.is_bridge and not self.default

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    def inspect(self, containers: dict | None = None) -> dict:
        """docker's network inspect shape (``containers``: id -> endpoint view)."""
        ipam_config = []
        if self.subnet:
            entry = {"Subnet": self.subnet, "Gateway": self.gateway}
            if self.ip_range and self.ip_range != self.subnet:
                entry["IPRange"] = self.ip_range
            ipam_config.append(entry)
        return {
            "Name": self.name, "Id": self.id, "Created": self.created, "Scope": "local",
            "Driver": self.driver, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None if self.default else {},
                     "Config": ipam_config},
            "Internal": self.internal, "Attachable": self.attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": containers or {},
            "Options": dict(self.options), "Labels": dict(self.labels),
        }


def default_bridge(nid: str, created: str, *, bridge: str, subnet: str, gateway: str,
                   ip_range: str, icc: bool, mtu: int, masquerade: bool,
                   host_ip: str = "0.0.0.0") -> Network:
    """The ``bridge`` network as the configuration describes it."""
    options = {OPT_DEFAULT: "true", OPT_ICC: str(icc).lower(),
               OPT_MASQ: str(masquerade).lower(), OPT_HOST_IP: host_ip,
               OPT_BRIDGE_NAME: bridge, OPT_MTU: str(mtu)}
    return Network(id=nid, name="bridge", driver="bridge", created=created, subnet=subnet,
                   gateway=gateway, ip_range=ip_range or subnet, options=options, bridge=bridge,
                   mtu=mtu, icc=icc, masquerade=masquerade, host_ip=host_ip, default=True,
                   user_subnet=False)


def special(nid: str, created: str, name: str) -> Network:
    return Network(id=nid, name=name, driver="host" if name == "host" else "null",
                   created=created)


def parse_create(body, *, nid: str, created: str) -> Network:
    """A user-defined network from ``POST /networks/create``'s body (subnet
    left empty when it is to be picked)."""
    if not isinstance(body, dict):
        raise InvalidArgument("invalid network config: JSON object expected")
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("network name is required")
    if not _NAME.match(name):
        raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                              "are allowed")
    if name in PREDEFINED:
        raise InvalidArgument(f"{name} is a pre-defined network and cannot be created")
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise NotFound(f'plugin "{driver}" not found')
    if body.get("EnableIPv6"):
        raise NotImplementedYet("IPv6 networks are not supported yet")
    if body.get("Ingress") or body.get("Scope") not in (None, "", "local") \
            or body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
        raise NotImplementedYet("only local bridge networks are supported")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("invalid IPAM configuration")
    if (ipam.get("Driver") or "default") != "default":
        raise NotFound(f'plugin "{ipam["Driver"]}" not found')
    configs = [c for c in (ipam.get("Config") or []) if c]
    v4 = []
    for c in configs:
        if not isinstance(c, dict):
            raise InvalidArgument("invalid IPAM configuration")
        if c.get("Subnet") and ":" in c["Subnet"]:
            raise NotImplementedYet("IPv6 subnets are not supported yet")
        v4.append(c)
    if len(v4) > 1:
        raise NotImplementedYet("more than one IPv4 subnet per network is not supported")
    subnet = gateway = ip_range = ""
    if v4:
        c = v4[0]
        if not c.get("Subnet"):
            if c.get("Gateway") or c.get("IPRange"):
                raise InvalidArgument("a gateway or ip range needs a subnet")
        else:
            net = parse_subnet(c["Subnet"])
            if net.prefixlen > 30:
                raise InvalidArgument(f"subnet {c['Subnet']} is too small")
            subnet = str(net)
            if c.get("IPRange"):
                rng = parse_subnet(c["IPRange"], "ip range")
                if not rng.subnet_of(net):
                    raise InvalidArgument(f"ip range {c['IPRange']} is not within subnet "
                                          f"{subnet}")
                ip_range = str(rng)
            if c.get("Gateway"):
                gw = parse_address(c["Gateway"], "gateway")
                if gw not in net:
                    raise InvalidArgument(f"gateway {c['Gateway']} is not within subnet {subnet}")
                gateway = str(gw)
            else:
                gateway = str(net.network_address + 1)
            if c.get("AuxiliaryAddresses"):
                raise NotImplementedYet("auxiliary addresses are not supported yet")
    options = body.get("Options") or {}
    labels = body.get("Labels") or {}
    if not isinstance(options, dict) or not isinstance(labels, dict):
        raise InvalidArgument("invalid network options or labels")
    options = {str(k): str(v) for k, v in options.items()}
    bridge = options.get(OPT_BRIDGE_NAME) or f"br-{nid[:12]}"
    if len(bridge) > 15 or not re.match(r"^[a-zA-Z0-9_.-]+$", bridge):
        raise InvalidArgument(f"invalid bridge name {bridge!r}")
    try:
        mtu = int(options.get(OPT_MTU) or 1500)
    except ValueError:
        raise InvalidArgument(f"invalid mtu {options.get(OPT_MTU)!r}") from None
    if not 68 <= mtu <= 65535:
        raise InvalidArgument(f"invalid mtu {mtu}")
    host_ip = options.get(OPT_HOST_IP) or "0.0.0.0"
    parse_address(host_ip, "host binding address")
    return Network(id=nid, name=name, driver="bridge", created=created, subnet=subnet,
                   gateway=gateway, ip_range=ip_range or subnet, internal=bool(body.get("Internal")),
                   attachable=bool(body.get("Attachable")), labels=labels, options=options,
                   bridge=bridge, mtu=mtu, icc=_bool_opt(options.get(OPT_ICC), True),
                   masquerade=_bool_opt(options.get(OPT_MASQ), True), host_ip=host_ip,
                   default=False, user_subnet=bool(subnet))


def pick_subnet(taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network | None:
    """The first default pool that overlaps nothing in ``taken``."""
    for pool in AUTO_POOLS:
        if not any(pool.overlaps(t) for t in taken):
            return pool
    return None


def matches_filters(net: Network, filters: dict, in_use: bool) -> bool:
    """docker's network list filters: name, id, driver, label, type, scope, dangling."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "name" and not any(v in net.name for v in values):
            return False
        if key == "id" and not any(net.id.startswith(v) for v in values):
            return False
        if key == "driver" and net.driver not in values:
            return False
        if key == "scope" and "local" not in values:
            return False
        if key == "type":
            kind = "builtin" if net.name in PREDEFINED else "custom"
            if kind not in values:
                return False
        if key == "dangling":
            want = values[0].lower() in ("1", "true")
            if (net.name not in PREDEFINED and not in_use) != want:
                return False
        if key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in net.labels or (eq and net.labels[k] != val):
                    return False
    return True


FILTERS = ("name", "id", "driver", "label", "type", "scope", "dangling", "until")
