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

from pallet.core.errors import InvalidArgument, NotFound, NotImplementedYet, PalletError
from pallet.plugins.net_bridge.ipam import parse_address, parse_subnet


class Forbidden(PalletError):
    """What the bridge driver cannot do (dockerd's 403: "Forbidden" errors)."""

    http_status = 403

OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_HOST_IP = "com.docker.network.bridge.host_binding_ipv4"
OPT_DEFAULT = "com.docker.network.bridge.default_bridge"

PREDEFINED = ("bridge", "host", "none")

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
              "host_ip", "default", "user_subnet", "materialized", "enable_ipv6", "subnet6",
              "gateway6", "ip_range6", "aux", "aux6", "ipam_options", "user_range")

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
        self.enable_ipv6: bool = bool(kw.get("enable_ipv6", False))
        self.subnet6: str = kw.get("subnet6", "")
        self.gateway6: str = kw.get("gateway6", "")
        self.ip_range6: str = kw.get("ip_range6", "")
        self.aux: dict = dict(kw.get("aux") or {})        # AuxiliaryAddresses (v4)
        self.aux6: dict = dict(kw.get("aux6") or {})
        self.ipam_options = kw.get("ipam_options")        # IPAM.Options, echoed back
        self.user_range: bool = bool(kw.get("user_range", False))

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

    @property
    def prefixlen6(self) -> int:
        return ipaddress.ip_network(self.subnet6).prefixlen if self.subnet6 else 0

    @property
    def ipv6(self) -> bool:
        """Containers get an IPv6 address here too."""
        return self.enable_ipv6 and bool(self.subnet6)

    def inspect(self, containers: dict | None = None) -> dict:
        """docker's network inspect shape (``containers``: id -> endpoint view)."""
        ipam_config = []
        for subnet, rng, gw, aux in ((self.subnet, self.ip_range, self.gateway, self.aux),
                                     (self.subnet6, self.ip_range6, self.gateway6, self.aux6)):
            if not subnet:
                continue
            entry = {"Subnet": subnet}
            if rng and rng != subnet:
                entry["IPRange"] = rng
            entry["Gateway"] = gw
            if aux:
                entry["AuxiliaryAddresses"] = dict(aux)
            ipam_config.append(entry)
        ipam_options = self.ipam_options
        return {
            "Name": self.name, "Id": self.id, "Created": self.created, "Scope": "local",
            "Driver": self.driver, "EnableIPv6": self.enable_ipv6,
            "IPAM": {"Driver": "default", "Options": ipam_options,
                     "Config": ipam_config},
            "Internal": self.internal, "Attachable": self.attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": containers or {},
            "Options": dict(self.options), "Labels": dict(self.labels),
        }


