"""The ``network`` role object: bridge networks for palletd.

``BridgeDriver`` keeps the network records, their address pools and one
record per container (what it asked for, and while it runs its sandbox),
all persisted under ``kernel.paths.network_root``; the sandboxes themselves
(named network namespaces) live under ``{exec_root}/netns``.  Every public
method runs on the plugin worker thread (``worker.py``) and may be called
from any thread, palletd's event loop included.

Container side (called by palletd, see ``sandbox.py``): ``register`` at
create, ``setup`` before the OCI spec is built at start, ``build_spec`` from
the ``pallet_build_spec`` hook, ``release`` when the container's process has
exited, ``unregister`` when it is removed; ``settings`` gives docker's
``NetworkSettings``; ``port_target`` tells net_proxy where published ports
go.  Network side (the ``/networks`` endpoints): ``create_network``,
``list_networks``, ``inspect_network``, ``remove_network``,
``prune_networks``, ``connect``, ``disconnect``.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import time

from pallet.core.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.plugins.net_bridge import firewall, networks as nets
from pallet.linux import netns
from pallet.linux import networker as workermod
from pallet.plugins.net_bridge.dns import DNSServer, TYPE_PTR
from pallet.plugins.net_bridge.ipam import Pool, parse_subnet
from pallet.linux.netlink import HostLinks
from pallet.plugins.net_bridge.sandbox import SandboxMixin
from pallet.core.files import read_json, remove, write_json
from pallet.plugins.net_bridge.state import StateDir

log = logging.getLogger("pallet.net_bridge")

#: config section keys, with dockerd's flag each mirrors
DEFAULTS = {
    "bridge": "pallet0",          # -b / --bridge
    "bip": "",                    # --bip (gateway/prefix of the default bridge)
    "fixed-cidr": "",             # --fixed-cidr
    "icc": True,                  # --icc
    "mtu": 1500,                  # --mtu
    "ip-masq": True,              # --ip-masq
    "iptables": True,             # --iptables
    "chain-prefix": "PALLET",
    "resolv-conf": "/etc/resolv.conf",
    "ipv6": False,                # --ipv6 (the default bridge gets fixed-cidr-v6)
    "fixed-cidr-v6": "",          # --fixed-cidr-v6
}


def rfc3339(ts: float | None = None) -> str:
    ts = time.time() if ts is None else ts
    frac = f"{ts % 1:.9f}"[1:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + frac + "Z"


def check_config(cfg: dict) -> dict:
    """The plugin section with defaults filled in; bad values are refused."""
    from pallet.core.errors import ConfigError

    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"[plugins.net_bridge]: unknown keys {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(DEFAULTS)}")
    out = dict(DEFAULTS)
    out.update(cfg)
    bridge = str(out["bridge"])
    if not bridge or len(bridge) > 15 or "/" in bridge or " " in bridge:
        raise ConfigError(f"[plugins.net_bridge] bridge: invalid interface name {bridge!r}")
    prefix = str(out["chain-prefix"])
    if not prefix or len(prefix) > 14 or not prefix.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"[plugins.net_bridge] chain-prefix: {prefix!r} must be 1-14 "
                          "letters, digits, - or _")
    try:
        if out["bip"]:
            iface = ipaddress.ip_interface(out["bip"])
            if iface.version != 4 or iface.network.prefixlen > 30:
                raise ValueError
        if out["fixed-cidr"]:
            rng = ipaddress.ip_network(out["fixed-cidr"], strict=False)
            if out["bip"] and not rng.subnet_of(ipaddress.ip_interface(out["bip"]).network):
                raise ConfigError(f"[plugins.net_bridge] fixed-cidr {out['fixed-cidr']} is "
                                  f"not within bip {out['bip']}")
    except ValueError:
        raise ConfigError("[plugins.net_bridge] bip / fixed-cidr: invalid IPv4 "
                          f"address ({out['bip']!r}, {out['fixed-cidr']!r})") from None
    try:
        out["mtu"] = int(out["mtu"])
    except (TypeError, ValueError):
        raise ConfigError(f"[plugins.net_bridge] mtu: invalid {out['mtu']!r}") from None
    for key in ("icc", "ip-masq", "iptables", "ipv6"):
        if not isinstance(out[key], bool):
            raise ConfigError(f"[plugins.net_bridge] {key}: true or false expected")
    if out["fixed-cidr-v6"]:
        try:
            net6 = ipaddress.ip_network(out["fixed-cidr-v6"], strict=False)
            if net6.version != 6 or net6.prefixlen > 126:
                raise ValueError
        except ValueError:
            raise ConfigError("[plugins.net_bridge] fixed-cidr-v6: invalid IPv6 network "
                              f"{out['fixed-cidr-v6']!r}") from None
        out["fixed-cidr-v6"] = str(net6)
    if out["ipv6"] and not out["fixed-cidr-v6"]:
        # as dockerd: --ipv6 on the default bridge needs its range
        raise ConfigError("[plugins.net_bridge] ipv6 needs fixed-cidr-v6")
    return out


class BridgeDriver(SandboxMixin):
    def __init__(self, *, network_root: str, exec_root: str, config: dict):
        cfg = check_config(config)
        self.cfg = cfg
        self.prefix = cfg["chain-prefix"]
        self.state = StateDir(network_root)
        self.netns_dir = os.path.join(exec_root, "netns")
        self.worker = workermod.get()
        self.links = HostLinks()
        self.dns = DNSServer(self._resolve)
        self.networks: dict[str, nets.Network] = {}
        self.pools: dict[str, Pool] = {}
        self.pools6: dict[str, Pool] = {}
        self.records: dict[str, dict] = {}
        self._loaded = False
        self._reconciled = False
        self._bridges_up: set[str] = set()
        self._netns_dir_ready = False
        self._dns_tables: dict = {}
        self._veth_reaper = None
        self._netlink: dict = {}  # sandbox id -> its netlink socket (in memory only)

    # --- lifecycle -------------------------------------------------------------------
    def start(self, loop=None) -> None:
        """Load the state and reconcile it with the system (palletd start-up):
        sandboxes whose containers are gone are released, addresses nobody
        holds are freed, bridges and rules of materialized networks are put
        back, orphan namespace files are removed, DNS servers of running
        containers are served again.  ``loop`` serves the DNS servers."""
        if loop is not None:
            self.dns.use_loop(loop)
        self.worker.call(self._reconcile)

    def warm_up(self) -> None:
        """Import pyroute2 and python-iptables in the background (both are slow
        to import) so that the first container start does not pay for it."""
        def imports():
            import pyroute2  # noqa: F401
            if self.cfg["iptables"]:
                from pallet.linux import xtables
                xtables.iptc()
        self.worker.submit(imports)

    def shutdown(self) -> None:
        """palletd stops: stop serving DNS; sandboxes of running containers stay."""
        self.dns.close()

        def close():
            for nl in self._netlink.values():
                nl.close()
            self._netlink.clear()
            if self._veth_reaper is not None:
                self._veth_reaper.drain()
            self.links.close()
        try:
            self.worker.call(close)
        except RuntimeError:
            pass

    def _load(self) -> None:
        if self._loaded:
            return
        self.state.ensure()
        for nid, obj in self.state.load_all(self.state.networks).items():
            try:
                n = nets.Network.from_json(obj)
            except (KeyError, TypeError, ValueError) as e:
                log.warning("ignoring network record %s: %s", nid, e)
                continue
            self.networks[n.id] = n
        for cid, rec in self.state.load_all(self.state.endpoints).items():
            if rec.get("id") == cid:
                self.records[cid] = rec
        self._ensure_predefined()
        for n in self.networks.values():
            if n.is_bridge and n.subnet:
                self._pool(n)
                self._pool6(n)
        self._loaded = True
        self._rebuild_dns()

    def _ensure_predefined(self) -> None:
        by_name = {n.name: n for n in self.networks.values()}
        now = rfc3339()
        for name in ("host", "none"):
            if name not in by_name:
                n = nets.special(nets.new_id(), now, name)
                self._save_network(n)
        old = by_name.get("bridge")
        subnet, gateway = "", ""
        if self.cfg["bip"]:
            iface = ipaddress.ip_interface(self.cfg["bip"])
            subnet, gateway = str(iface.network), str(iface.ip)
        elif old is not None and old.bridge == self.cfg["bridge"]:
            subnet, gateway = old.subnet, old.gateway
        ip_range = str(parse_subnet(self.cfg["fixed-cidr"])) if self.cfg["fixed-cidr"] else ""
        n = nets.default_bridge(
            old.id if old else nets.new_id(), old.created if old else now,
            bridge=self.cfg["bridge"], subnet=subnet, gateway=gateway,
            ip_range=ip_range or subnet, icc=self.cfg["icc"], mtu=self.cfg["mtu"],
            masquerade=self.cfg["ip-masq"],
            subnet6=self.cfg["fixed-cidr-v6"] if self.cfg["ipv6"] else "")
        n.materialized = bool(old and old.materialized)
        if old is None or old.to_json() != n.to_json():
            if old is not None and old.bridge != n.bridge and old.materialized:
                log.info("default bridge renamed %s -> %s", old.bridge, n.bridge)
            self._save_network(n)

    def _save_network(self, n: nets.Network) -> None:
        write_json(self.state.network_file(n.id), n.to_json())
        self.networks[n.id] = n

    def _pool(self, n: nets.Network) -> Pool:
        pool = self.pools.get(n.id)
        if pool is None or str(pool.subnet) != n.subnet:
            pool = Pool(self.state.ipam_file(n.id), n.subnet, n.gateway, n.ip_range or None,
                        label=f"{n.name} ({n.id[:12]})", reserved=n.aux.values())
            self.pools[n.id] = pool
        return pool

    def _pool6(self, n: nets.Network) -> Pool | None:
        """The network's IPv6 pool (None without IPv6)."""
        if not n.ipv6:
            return None
        pool = self.pools6.get(n.id)
        if pool is None or str(pool.subnet) != n.subnet6:
            pool = Pool(self.state.ipam_file(n.id + "-v6"), n.subnet6, n.gateway6,
                        n.ip_range6 or None, label=f"{n.name} ({n.id[:12]})",
                        reserved=n.aux6.values())
            self.pools6[n.id] = pool
        return pool

    @property
    def default_network(self) -> nets.Network:
        return next(n for n in self.networks.values() if n.default)

    def _reconcile(self) -> None:
        self._load()
        if self._reconciled:
            return
        self._reconciled = True
        live: set[str] = set()
        for cid, rec in list(self.records.items()):
            sb = rec.get("sandbox")
            if not sb:
                continue
            if self._sandbox_alive(rec):
                live.add(cid)
                continue
            log.info("container %s: releasing the network of a container that is gone",
                     cid[:12])
            try:
                self._release(rec)
            except PalletError as e:
                log.warning("container %s: release network: %s", cid[:12], e)
        for pool in list(self.pools.values()) + list(self.pools6.values()):
            stale = pool.keep_only(live)
            if stale:
                log.info("freed stale addresses %s", ", ".join(stale))
        for cid in live:
            self._reserve_dns(self.records[cid])
        materialized = [n for n in self.networks.values() if n.is_bridge and n.materialized]
        for n in materialized:
            try:
                self._bring_up(n)
            except PalletError as e:
                log.warning("network %s: %s", n.name, e)
        if materialized and self.cfg["iptables"]:
            self._sync_firewall()
        self._remove_orphan_namespaces()
        self._rebuild_dns()

    def _remove_orphan_namespaces(self) -> None:
        try:
            names = os.listdir(self.netns_dir)
        except FileNotFoundError:
            return
        used = {os.path.basename((r.get("sandbox") or {}).get("path") or "")
                for r in self.records.values()}
        for name in names:
            if name not in used:
                log.info("removing orphan network namespace %s", name)
                try:
                    netns.remove(os.path.join(self.netns_dir, name))
                except OSError as e:
                    log.warning("remove orphan network namespace %s: %s", name, e)

    # --- bridges and rules ------------------------------------------------------------
    def _taken_subnets(self, exclude: str | None = None) -> list:
        taken = [ipaddress.ip_network(n.subnet) for n in self.networks.values()
                 if n.subnet and n.id != exclude]
        try:
            taken += self.links.host_networks()
        except Exception as e:  # noqa: BLE001 — best effort: our own networks still count
            log.warning("cannot list host routes: %s", e)
        return taken

    def _choose_default_subnet(self, n: nets.Network) -> None:
        """The default bridge without ``bip``: the bridge's existing address, else
        the first free default pool (as dockerd picks docker0's)."""
        existing = self.links.bridge_addresses(n.bridge)
        if existing:
            ip, plen = existing[0]
            subnet = ipaddress.ip_network(f"{ip}/{plen}", strict=False)
            gateway = ip
        else:
            subnet = nets.pick_subnet(self._taken_subnets(exclude=n.id))
            if subnet is None:
                raise PalletError("could not find a free subnet for the default bridge: set "
                                  "bip in [plugins.net_bridge]")
            gateway = str(subnet.network_address + 1)
        n.subnet, n.gateway = str(subnet), gateway
        if not n.ip_range:
            n.ip_range = str(subnet)
        self._save_network(n)

    def _bring_up(self, n: nets.Network) -> None:
        if not n.subnet:
            self._choose_default_subnet(n)
        self.links.ensure_bridge(n.bridge, n.gateway, n.prefixlen, n.mtu)
        if n.ipv6:
            self.links.ensure_address(n.bridge, n.gateway6, n.prefixlen6)
        self._bridges_up.add(n.id)

    def _materialize(self, n: nets.Network) -> None:
        """Make sure the network's bridge, pool and rules exist (first use)."""
        if not n.is_bridge:
            return
        if n.id not in self._bridges_up:
            self._bring_up(n)
        self._pool(n)
        if not n.materialized:
            n.materialized = True
            self._save_network(n)
            if self.cfg["iptables"]:
                self._sync_firewall()

    def _sync_firewall(self) -> None:
        live = [n for n in self.networks.values() if n.is_bridge and n.materialized]
        firewall.enable_forwarding(ipv6=any(n.ipv6 for n in live))
        firewall.apply(self.prefix, live)

    # --- lookups ----------------------------------------------------------------------
    def _network(self, ref: str) -> nets.Network:
        """A network by full id, name, or unique id prefix (docker's order)."""
        if not ref:
            raise NotFound("network  not found")
        n = self.networks.get(ref)
        if n is not None:
            return n
        for n in self.networks.values():
            if n.name == ref:
                return n
        found = [n for n in self.networks.values() if n.id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidArgument(f"network {ref} is ambiguous ({len(found)} matches found "
                                  "based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def _endpoints_on(self, nid: str) -> list[tuple[dict, dict]]:
        out = []
        for rec in self.records.values():
            sb = rec.get("sandbox") or {}
            for ep in sb.get("endpoints") or ():
                if ep["network"] == nid:
                    out.append((rec, ep))
        return out

    # --- the /networks endpoints ------------------------------------------------------
    def create_network(self, body) -> dict:
        """``POST /networks/create``: ``{"Id", "Warning"}``."""
        return self.worker.call(self._create_network, body)

    def _create_network(self, body) -> dict:
        self._load()
        n = nets.parse_create(body, nid=nets.new_id(), created=rfc3339())
        if any(o.name == n.name for o in self.networks.values()):
            raise Conflict(f"network with name {n.name} already exists")
        if any(o.bridge == n.bridge for o in self.networks.values() if o.is_bridge):
            raise Conflict(f"bridge name {n.bridge} is already used by another network")
        if n.subnet:
            new = ipaddress.ip_network(n.subnet)
            for o in self.networks.values():
                if o.subnet and ipaddress.ip_network(o.subnet).overlaps(new):
                    raise Conflict("Pool overlaps with other one on this address space")
        else:
            subnet = nets.pick_subnet(self._taken_subnets())
            if subnet is None:
                raise PalletError("could not find an available, non-overlapping IPv4 address "
                                  "pool among the defaults to assign to the network")
            n.subnet, n.gateway, n.ip_range = str(subnet), str(subnet.network_address + 1), \
                str(subnet)
        if n.subnet6:
            new6 = ipaddress.ip_network(n.subnet6)
            for o in self.networks.values():
                if o.subnet6 and ipaddress.ip_network(o.subnet6).overlaps(new6):
                    raise Conflict("Pool overlaps with other one on this address space")
        self._save_network(n)
        try:
            self._materialize(n)
        except BaseException:
            self._destroy_network(n)
            raise
        return {"Id": n.id, "Warning": ""}

    def list_networks(self, filters: dict | None = None) -> list[dict]:
        return self.worker.call(self._list_networks, filters or {})

    def _list_networks(self, filters: dict) -> list[dict]:
        self._load()
        for key in filters:
            if key not in nets.FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        out = []
        for n in sorted(self.networks.values(), key=lambda n: n.created):
            used = bool(self._endpoints_on(n.id))
            if nets.matches_filters(n, filters, used):
                out.append(n.inspect({}))
        return out

    def inspect_network(self, ref: str) -> dict:
        return self.worker.call(self._inspect_network, ref)

    def _inspect_network(self, ref: str) -> dict:
        self._load()
        n = self._network(ref)
        containers = {}
        for rec, ep in self._endpoints_on(n.id):
            containers[rec["id"]] = {
                "Name": rec.get("name", ""), "EndpointID": ep["id"], "MacAddress": ep["mac"],
                "IPv4Address": f"{ep['ip']}/{ep['prefixlen']}",
                "IPv6Address": f"{ep['ip6']}/{ep['prefixlen6']}" if ep.get("ip6") else ""}
        for rec in self.records.values():
            sb = rec.get("sandbox") or {}
            if n.name in ("host", "none") and sb and rec.get("mode") == n.name:
                containers[rec["id"]] = {"Name": rec.get("name", ""), "EndpointID": sb["id"],
                                         "MacAddress": "", "IPv4Address": "",
                                         "IPv6Address": ""}
        return n.inspect(containers)

    def remove_network(self, ref: str) -> None:
        self.worker.call(self._remove_network, ref)

    def _remove_network(self, ref: str) -> None:
        self._load()
        n = self._network(ref)
        if n.name in nets.PREDEFINED:
            raise Conflict(f"{n.name} is a pre-defined network and cannot be removed")
        if self._endpoints_on(n.id):
            raise Conflict(f"error while removing network: network {n.name} id {n.id} has "
                           "active endpoints")
        self._destroy_network(n)

    def _destroy_network(self, n: nets.Network) -> None:
        was = n.materialized
        if n.is_bridge:
            self.links.delete(n.bridge)
        self._bridges_up.discard(n.id)
        pool = self.pools.pop(n.id, None)
        if pool is not None:
            pool.destroy()
        else:
            remove(self.state.ipam_file(n.id))
        pool6 = self.pools6.pop(n.id, None)
        if pool6 is not None:
            pool6.destroy()
        else:
            remove(self.state.ipam_file(n.id + "-v6"))
        remove(self.state.network_file(n.id))
        self.networks.pop(n.id, None)
        if was and self.cfg["iptables"]:
            self._sync_firewall()

    def prune_networks(self, filters: dict | None = None) -> list[str]:
        """``POST /networks/prune``: the names of the networks removed."""
        return self.worker.call(self._prune_networks, filters or {})

    def _prune_networks(self, filters: dict) -> list[str]:
        self._load()
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
        until = None
        if filters.get("until"):
            until = _parse_until(filters["until"][0])
        removed = []
        for n in list(self.networks.values()):
            if n.name in nets.PREDEFINED or self._endpoints_on(n.id):
                continue
            if until is not None and n.created and _created_ts(n.created) >= until:
                continue
            if not _label_filters(n.labels, filters.get("label") or [],
                                  filters.get("label!") or []):
                continue
            self._destroy_network(n)
            removed.append(n.name)
        return removed

    # --- DNS ----------------------------------------------------------------------------
    def _resolve(self, key: str, name: str, qtype: int):
        table = self._dns_tables.get(key)
        if table is None:
            return None
        names, ptrs = table
        if qtype == TYPE_PTR:
            return ptrs.get(name)
        return names.get(name.rstrip(".").lower())

    def _rebuild_dns(self) -> None:
        """Recompute the names each DNS-served sandbox can resolve (swapped in one go,
        the DNS server reads them from another thread)."""
        by_net: dict[str, dict[str, list[str]]] = {}
        ptr_net: dict[str, dict[str, list[str]]] = {}
        for rec in self.records.values():
            sb = rec.get("sandbox") or {}
            for ep in sb.get("endpoints") or ():
                n = self.networks.get(ep["network"])
                if n is None or not n.user_defined:
                    continue
                table = by_net.setdefault(n.id, {})
                names = [rec.get("name", "")] + list(self._aliases(rec, n.id)) + [rec["id"][:12]]
                addrs = [ep["ip"]] + ([ep["ip6"]] if ep.get("ip6") else [])
                for name in names:
                    if not name:
                        continue
                    for key in (name.lower(), f"{name}.{n.name}".lower()):
                        ips = table.setdefault(key, [])
                        ips.extend(ip for ip in addrs if ip not in ips)
                for ip in addrs:
                    ptr_net.setdefault(n.id, {})[ip] = [f"{rec.get('name', '')}.{n.name}"]
        tables = {}
        for rec in self.records.values():
            sb = rec.get("sandbox") or {}
            if not sb.get("dns"):
                continue
            names: dict[str, list[str]] = {}
            ptrs: dict[str, list[str]] = {}
            for ep in sb.get("endpoints") or ():
                for key, ips in by_net.get(ep["network"], {}).items():
                    merged = names.setdefault(key, [])
                    merged.extend(ip for ip in ips if ip not in merged)
                ptrs.update(ptr_net.get(ep["network"], {}))
                n = self.networks.get(ep["network"])
                links = list((rec.get("links") or ()) if n is not None and n.user_defined
                             else ())
                links += self._endpoint_links(rec, ep["network"])
                for link in links:
                    # --link on a user-defined network: the alias, for this container only
                    ip = self._link_ip(link, n.id)
                    if ip:
                        merged = names.setdefault(link["alias"].lower(), [])
                        if ip not in merged:
                            merged.append(ip)
            tables[sb["id"]] = (names, ptrs)
        self._dns_tables = tables


def _created_ts(text: str) -> float:
    import calendar
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0


def _parse_until(value: str) -> float:
    import re
    m = re.fullmatch(r"(\d+)(s|m|h)", value.strip())
    if m:
        return time.time() - int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    try:
        return float(value)
    except ValueError:
        ts = _created_ts(value)
        if ts:
            return ts
    raise InvalidArgument(f"invalid filter 'until={value}'")


def _label_filters(labels: dict, want: list[str], reject: list[str]) -> bool:
    def has(v):
        k, eq, val = v.partition("=")
        return k in labels and (not eq or labels[k] == val)
    return all(has(v) for v in want) and not any(has(v) for v in reject)


__all__ = ["BridgeDriver", "check_config", "read_json"]
