"""palletd's networking from CNI configuration lists (the ``Network`` contract).

A container on a CNI network gets a network namespace pinned under the exec
root, attached by each network's plugins (ADD at start, or at ``docker
network connect`` while it runs; DEL when its process is gone or at
disconnect), its /etc files written from the results, and docker's
``NetworkSettings`` built from them.  ``default``/``bridge`` is the first
list of the configuration directory (or the one ``network`` names);
``host``, ``none`` and ``container:<id>`` work as with dockerd.  Networks
made through the Docker API are configuration lists of net_cni's own
(:mod:`.networks`).
"""
from __future__ import annotations

import datetime
import hashlib
import logging
import os
import socket
import threading

from pallet.cni import conf as cniconf
from pallet.cni.invoke import Environment
from pallet.cni.network import CNI
from pallet.cni.result import Result
from pallet.core.errors import Conflict, ConfigError, InvalidArgument, NotFound
from pallet.linux import netns
from pallet.oci.spec import join_sandbox
from pallet.core.files import read_json, remove, write_json

from pallet.plugins.net_cni import etcfiles
from pallet.plugins.net_cni.networks import Networks, network_id, subnets_of

log = logging.getLogger("pallet.net_cni")

LOOPBACK = cniconf.parse('{"cniVersion": "0.3.1", "name": "cni-loopback", '
                         '"plugins": [{"type": "loopback"}]}')
_KEYS = {"conf_dir", "bin_dirs", "network", "resolv-conf", "cache_dir"}


def check_config(cfg: dict) -> dict:
    unknown = set(cfg) - _KEYS
    if unknown:
        raise ConfigError(f"plugins.net_cni: unknown keys {sorted(unknown)}")
    return cfg