def default_bridge(nid: str, created: str, *, bridge: str, subnet: str, gateway: str,
                   ip_range: str, icc: bool, mtu: int, masquerade: bool,
                   host_ip: str = "0.0.0.0", subnet6: str = "") -> Network:
    """The ``bridge`` network as the configuration describes it."""
    options = {OPT_DEFAULT: "true", OPT_ICC: str(icc).lower(),
               OPT_MASQ: str(masquerade).lower(), OPT_HOST_IP: host_ip,
               OPT_BRIDGE_NAME: bridge, OPT_MTU: str(mtu)}
    gateway6 = str(ipaddress.ip_network(subnet6).network_address + 1) if subnet6 else ""
    return Network(id=nid, name="bridge", driver="bridge", created=created, subnet=subnet,
                   gateway=gateway, ip_range=ip_range or subnet, options=options, bridge=bridge,
                   mtu=mtu, icc=icc, masquerade=masquerade, host_ip=host_ip, default=True,
                   user_subnet=False, enable_ipv6=bool(subnet6), subnet6=subnet6,
                   gateway6=gateway6, ip_range6=subnet6)


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
    # dockerd takes any other name (spaces, slashes, any length): so does pallet
    if name in PREDEFINED:
        raise InvalidArgument(f"{name} is a pre-defined network and cannot be created")
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise NotFound(f'plugin "{driver}" not found')
    if body.get("Ingress") or body.get("Scope") not in (None, "", "local") \
            or body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
        raise NotImplementedYet("only local bridge networks are supported")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("invalid IPAM configuration")
    if (ipam.get("Driver") or "default") != "default":
        raise NotFound(f'plugin "{ipam["Driver"]}" not found')
    ipam_options = ipam.get("Options")
    if ipam_options is not None and (not isinstance(ipam_options, dict) or not all(
            isinstance(v, str) for v in ipam_options.values())):
        raise InvalidArgument("invalid IPAM options: a map of strings is expected")
    by_family: dict[int, list] = {4: [], 6: []}
    for c in [c for c in (ipam.get("Config") or []) if c]:
        if not isinstance(c, dict):
            raise InvalidArgument("invalid IPAM configuration")
        family = 6 if ":" in (c.get("Subnet") or c.get("Gateway") or "") else 4
        by_family[family].append(c)
    for family, configs in by_family.items():
        if len(configs) > 1:
            raise Forbidden("bridge driver doesn't support multiple subnets")
    enable_ipv6 = bool(body.get("EnableIPv6"))
    v4 = _ipam_entry(by_family[4][0], 4) if by_family[4] else {}
    v6 = _ipam_entry(by_family[6][0], 6) if by_family[6] else {}
    if enable_ipv6 and not v6:
        raise InvalidArgument("could not find an available, non-overlapping IPv6 address pool "
                              "among the defaults to assign to the network: give an IPv6 "
                              "--subnet")
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
    subnet = v4.get("subnet", "")
    return Network(id=nid, name=name, driver="bridge", created=created, subnet=subnet,
                   gateway=v4.get("gateway", ""), ip_range=v4.get("ip_range") or subnet,
                   internal=bool(body.get("Internal")),
                   attachable=bool(body.get("Attachable")), labels=labels, options=options,
                   bridge=bridge, mtu=mtu, icc=_bool_opt(options.get(OPT_ICC), True),
                   masquerade=_bool_opt(options.get(OPT_MASQ), True), host_ip=host_ip,
                   default=False, user_subnet=bool(subnet), aux=v4.get("aux") or {},
                   user_range=bool(v4.get("ip_range")), enable_ipv6=enable_ipv6,
                   # an IPv6 pool without EnableIPv6 is kept and shown (as dockerd
                   # does) but hands out no address
                   subnet6=v6.get("subnet", ""), gateway6=v6.get("gateway", ""),
                   ip_range6=v6.get("ip_range") or v6.get("subnet", ""),
                   aux6=v6.get("aux") or {},
                   ipam_options=dict(ipam_options) if ipam_options is not None else None)


def _ipam_entry(c: dict, family: int) -> dict:
    """One IPAM Config entry checked: subnet, ip range, gateway (the subnet's
    first address unless given), auxiliary addresses within the subnet."""
    if not c.get("Subnet"):
        if c.get("Gateway") or c.get("IPRange") or c.get("AuxiliaryAddresses"):
            raise InvalidArgument("a gateway, ip range or auxiliary address needs a subnet")
        return {}
    net = parse_subnet(c["Subnet"], version=family)
    if family == 4 and net.prefixlen > 30:
        raise InvalidArgument(f"subnet {c['Subnet']} is too small")
    out = {"subnet": str(net)}
    if c.get("IPRange"):
        rng = parse_subnet(c["IPRange"], "ip range", family)
        if not rng.subnet_of(net):
            raise InvalidArgument(f"ip range {c['IPRange']} is not within subnet {net}")
        out["ip_range"] = str(rng)
    if c.get("Gateway"):
        gw = parse_address(c["Gateway"], "gateway", family)
        if gw not in net:
            raise InvalidArgument(f"gateway {c['Gateway']} is not within subnet {net}")
        out["gateway"] = str(gw)
    else:
        out["gateway"] = str(net.network_address + 1)
    aux = c.get("AuxiliaryAddresses") or {}
    if not isinstance(aux, dict):
        raise InvalidArgument("invalid AuxiliaryAddresses: a map of names to addresses")
    for key, ip in aux.items():
        addr = parse_address(ip, "auxiliary address", family)
        if addr not in net:
            raise InvalidArgument(f"auxiliary address: ({key}:{ip}) must belong to the "
                                  f"master pool: {net}")
    out["aux"] = {str(k): str(v) for k, v in aux.items()}
    return out


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
