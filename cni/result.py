"""A plugin's result (the CNI spec's "Success" output, versions 0.3.0 to 1.1.0;
0.1.0/0.2.0 results, with ``ip4``/``ip6``, are read too)."""
from __future__ import annotations

import ipaddress

import attrs


@attrs.frozen
class IPConfig:
    """One address of a result: ``address`` with its prefix (``10.1.0.5/24``),
    the gateway, and the index of the interface it is on (-1: unknown)."""

    address: str
    gateway: str = ""
    interface: int = -1

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def prefix_length(self) -> int:
        return ipaddress.ip_interface(self.address).network.prefixlen

    @property
    def version(self) -> int:
        return ipaddress.ip_interface(self.address).version


@attrs.frozen
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""


@attrs.frozen
class Result:
    """The parts of a result pallet uses, and the document itself."""

    cni_version: str
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[dict, ...] = ()
    dns: dict = attrs.field(factory=dict)
    raw: dict = attrs.field(factory=dict, repr=False)

    @classmethod
    def from_json(cls, doc: dict | None) -> "Result":
        doc = doc or {}
        ips = [IPConfig(address=str(ip.get("address", "")), gateway=str(ip.get("gateway") or ""),
                        interface=int(ip["interface"]) if ip.get("interface") is not None else -1)
               for ip in doc.get("ips") or () if ip.get("address")]
        for key in ("ip4", "ip6"):  # 0.1.0 / 0.2.0 results
            old = doc.get(key)
            if isinstance(old, dict) and old.get("ip"):
                ips.append(IPConfig(address=old["ip"], gateway=old.get("gateway") or ""))
        ifaces = [Interface(name=str(i.get("name", "")), mac=str(i.get("mac") or ""),
                            sandbox=str(i.get("sandbox") or ""))
                  for i in doc.get("interfaces") or ()]
        return cls(cni_version=str(doc.get("cniVersion", "")), interfaces=tuple(ifaces),
                   ips=tuple(ips), routes=tuple(doc.get("routes") or ()),
                   dns=dict(doc.get("dns") or {}), raw=doc)

    def sandbox_ips(self, ifname: str = "eth0") -> list[IPConfig]:
        """The addresses on ``ifname`` inside the sandbox (every address when the
        result does not say which interface they are on); IPv4 first, as
        kubelet takes the first one as the pod's IP."""
        chosen = []
        for ip in self.ips:
            if 0 <= ip.interface < len(self.interfaces):
                iface = self.interfaces[ip.interface]
                if iface.name != ifname or not iface.sandbox:
                    continue
            chosen.append(ip)
        return sorted(chosen, key=lambda ip: ip.version)

    def sandbox_mac(self, ifname: str = "eth0") -> str:
        for iface in self.interfaces:
            if iface.name == ifname and iface.sandbox:
                return iface.mac
        return ""
