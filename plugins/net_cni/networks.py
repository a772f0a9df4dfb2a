"""The CNI networks net_cni knows: the configuration lists of the
configuration directory (made by whoever runs the node, read only), and
those made through the Docker API (``docker network create``), which
net_cni writes as lists of its own: a ``bridge`` plugin on a bridge named
after the network, ``host-local`` addresses from the subnet asked for (or
a free one), ``portmap``; their labels and creation time beside them."""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import secrets
import subprocess

from pallet.cni import conf as cniconf
from pallet.core.errors import Conflict, InvalidArgument, NotFound
from pallet.core.files import read_json, remove, write_json

#: the names docker keeps for itself
RESERVED = ("host", "none", "bridge", "default")


def network_id(name: str) -> str:
    return hashlib.sha256(f"cni:{name}".encode()).hexdigest()


def subnets_of(net: cniconf.NetworkConfigList) -> list[dict]:
    """docker's ``IPAM.Config`` of a list: the host-local ranges of its plugins."""
    out = []
    for p in net.plugins:
        ipam = p.get("ipam") or {}
        for rng in ipam.get("ranges") or ():
            for r in rng:
                if r.get("subnet"):
                    entry = {"Subnet": r["subnet"]}
                    if r.get("gateway"):
                        entry["Gateway"] = r["gateway"]
                    out.append(entry)
        if ipam.get("subnet"):
            out.append({"Subnet": ipam["subnet"]})
    return out


def _taken_subnets() -> list:
    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    out += subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    taken = []
    for word in out.split():
        try:
            taken.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            pass
    return taken


class Networks:
    """Lookup by name or id, creation and removal."""

    def __init__(self, conf_dir: str, own_dir: str, ipam_dir: str, default: str = ""):
        self.conf_dir, self.own_dir, self.ipam_dir = conf_dir, own_dir, ipam_dir
        self.default_name = default

    def _lists(self) -> list[tuple[cniconf.NetworkConfigList, bool]]:
        out = []
        for d, own in ((self.conf_dir, False), (self.own_dir, True)):
            for path in cniconf.conf_files(d):
                try:
                    out.append((cniconf.load_file(path), own))
                except InvalidArgument:
                    continue
        return out

    def default(self) -> cniconf.NetworkConfigList:
        """The network of containers that ask for ``default``/``bridge``."""
        lists = [n for n, own in self._lists() if not own]
        if not lists:
            raise NotFound(f"no network config found in {self.conf_dir}")
        for n in lists:
            if not self.default_name or n.name == self.default_name:
                return n
        raise NotFound(f"network {self.default_name} not found in {self.conf_dir}")

    def find(self, ref: str) -> tuple[cniconf.NetworkConfigList, bool]:
        for n, own in self._lists():
            if ref in (n.name, network_id(n.name)) or \
                    (len(ref) >= 3 and network_id(n.name).startswith(ref)):
                return n, own
        raise NotFound(f"network {ref} not found")

    def all(self) -> list[tuple[cniconf.NetworkConfigList, bool]]:
        return self._lists()

    def meta(self, name: str) -> dict:
        return read_json(os.path.join(self.own_dir, f"{name}.meta"), {}) or {}

    def create(self, body: dict) -> tuple[cniconf.NetworkConfigList, dict]:
        name = str(body.get("Name") or "")
        if not name:
            raise InvalidArgument("network name is required")
        if name in RESERVED:
            raise Conflict(f"network with name {name} already exists")
        try:
            self.find(name)
            raise Conflict(f"network with name {name} already exists")
        except NotFound:
            pass
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise InvalidArgument(f"net_cni: driver {driver} is not supported (bridge only)")
        configs = (body.get("IPAM") or {}).get("Config") or []
        subnet = configs[0].get("Subnet") if configs else None
        taken = _taken_subnets() + [ipaddress.ip_network(s["Subnet"])
                                    for n, _ in self._lists() for s in subnets_of(n)]
        if subnet:
            net = ipaddress.ip_network(subnet)
            if any(net.overlaps(t) for t in taken):
                raise Conflict(f"invalid pool request: pool overlaps with other one on this "
                               f"address space ({subnet})")
        else:
            net = next((c for c in (ipaddress.ip_network(f"10.{a}.{b}.0/24")
                                    for a in range(200, 255) for b in range(256))
                        if not any(c.overlaps(t) for t in taken)), None)
            if net is None:
                raise Conflict("could not find an available, non-overlapping IPv4 address "
                               "pool among the defaults to assign to the network")
        gateway = configs[0].get("Gateway") if configs and configs[0].get("Gateway") else \
            str(net.network_address + 1)
        doc = {"cniVersion": "1.0.0", "name": name, "plugins": [
            {"type": "bridge", "bridge": f"cni-{secrets.token_hex(4)}", "isGateway": True,
             "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": self.ipam_dir,
                      "ranges": [[{"subnet": str(net), "gateway": gateway}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}
        os.makedirs(self.own_dir, exist_ok=True)
        meta = {"labels": dict(body.get("Labels") or {}),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "options": dict(body.get("Options") or {})}
        write_json(os.path.join(self.own_dir, f"{name}.meta"), meta)
        write_json(os.path.join(self.own_dir, f"{name}.conflist"), doc)
        return cniconf.parse(json.dumps(doc)), meta

    def remove(self, name: str) -> None:
        """Remove a network made here, and its bridge."""
        net, own = self.find(name)
        if not own:
            raise Conflict(f"network {name} comes from {self.conf_dir}: remove its "
                           "configuration list there")
        remove(os.path.join(self.own_dir, f"{net.name}.conflist"))
        remove(os.path.join(self.own_dir, f"{net.name}.meta"))
        for p in net.plugins:
            if p.get("type") == "bridge" and p.get("bridge"):
                subprocess.run(["ip", "link", "del", p["bridge"]], stderr=subprocess.DEVNULL)