class CNINetwork:
    """The object of the ``network`` role (see ``pallet.core.contracts.Network``)."""

    def __init__(self, *, network_root: str, exec_root: str, config: dict):
        cfg = check_config(dict(config or {}))
        bins = cfg.get("bin_dirs", cniconf.DEFAULT_PLUGIN_DIRS)
        self.resolv_conf = cfg.get("resolv-conf", "/etc/resolv.conf")
        self.root = os.path.join(network_root, "cni")
        self.state_dir = os.path.join(self.root, "containers")
        self.netns_dir = os.path.join(exec_root, "cni-netns")
        self.nets = Networks(cfg.get("conf_dir", cniconf.DEFAULT_CONF_DIR),
                             os.path.join(self.root, "net.d"), os.path.join(self.root, "ipam"),
                             cfg.get("network", ""))
        self.cni = CNI((bins,) if isinstance(bins, str) else tuple(bins),
                       cfg.get("cache_dir") or os.path.join(self.root, "cache"))
        self.records: dict[str, dict] = {}
        self._lock = threading.RLock()
        self._loaded = False
        self._started = datetime.datetime.now(datetime.timezone.utc).isoformat()

    # --- state -----------------------------------------------------------------------------------
    def _file(self, cid: str) -> str:
        return os.path.join(self.state_dir, f"{cid}.json")

    def _load(self) -> None:
        if self._loaded:
            return
        os.makedirs(self.state_dir, exist_ok=True)
        for name in os.listdir(self.state_dir):
            if name.endswith(".json"):
                rec = read_json(os.path.join(self.state_dir, name))
                if isinstance(rec, dict) and rec.get("id"):
                    self.records[rec["id"]] = rec
        self._loaded = True

    def _save(self, rec: dict) -> None:
        os.makedirs(self.state_dir, exist_ok=True)
        write_json(self._file(rec["id"]), rec)

    def start(self, loop) -> None:
        """Release the sandboxes of containers whose processes are gone."""
        with self._lock:
            self._load()
            for rec in list(self.records.values()):
                sb = rec.get("sandbox") or {}
                if sb.get("path") and not netns.pids_in(sb["path"]):
                    self._release(rec)

    def shutdown(self) -> None:
        pass

    # --- register --------------------------------------------------------------------------------
    def _mode(self, mode: str) -> tuple[str, str]:
        if mode in ("", "default", "bridge"):
            return "cni", self.nets.default().name
        if mode in ("host", "none"):
            return mode, ""
        if mode.startswith("container:"):
            return "container", mode.split(":", 1)[1]
        try:
            return "cni", self.nets.find(mode)[0].name
        except NotFound:
            # not a 404: the docker CLI takes a 404 from create for a missing image
            raise InvalidArgument(f"network {mode} not found") from None

    def register(self, container: dict) -> None:
        with self._lock:
            self._register(container)

    def _register(self, info: dict) -> dict:
        self._load()
        host = info.get("host_config") or {}
        kind, arg = self._mode(host.get("NetworkMode") or "default")
        old = self.records.get(info["id"]) or {}
        networks = old.get("networks") or ([arg] if kind == "cni" else [])
        rec = {"id": info["id"], "name": info.get("name", "").lstrip("/"), "kind": kind,
               "target": arg if kind == "container" else "", "networks": networks,
               "hostname": info.get("hostname") or info["id"][:12],
               "domainname": info.get("domainname") or "",
               "dns": list(host.get("Dns") or ()), "dns_search": list(host.get("DnsSearch") or ()),
               "dns_options": list(host.get("DnsOptions") or ()),
               "extra_hosts": list(host.get("ExtraHosts") or ()),
               "paths": {"hosts": info.get("hosts_path", ""),
                         "hostname": info.get("hostname_path", ""),
                         "resolv": info.get("resolv_conf_path", "")},
               "sandbox": old.get("sandbox")}
        self.records[rec["id"]] = rec
        self._save(rec)
        return rec

    def unregister(self, id: str) -> None:
        with self._lock:
            self._load()
            rec = self.records.pop(id, None)
            if rec is not None and rec.get("sandbox"):
                self._release(rec)
            remove(self._file(id))

    # --- setup and release -------------------------------------------------------------------------
    def setup(self, container: dict) -> dict:
        with self._lock:
            rec = self._register(container)
            if rec.get("sandbox"):
                self._release(rec)
            if rec["kind"] == "host":
                paths = rec["paths"]
                etcfiles.put(paths["hosts"], _read("/etc/hosts") +
                             etcfiles.extra_lines(rec["extra_hosts"]))
                etcfiles.put(paths["hostname"], socket.gethostname() + "\n")
                etcfiles.put(paths["resolv"], _read(self.resolv_conf))
                rec["sandbox"] = {"mode": "host"}
            elif rec["kind"] == "container":
                target = self._target(rec["target"])
                rec["sandbox"] = {"mode": "container", "target": target["id"]}
            else:
                rec["sandbox"] = self._attach(rec)
            self._save(rec)
            return self._settings(rec)

    def _target(self, ref: str) -> dict:
        for rec in self.records.values():
            if rec["id"] == ref or rec["id"].startswith(ref) or rec["name"] == ref.lstrip("/"):
                if not (rec.get("sandbox") or {}).get("path"):
                    raise InvalidArgument(f"container {ref} has no network namespace to join")
                return rec
        raise NotFound(f"no such container: {ref}")

    def _args(self, rec: dict) -> tuple:
        return (("IgnoreUnknown", "1"), ("K8S_POD_NAME", rec["name"]))

    def _attach(self, rec: dict) -> dict:
        netns.prepare_dir(self.netns_dir)
        path = os.path.join(self.netns_dir, rec["id"][:12])
        if os.path.exists(path):
            netns.remove(path)
        netns.create(path)
        sandbox = {"mode": "netns", "path": path, "attachments": []}
        try:
            self.cni.add(LOOPBACK, Environment(rec["id"], path, "lo", self._args(rec)))
            for name in rec["networks"]:
                self._add(rec, sandbox, name)
        except BaseException:
            self._detach(rec["id"], sandbox)
            raise
        self._write_files(rec, sandbox)
        return sandbox

    def _add(self, rec: dict, sandbox: dict, name: str) -> None:
        net, _ = self.nets.find(name)
        used = {a["ifname"] for a in sandbox["attachments"]}
        ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
        result = self.cni.add(net, Environment(rec["id"], sandbox["path"], ifname,
                                               self._args(rec)))
        sandbox["attachments"].append({"network": net.name, "ifname": ifname,
                                       "result": result.raw})

    def _write_files(self, rec: dict, sandbox: dict) -> None:
        ips, dns = [], {}
        for a in sandbox["attachments"]:
            r = Result.from_json(a["result"])
            ips += [ip.ip for ip in r.sandbox_ips(a["ifname"])]
            dns = dns or r.dns
        paths = rec["paths"]
        etcfiles.put(paths["hosts"], etcfiles.hosts(rec["hostname"], rec["domainname"], ips,
                                                    rec["extra_hosts"]))
        etcfiles.put(paths["hostname"], rec["hostname"] + "\n")
        etcfiles.put(paths["resolv"], etcfiles.resolv(
            _read(self.resolv_conf), servers=rec["dns"], searches=rec["dns_search"],
            options=rec["dns_options"], result_dns=dns))

    def _del(self, cid: str, sandbox: dict, attachment: dict) -> None:
        path = sandbox.get("path", "")
        alive = path if path and netns.is_namespace(path) else ""
        entry = self.cni.cached(attachment["network"], cid, attachment["ifname"])
        try:
            if entry is not None:
                self.cni.delete_cached(entry)
            else:
                net, _ = self.nets.find(attachment["network"])
                self.cni.delete(net, Environment(cid, alive, attachment["ifname"]))
        except Exception as e:  # noqa: BLE001 — the namespace goes regardless
            log.warning("cni del of %s on %s: %s", cid[:12], attachment["network"], e)

    def _detach(self, cid: str, sandbox: dict) -> None:
        for a in sandbox.get("attachments") or ():
            self._del(cid, sandbox, a)
        path = sandbox.get("path", "")
        try:
            self.cni.delete(LOOPBACK, Environment(cid, path if path and netns.is_namespace(path)
                                                  else "", "lo"))
        except Exception as e:  # noqa: BLE001
            log.debug("loopback del of %s: %s", cid[:12], e)
        if path:
            netns.remove(path)

    def release(self, id: str) -> None:
        with self._lock:
            self._load()
            rec = self.records.get(id)
            if rec is not None and rec.get("sandbox"):
                self._release(rec)

    def _release(self, rec: dict) -> None:
        sb = rec.get("sandbox") or {}
        if sb.get("mode") == "netns":
            self._detach(rec["id"], sb)
        rec["sandbox"] = None
        self._save(rec)

    def running_sandboxes(self) -> set[str]:
        """Ids of the containers whose network namespace is in use (for net_proxy)."""
        with self._lock:
            self._load()
            return {cid for cid, rec in self.records.items()
                    if (rec.get("sandbox") or {}).get("path") and
                    netns.pids_in(rec["sandbox"]["path"])}

    # --- connect, disconnect ------------------------------------------------------------------------
    def connect(self, network: str, container: dict, endpoint_config: dict) -> None:
        """``docker network connect``: attached at once when the container runs."""
        with self._lock:
            self._load()
            rec = self.records.get(container["id"]) or self._register(container)
            net, _ = self.nets.find(network)
            if rec["kind"] != "cni":
                raise Conflict(f"container {rec['name']} uses the {rec['kind']} network mode "
                               "and cannot be connected to another network")
            if net.name in rec["networks"]:
                raise Conflict(f"endpoint with name {rec['name']} already exists in network "
                               f"{net.name}")
            sb = rec.get("sandbox") or {}
            if sb.get("mode") == "netns":
                self._add(rec, sb, net.name)
                self._write_files(rec, sb)
            rec["networks"].append(net.name)
            self._save(rec)

    def disconnect(self, network: str, id: str, force: bool) -> None:
        with self._lock:
            self._load()
            rec = self.records.get(id)
            net, _ = self.nets.find(network)
            if rec is None or net.name not in rec["networks"]:
                raise Conflict(f"container {id} is not connected to network {network}")
            sb = rec.get("sandbox") or {}
            for a in list(sb.get("attachments") or ()):
                if a["network"] == net.name:
                    self._del(rec["id"], sb, a)
                    sb["attachments"].remove(a)
                    self._write_files(rec, sb)
            rec["networks"].remove(net.name)
            self._save(rec)

    # --- the spec -----------------------------------------------------------------------------------
    def build_spec(self, spec: dict, container: dict) -> None:
        with self._lock:
            self._load()
            rec = self.records.get(container.get("id", ""))
            if rec is None or not rec.get("sandbox"):
                return
            sb = rec["sandbox"]
            if sb["mode"] == "host":
                join_sandbox(spec, None, rec["paths"])
                linux = spec["linux"]
                linux["namespaces"] = [ns for ns in linux["namespaces"] if ns.get("type") != "uts"]
            elif sb["mode"] == "container":
                target = self.records[sb["target"]]
                join_sandbox(spec, target["sandbox"]["path"], target["paths"], target["hostname"])
            else:
                join_sandbox(spec, sb["path"], rec["paths"])

    # --- inspect -----------------------------------------------------------------------------------
    def settings(self, id: str) -> dict:
        with self._lock:
            self._load()
            rec = self.records.get(id)
            return self._settings(rec) if rec is not None else _empty()

    def _endpoints(self, rec: dict) -> dict[str, dict | None]:
        """network name -> the endpoint of an attachment (None: not attached now)."""
        sb = rec.get("sandbox") or {}
        out: dict[str, dict | None] = {name: None for name in rec.get("networks") or ()}
        for a in sb.get("attachments") or ():
            r = Result.from_json(a["result"])
            ips = r.sandbox_ips(a["ifname"])
            if ips:
                out[a["network"]] = {
                    "ip": ips[0].ip, "prefixlen": ips[0].prefix_length,
                    "gateway": ips[0].gateway, "mac": r.sandbox_mac(a["ifname"]),
                    "id": hashlib.sha256(f"{rec['id']}/{a['network']}".encode()).hexdigest()}
        return out

    def _settings(self, rec: dict) -> dict:
        out = _empty()
        if rec["kind"] in ("host", "none"):
            out["Networks"][rec["kind"]] = _endpoint(network_id(rec["kind"]), None)
            return out
        sb = rec.get("sandbox") or {}
        if sb.get("mode") == "container":
            rec = self.records.get(sb["target"], rec)
            sb = rec.get("sandbox") or {}
        if sb.get("path"):
            out["SandboxKey"] = sb["path"]
            out["SandboxID"] = hashlib.sha256(sb["path"].encode()).hexdigest()
        first = True
        for name, ep in self._endpoints(rec).items():
            if ep is not None and first:
                out.update(IPAddress=ep["ip"], IPPrefixLen=ep["prefixlen"],
                           Gateway=ep["gateway"], MacAddress=ep["mac"], EndpointID=ep["id"])
                first = False
            out["Networks"][name] = _endpoint(network_id(name), ep)
        return out

    def port_target(self, id: str) -> dict | None:
        """Where published ports go: the container's first address, and the
        bridge and host end of its veth when that network has a bridge plugin."""
        with self._lock:
            self._load()
            rec = self.records.get(id) or {}
            for a in (rec.get("sandbox") or {}).get("attachments") or ():
                r = Result.from_json(a["result"])
                ips = r.sandbox_ips(a["ifname"])
                if not ips:
                    continue
                host_side = [i.name for i in r.interfaces if not i.sandbox]
                return {"ip": ips[0].ip, "bridge": host_side[0] if len(host_side) > 1 else "",
                        "host_ifname": host_side[-1] if host_side else "",
                        "host_ip": ips[0].gateway, "endpoint_id": rec["id"]}
            return None

    # --- networks ---------------------------------------------------------------------------------
    def _describe(self, name: str, driver: str, config: list[dict], meta: dict) -> dict:
        containers = {}
        for rec in self.records.values():
            ep = self._endpoints(rec).get(name) if rec["kind"] == "cni" else None
            if ep is not None:
                containers[rec["id"]] = {"Name": rec["name"], "EndpointID": ep["id"],
                                         "MacAddress": ep["mac"],
                                         "IPv4Address": f"{ep['ip']}/{ep['prefixlen']}",
                                         "IPv6Address": ""}
        return {"Name": name, "Id": network_id(name),
                "Created": meta.get("created") or self._started, "Scope": "local",
                "Driver": driver, "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": None, "Config": config},
                "Internal": False, "Attachable": False, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
                "Options": dict(meta.get("options") or {}),
                "Labels": dict(meta.get("labels") or {})}

    def _all(self) -> list[dict]:
        with self._lock:
            self._load()
            out = [self._describe(n.name, "bridge", subnets_of(n),
                                  self.nets.meta(n.name) if own else {})
                   for n, own in self.nets.all()]
            return out + [self._describe("host", "host", [], {}),
                          self._describe("none", "null", [], {})]

    def list_networks(self, filters=None) -> list[dict]:
        filters = filters or {}
        out = []
        for n in self._all():
            if filters.get("name") and not any(f in n["Name"] for f in filters["name"]):
                continue
            if filters.get("id") and not any(n["Id"].startswith(f) for f in filters["id"]):
                continue
            if filters.get("driver") and n["Driver"] not in filters["driver"]:
                continue
            if not all(_label_matches(n["Labels"], f) for f in filters.get("label") or ()):
                continue
            out.append(n)
        return out

    def inspect_network(self, ref: str) -> dict:
        for n in self._all():
            if ref in (n["Name"], n["Id"]) or (len(ref) >= 3 and n["Id"].startswith(ref)):
                return n
        raise NotFound(f"network {ref} not found")

    def create_network(self, body: dict) -> dict:
        with self._lock:
            net, _ = self.nets.create(body)
            return {"Id": network_id(net.name), "Warning": ""}

    def remove_network(self, ref: str) -> None:
        with self._lock:
            self._load()
            if ref in ("host", "none"):
                raise Conflict(f"{ref} is a pre-defined network and cannot be removed")
            net, _ = self.nets.find(ref)
            if any(net.name in (rec.get("networks") or ()) for rec in self.records.values()):
                raise Conflict(f"error while removing network: network {net.name} id "
                               f"{network_id(net.name)} has active endpoints")
            self.nets.remove(net.name)

    def prune_networks(self, filters=None) -> list[str]:
        with self._lock:
            self._load()
            used = {n for rec in self.records.values() for n in rec.get("networks") or ()}
            removed = []
            for net, own in self.nets.all():
                if own and net.name not in used:
                    self.nets.remove(net.name)
                    removed.append(net.name)
            return removed


def _label_matches(labels: dict, text: str) -> bool:
    key, eq, value = text.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _empty() -> dict:
    return {"Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": {}}


def _endpoint(nid: str, ep: dict | None) -> dict:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": nid,
            "EndpointID": ep["id"] if ep else "", "Gateway": ep["gateway"] if ep else "",
            "IPAddress": ep["ip"] if ep else "", "IPPrefixLen": ep["prefixlen"] if ep else 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": ep["mac"] if ep else "", "DriverOpts": None}
