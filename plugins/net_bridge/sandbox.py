"""The container side of the bridge driver: sandboxes and endpoints.

A container's record (``endpoints/<cid>.json``) holds what it asked for at
create (network mode, networks with aliases and ``--ip``, DNS and hosts
options, the paths of its /etc files) and, while it runs, its sandbox:

* ``netns`` mode (bridge, user-defined networks, none): a named network
  namespace with loopback up and one veth endpoint per network (``eth0``,
  ``eth1``...), the default route via the first network that is not
  internal, the embedded DNS server when one of the networks is
  user-defined;
* ``host``: no namespace, the host's hosts and resolv.conf copied;
* ``container``: the namespace and /etc files of another running container.

As libnetwork does, the sandbox is made before the container is created, and
the runtime joins it through the ``path`` of the spec's network namespace.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket

from pallet.core.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.plugins.net_bridge import etcfiles
from pallet.linux import netlink as links, netns
from pallet.oci.spec import join_sandbox
from pallet.plugins.net_bridge.networks import new_id
from pallet.core.files import remove, write_json

log = logging.getLogger("pallet.net_bridge.sandbox")

DNS_ADDRESS = etcfiles.EMBEDDED_DNS
def _dns_socket() -> socket.socket:
    """Inside a sandbox: the embedded server's UDP socket on 127.0.0.11:53."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((DNS_ADDRESS, 53))
    except OSError as e:
        s.close()
        raise PalletError(f"listen udp {DNS_ADDRESS}:53 in the sandbox: "
                          f"{(e.strerror or str(e)).lower()}") from None
    return s


def _mode_of(mode: str) -> tuple[str, str]:
    """docker's NetworkMode -> (kind, argument)."""
    mode = mode or "default"
    if mode in ("default", "bridge"):
        return "bridge", "bridge"
    if mode in ("none", "host"):
        return mode, ""
    if mode.startswith("container:"):
        ref = mode[len("container:"):]
        if not ref:
            raise InvalidArgument("invalid network mode: container: needs a container name "
                                  "or id")
        return "container", ref
    return "network", mode


class SandboxMixin:
    # --- registration ------------------------------------------------------------------
    def register(self, container: dict) -> None:
        """Check a container's network settings at create and remember them.

        ``container``: ``id``, ``name``, ``hostname``, ``domainname``,
        ``host_config`` (NetworkMode, Dns, DnsSearch, DnsOptions, ExtraHosts,
        PortBindings, PublishAllPorts), ``networking_config`` (the create
        request's NetworkingConfig), and the paths ``hosts_path``,
        ``hostname_path``, ``resolv_conf_path``.  Raises NotFound for an
        unknown network, InvalidArgument/Conflict for settings docker refuses.
        """
        self.worker.call(self._register, container, True)

    def _register(self, info: dict, fresh: bool = False, save: bool = True) -> dict:
        self._load()
        cid = info["id"]
        host = info.get("host_config") or {}
        kind, arg = _mode_of(host.get("NetworkMode") or "default")
        old = self.records.get(cid)
        rec = {"id": cid, "name": info.get("name", "").lstrip("/"),
               "hostname": info.get("hostname") or cid[:12],
               "domainname": info.get("domainname") or "",
               "network_mode": host.get("NetworkMode") or "default",
               "mode": "netns" if kind in ("bridge", "network", "none") else kind,
               "kind": kind, "container_ref": arg if kind == "container" else "",
               "dns": list(host.get("Dns") or []), "dns_search": list(host.get("DnsSearch") or []),
               "dns_options": list(host.get("DnsOptions") or []),
               "extra_hosts": list(host.get("ExtraHosts") or []),
               "links": [dict(link) for link in info.get("links") or ()],
               "mac_address": info.get("mac_address") or "",
               "paths": {"hosts": info.get("hosts_path", ""),
                         "hostname": info.get("hostname_path", ""),
                         "resolv": info.get("resolv_conf_path", "")},
               "sandbox": old.get("sandbox") if old else None}
        if kind == "container":
            for what, key in (("dns", "Dns"), ("dns", "DnsSearch"), ("dns", "DnsOptions"),
                              ("extra host", "ExtraHosts")):
                if host.get(key):
                    raise InvalidArgument(f"conflicting options: {what} and the network mode")
            if host.get("PortBindings") or host.get("PublishAllPorts"):
                raise InvalidArgument("conflicting options: port publishing and the container "
                                      "type network mode")
        etcfiles.parse_extra_hosts(rec["extra_hosts"], "0.0.0.0")  # format check only
        if rec["mac_address"]:
            check_mac(rec["mac_address"])
        for ip in rec["dns"]:
            etcfiles.resolv("", dns=[ip])
        if old is not None and not fresh:
            rec["networks"] = old.get("networks") or []
        else:
            try:
                rec["networks"] = self._requested_networks(kind, arg, info)
            except NotFound as e:
                # not a 404: the docker CLI takes a 404 from create for a missing
                # image and would go and pull it
                raise InvalidArgument(e.message) from None
        self.records[cid] = rec
        if save:
            self._save_record(rec)
        return rec

    def _requested_networks(self, kind: str, arg: str, info: dict) -> list[dict]:
        cfg = ((info.get("networking_config") or {}).get("EndpointsConfig") or {})
        if not isinstance(cfg, dict):
            raise InvalidArgument("invalid NetworkingConfig.EndpointsConfig")
        out = []
        if kind in ("bridge", "network"):
            n = self._network(arg)
            if n.name in ("host", "none"):
                return []
            out.append(self._endpoint_request(n, cfg.get(arg) or cfg.get(n.name) or
                                              cfg.get(n.id) or (cfg.get("default") if n.default
                                                                else None) or {}))
        for ref, ep in cfg.items():
            if ref in (arg, "default") or kind in ("host", "none", "container"):
                continue
            n = self._network(ref)
            if any(o["network"] == n.id for o in out):
                continue
            if n.name in ("host", "none"):
                raise InvalidArgument(f"container cannot be connected to {n.name} and other "
                                      "networks")
            out.append(self._endpoint_request(n, ep or {}))
        return out

    def _endpoint_request(self, n, ep: dict) -> dict:
        if not isinstance(ep, dict):
            raise InvalidArgument("invalid endpoint configuration")
        ipam = ep.get("IPAMConfig") or {}
        want = ipam.get("IPv4Address") or ""
        want6 = ipam.get("IPv6Address") or ""
        aliases = [a for a in (ep.get("Aliases") or []) if a]
        links = [str(x) for x in (ep.get("Links") or []) if x]
        mac = ep.get("MacAddress") or ""
        if mac:
            check_mac(mac)
        if n.default:
            if want or want6:
                raise InvalidArgument("user specified IP address is supported on user defined "
                                      "networks only")
            if aliases:
                raise InvalidArgument("network-scoped alias is supported only for containers "
                                      "in user defined networks")
        elif (want and not n.user_subnet) or (want6 and not n.subnet6):
            raise InvalidArgument("user specified IP address is supported only when connecting "
                                  "to networks with user configured subnets")
        from pallet.plugins.net_bridge.ipam import parse_address
        for text, subnet, family in ((want, n.subnet, 4), (want6, n.subnet6, 6)):
            if text and parse_address(text, f"IPv{family} address", family) not in \
                    ipaddress.ip_network(subnet):
                raise InvalidArgument(f"invalid address {text}: it does not belong to any of "
                                      f"this network's subnets")
        for link in links:
            name, _, alias = link.partition(":")
            if not name or (":" in alias):
                raise InvalidArgument(f"invalid link {link!r}: NAME[:ALIAS] expected")
        linklocal = [str(x) for x in (ipam.get("LinkLocalIPs") or [])]
        for text in linklocal:
            if not _is_ip(text):
                raise InvalidArgument(f"invalid link-local IP address: {text}")
        opts = ep.get("DriverOpts") or None
        if opts is not None and not isinstance(opts, dict):
            raise InvalidArgument("invalid DriverOpts: a map of strings is expected")
        return {"network": n.id, "aliases": aliases, "ipv4": want, "ipv6": want6, "mac": mac,
                "links": links, "linklocal": linklocal,
                "driver_opts": {str(k): str(v) for k, v in opts.items()} if opts else None}

    def _endpoint_links(self, rec: dict, nid: str) -> list[dict]:
        """The ``Links`` of the container's endpoint on network ``nid``
        (``NAME[:ALIAS]``), as link dicts of the containers they name now."""
        out = []
        for req in rec.get("networks") or ():
            if req["network"] != nid:
                continue
            for link in req.get("links") or ():
                name, _, alias = link.partition(":")
                target = self._find_record(name)
                if target is not None:
                    out.append({"id": target["id"], "alias": alias or name})
        return out

    def unregister(self, cid: str) -> None:
        """The container is removed: release anything left and forget it."""
        self.worker.call(self._unregister, cid)

    def _unregister(self, cid: str) -> None:
        self._load()
        rec = self.records.get(cid)
        if rec is None:
            return
        if rec.get("sandbox"):
            self._release(rec)
        self.records.pop(cid, None)
        remove(self.state.endpoint_file(cid))
        for pool in self.pools.values():
            pool.release_owner(cid)
        self._rebuild_dns()

    def _save_record(self, rec: dict) -> None:
        write_json(self.state.endpoint_file(rec["id"]), rec)

    def _aliases(self, rec: dict, nid: str) -> list[str]:
        for n in rec.get("networks") or ():
            if n["network"] == nid:
                return list(n.get("aliases") or ())
        return []

    # --- setup ---------------------------------------------------------------------------
    def setup(self, container: dict) -> dict:
        """Make the container's sandbox before its spec is built (at each start).

        Takes the same dict as :meth:`register` (registering it when palletd
        did not) and returns docker's ``NetworkSettings`` without ``Ports``.
        On failure nothing is left behind.
        """
        return self.worker.call(self._setup, container)

    def _setup(self, info: dict) -> dict:
        self._load()
        if not self._reconciled:
            self._reconcile()
        rec = self._register(info, save=False)
        if rec.get("sandbox"):
            self._release(rec)
        if rec["mode"] == "host":
            self._write_host_files(rec)
            rec["sandbox"] = {"id": new_id(), "mode": "host"}
        elif rec["mode"] == "container":
            target = self._container_target(rec)
            rec["sandbox"] = {"id": target["sandbox"]["id"], "mode": "container",
                              "target": target["id"]}
        else:
            rec["sandbox"] = self._make_sandbox(rec)
        self._save_record(rec)
        self._rebuild_dns()
        return self._settings(rec)

    def _container_target(self, rec: dict) -> dict:
        ref = rec["container_ref"]
        target = self._find_record(ref)
        if target is None or target["id"] == rec["id"]:
            if target is not None:
                raise InvalidArgument("cannot join own network")
            raise NotFound(f"No such container: {ref}")
        seen = {rec["id"]}
        while target.get("mode") == "container" and target.get("sandbox"):
            if target["id"] in seen:
                raise InvalidArgument("network mode container: loops")
            seen.add(target["id"])
            target = self.records.get(target["sandbox"]["target"]) or target
        if not target.get("sandbox") or not self._sandbox_alive(target):
            raise Conflict(f"cannot join network of a non running container: {ref}")
        if target.get("mode") == "host":
            raise Conflict(f"cannot join network of container {ref}: it uses the host's")
        return target

    def _find_record(self, ref: str) -> dict | None:
        if ref in self.records:
            return self.records[ref]
        for rec in self.records.values():
            if rec.get("name") == ref.lstrip("/"):
                return rec
        found = [r for cid, r in self.records.items() if cid.startswith(ref)]
        return found[0] if len(found) == 1 else None

    def _make_sandbox(self, rec: dict) -> dict:
        cid = rec["id"]
        sid = new_id()
        path = os.path.join(self.netns_dir, sid[:12])
        requested = [(self._network(r["network"]), r) for r in rec.get("networks") or ()]
        endpoints: list[dict] = []
        created = False
        sock = None
        try:
            for i, (n, req) in enumerate(requested):
                self._materialize(n)
                endpoints.append(self._new_endpoint(rec, n, req, f"eth{i}",
                                                    first=not endpoints))
            gateway = next((n.gateway for n, _ in requested if not n.internal), None)
            gateway6 = next((n.gateway6 for n, _ in requested if not n.internal and n.ipv6),
                            None)
            embedded = any(n.user_defined for n, _ in requested)
            if not self._netns_dir_ready:
                netns.prepare_dir(self.netns_dir)
                self._netns_dir_ready = True

            nl = netns.create(path, then=links.netlink_socket)
            created = True
            self._netlink[sid] = nl
            for ep, (n, _) in zip(endpoints, requested):
                self.links.add_veth(ep, n.bridge, path)
            with links.SandboxLinks(nl) as sl:
                sl.configure(endpoints, gateway, gateway6=gateway6)
            if embedded:
                # bound once loopback is up: a socket bound to 127.0.0.11 before
                # that (IP_FREEBIND) gets queries but its answers never arrive
                sock = netns.run_in(path, _dns_socket)
            sandbox = {"id": sid, "mode": "netns", "path": path, "endpoints": endpoints,
                       "gateway": gateway, "dns": embedded, "upstream": []}
            sandbox["upstream"] = self._write_netns_files(rec, sandbox)
            if embedded:
                self.dns.serve(sid, sock, sandbox["upstream"])
                sock = None
            return sandbox
        except BaseException:
            if sock is not None:
                sock.close()
            for ep in endpoints:
                try:
                    self.links.delete(ep["host_ifname"])
                except PalletError:
                    pass
                self._free_addresses(ep, cid)
            nl = self._netlink.pop(sid, None)
            if nl is not None:
                nl.close()
            if created:
                netns.remove(path)
            raise

    def _new_endpoint(self, rec: dict, n, req: dict, ifname: str, *, first: bool) -> dict:
        """An endpoint's addresses (IPv4, and IPv6 on a network with it) and MAC:
        the one asked for, else, on the first network, the container's
        ``MacAddress``, else one derived from the IPv4 address as dockerd 20.10
        derives it."""
        cid = rec["id"]
        ip = self._pool(n).allocate(cid, req.get("ipv4") or None)
        ip6 = ""
        pool6 = self._pool6(n)
        try:
            if pool6 is not None:
                ip6 = pool6.allocate(cid, req.get("ipv6") or None)
        except BaseException:
            self._pool(n).release(ip, cid)
            raise
        mac = req.get("mac") or (rec.get("mac_address") if first else "") or links.mac_for(ip)
        return {"network": n.id, "id": new_id(), "ifname": ifname,
                "host_ifname": links.veth_name(), "ip": ip, "prefixlen": n.prefixlen,
                "mac": mac.lower(), "mtu": n.mtu, "gateway": n.gateway, "ip6": ip6,
                "linklocal": list(req.get("linklocal") or ()),
                "prefixlen6": n.prefixlen6 if ip6 else 0,
                "gateway6": n.gateway6 if ip6 else ""}

    def _free_addresses(self, ep: dict, cid: str) -> None:
        pool = self.pools.get(ep["network"])
        if pool is not None:
            pool.release(ep["ip"], cid)
        pool6 = self.pools6.get(ep["network"])
        if pool6 is not None and ep.get("ip6"):
            pool6.release(ep["ip6"], cid)

    # --- /etc files -------------------------------------------------------------------------
    def _host_gateway(self) -> str | None:
        n = self.default_network
        return n.gateway or None

    def _write_host_files(self, rec: dict) -> None:
        paths = rec["paths"]
        extra = etcfiles.parse_extra_hosts(rec["extra_hosts"], self._host_gateway())
        if paths.get("hosts"):
            etcfiles.write(paths["hosts"], etcfiles.host_mode_hosts(extra))
        if paths.get("hostname"):
            etcfiles.write(paths["hostname"], etcfiles.host_hostname() + "\n")
        if paths.get("resolv"):
            etcfiles.write(paths["resolv"], etcfiles.read(self.cfg["resolv-conf"]))

    def _write_netns_files(self, rec: dict, sandbox: dict, *, hostname: bool = True,
                           resolv: bool = True) -> list[str]:
        """hosts (and unless told otherwise hostname and resolv.conf) of a
        namespaced container; returns the embedded DNS server's upstream servers."""
        paths = rec["paths"]
        extra = etcfiles.parse_extra_hosts(rec["extra_hosts"], self._host_gateway())
        extra += self._legacy_link_hosts(rec, sandbox)
        ips = [ep["ip"] for ep in sandbox.get("endpoints") or ()]
        ips += [ep["ip6"] for ep in sandbox.get("endpoints") or () if ep.get("ip6")]
        if paths.get("hosts"):
            etcfiles.write(paths["hosts"], etcfiles.hosts(rec["hostname"], rec["domainname"],
                                                          ips, extra))
        if hostname and paths.get("hostname"):
            etcfiles.write(paths["hostname"], rec["hostname"] + "\n")
        if not resolv:
            return sandbox.get("upstream") or []
        text, upstream = etcfiles.resolv(etcfiles.read(self.cfg["resolv-conf"]),
                                         dns=rec["dns"], search=rec["dns_search"],
                                         options=rec["dns_options"],
                                         embedded=bool(sandbox.get("dns")))
        if paths.get("resolv"):
            etcfiles.write(paths["resolv"], text)
        return upstream

    def _legacy_link_hosts(self, rec: dict, sandbox: dict) -> list[tuple[str, str]]:
        """``--link`` on the default bridge: ``IP  ALIAS HOSTNAME NAME`` lines for
        the linked containers' addresses there, as dockerd writes them (the name
        only when it differs from the alias)."""
        default = self.default_network
        if not any(ep["network"] == default.id for ep in sandbox.get("endpoints") or ()):
            return []
        out = []
        for link in rec.get("links") or ():
            ip = self._link_ip(link, default.id)
            if ip:
                names = [link["alias"], link.get("hostname") or link["id"][:12]]
                if link.get("name") and link["name"] != link["alias"]:
                    names.append(link["name"])
                out.append((ip, " ".join(names)))
        return out

    def _link_ip(self, link: dict, network_id: str) -> str | None:
        target = self.records.get(link.get("id", ""))
        sb = (target or {}).get("sandbox") or {}
        return next((ep["ip"] for ep in sb.get("endpoints") or ()
                     if ep["network"] == network_id), None)

    # --- release ------------------------------------------------------------------------------
    def release(self, cid: str) -> None:
        """The container's process exited: remove its endpoints, addresses, sandbox
        and DNS server (its record stays for the next start)."""
        self.worker.call(self._release_id, cid)

    def _release_id(self, cid: str) -> None:
        self._load()
        rec = self.records.get(cid)
        if rec is not None and rec.get("sandbox"):
            self._release(rec)
            self._rebuild_dns()

    def _release(self, rec: dict) -> None:
        sb = rec.get("sandbox") or {}
        errors = []
        if sb.get("mode") == "netns":
            self.dns.stop(sb["id"])
            nl = self._netlink.pop(sb["id"], None)
            if nl is not None:
                nl.close()
            for ep in sb.get("endpoints") or ():
                self._reaper().delete(ep["host_ifname"])
                self._free_addresses(ep, rec["id"])
            try:
                netns.remove(sb["path"])
            except OSError as e:
                errors.append(str(e))
        rec["sandbox"] = None
        self._save_record(rec)
        if errors:
            log.warning("container %s: release network: %s", rec["id"][:12], "; ".join(errors))

    def _nl_for(self, sb: dict):
        """The sandbox's netlink socket (opened again after a daemon restart)."""
        nl = self._netlink.get(sb["id"])
        if nl is None:
            nl = self._netlink[sb["id"]] = netns.run_in(sb["path"], links.netlink_socket)
        return nl

    def _reaper(self):
        if self._veth_reaper is None:
            self._veth_reaper = links.Reaper()
        return self._veth_reaper

    def _sandbox_alive(self, rec: dict) -> bool:
        sb = rec.get("sandbox") or {}
        if sb.get("mode") == "netns":
            return netns.is_namespace(sb["path"]) and bool(netns.pids_in(sb["path"]))
        if sb.get("mode") == "container":
            target = self.records.get(sb.get("target", ""))
            return bool(target and target.get("sandbox") and self._sandbox_alive(target))
        return False  # host mode holds nothing that could leak

    def _reserve_dns(self, rec: dict) -> None:
        """After a daemon restart: serve a running sandbox's DNS again."""
        sb = rec.get("sandbox") or {}
        if sb.get("mode") != "netns" or not sb.get("dns") or sb["id"] in self.dns.serving():
            return
        try:
            sock = netns.run_in(sb["path"], _dns_socket)
        except (OSError, PalletError) as e:
            log.warning("container %s: restart DNS server: %s", rec["id"][:12], e)
            return
        self.dns.serve(sb["id"], sock, sb.get("upstream") or [])

    # --- the OCI spec -----------------------------------------------------------------------
    def build_spec(self, spec: dict, container: dict) -> None:
        """Point the spec at the container's sandbox and /etc files (called by the
        ``pallet_build_spec`` hook; a container without a sandbox is left alone)."""
        self.worker.call(self._build_spec, spec, container)

    def _build_spec(self, spec: dict, container: dict) -> None:
        self._load()
        rec = self.records.get(container.get("id", ""))
        if rec is None or not rec.get("sandbox"):
            return
        sb = rec["sandbox"]
        if sb["mode"] == "host":
            join_sandbox(spec, None, rec["paths"])
        elif sb["mode"] == "container":
            target = self.records[sb["target"]]
            join_sandbox(spec, target["sandbox"]["path"], target["paths"], target["hostname"])
        else:
            join_sandbox(spec, sb["path"], rec["paths"])

    # --- what docker reports ----------------------------------------------------------------
    def settings(self, cid: str) -> dict:
        """docker's ``NetworkSettings`` for the container (without ``Ports``).

        A read: once the state is loaded it is answered on the caller's thread
        (``docker ps`` asks once per container, and a hop to the worker costs
        more than the answer).  Should the worker change a table meanwhile the
        read is retried there."""
        if self._loaded:
            try:
                return self._settings_id(cid)
            except RuntimeError:  # a dict changed size during iteration
                pass
        return self.worker.call(self._settings_id, cid)

    def _settings_id(self, cid: str) -> dict:
        self._load()
        rec = self.records.get(cid)
        return self._settings(rec) if rec is not None else _empty_settings()

    def _settings(self, rec: dict) -> dict:
        out = _empty_settings()
        sb = rec.get("sandbox") or {}
        live = {ep["network"]: ep for ep in sb.get("endpoints") or ()}
        if sb:
            out["SandboxID"] = sb["id"]
            out["SandboxKey"] = sb.get("path", "") if sb.get("mode") == "netns" else ""
        if rec.get("mode") == "host":
            out["Networks"]["host"] = _endpoint_view(self._named("host"), None, None,
                                                     sb.get("id", "") if sb else "")
            return out
        if rec.get("mode") == "container":
            return out
        if rec.get("kind") == "none" or (rec.get("kind") == "network" and
                                          not rec.get("networks")):
            out["Networks"]["none"] = _endpoint_view(self._named("none"), None, None,
                                                     sb.get("id", "") if sb else "")
            return out
        for req in rec.get("networks") or ():
            n = self.networks.get(req["network"])
            if n is None:
                continue
            ep = live.get(n.id)
            view = _endpoint_view(n, req, ep, "", rec["id"])
            out["Networks"][n.name] = view
            if n.default and ep is not None:
                out.update({"EndpointID": ep["id"], "Gateway": n.gateway,
                            "IPAddress": ep["ip"], "IPPrefixLen": ep["prefixlen"],
                            "MacAddress": ep["mac"], "GlobalIPv6Address": ep.get("ip6", ""),
                            "GlobalIPv6PrefixLen": ep.get("prefixlen6", 0),
                            "IPv6Gateway": ep.get("gateway6", "")})
        return out

    def _named(self, name: str):
        return next(n for n in self.networks.values() if n.name == name)

    def port_target(self, cid: str) -> dict | None:
        """Where the container's published ports go: ``{"ip", "bridge",
        "host_ifname", "host_ip", "endpoint_id"}`` of its first endpoint on a bridge network
        that is not internal, or None."""
        return self.worker.call(self._port_target, cid)

    def _port_target(self, cid: str) -> dict | None:
        self._load()
        rec = self.records.get(cid)
        sb = (rec or {}).get("sandbox") or {}
        for ep in sb.get("endpoints") or ():
            n = self.networks.get(ep["network"])
            if n is not None and n.is_bridge and not n.internal:
                return {"ip": ep["ip"], "bridge": n.bridge, "host_ifname": ep["host_ifname"],
                        "host_ip": n.host_ip, "endpoint_id": ep["id"]}
        return None

    def running_sandboxes(self) -> set[str]:
        """Ids of the containers whose sandbox is alive (for net_proxy's reconcile)."""
        return self.worker.call(self._running)

    def _running(self) -> set[str]:
        self._load()
        if not self._reconciled:
            self._reconcile()
        return {cid for cid, rec in self.records.items()
                if rec.get("sandbox") and self._sandbox_alive(rec)}

    # --- connect / disconnect -------------------------------------------------------------------
    def connect(self, ref: str, container: dict, endpoint_config: dict | None = None) -> None:
        """``docker network connect``: add the network to the container (live
        when it runs).  ``container`` as for :meth:`register`."""
        self.worker.call(self._connect, ref, container, endpoint_config or {})

    def _connect(self, ref: str, info: dict, epcfg: dict) -> None:
        self._load()
        n = self._network(ref)
        rec = self.records.get(info["id"]) or self._register(info, True)
        if n.name in ("host", "none") or rec["mode"] == "host" or rec.get("kind") == "none":
            raise Conflict("container cannot be disconnected from host network or connected "
                           "to host network" if "host" in (n.name, rec["mode"]) else
                           "container cannot be connected to a network while it uses the "
                           "none network mode")
        if rec["mode"] == "container":
            raise Conflict("container sharing network namespace with another container or "
                           "host cannot be connected to any other network")
        if any(r["network"] == n.id for r in rec.get("networks") or ()):
            raise Conflict(f"endpoint with name {rec['name']} already exists in network "
                           f"{n.name}")
        req = self._endpoint_request(n, epcfg)
        sb = rec.get("sandbox")
        if sb and sb.get("mode") == "netns":
            self._attach_live(rec, n, req)
        rec.setdefault("networks", []).append(req)
        self._save_record(rec)
        self._rebuild_dns()

    def _attach_live(self, rec: dict, n, req: dict) -> None:
        sb = rec["sandbox"]
        self._materialize(n)
        used = {ep["ifname"] for ep in sb["endpoints"]}
        ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
        ep = self._new_endpoint(rec, n, req, ifname, first=False)
        gateway = n.gateway if not sb.get("gateway") and not n.internal else None
        gateway6 = n.gateway6 if n.ipv6 and not n.internal and not any(
            e.get("gateway6") for e in sb["endpoints"]) else None
        want_dns = n.user_defined and not sb.get("dns")
        sock = None
        try:
            if want_dns:
                sock = netns.run_in(sb["path"], _dns_socket)
            self.links.add_veth(ep, n.bridge, sb["path"])
            with links.SandboxLinks(self._nl_for(sb)) as sl:
                sl.configure([ep], gateway, loopback=False, gateway6=gateway6)
        except BaseException:
            if sock is not None:
                sock.close()
            try:
                self.links.delete(ep["host_ifname"])
            except PalletError:
                pass
            self._free_addresses(ep, rec["id"])
            raise
        sb["endpoints"].append(ep)
        if gateway:
            sb["gateway"] = gateway
        if want_dns:
            sb["dns"] = True
        sb["upstream"] = self._write_netns_files(rec, sb, hostname=False, resolv=want_dns)
        if want_dns:
            self.dns.serve(sb["id"], sock, sb["upstream"])

    def disconnect(self, ref: str, cid: str, force: bool = False) -> None:
        """``docker network disconnect``."""
        self.worker.call(self._disconnect, ref, cid, force)

    def _disconnect(self, ref: str, cid: str, force: bool) -> None:
        self._load()
        rec = self.records.get(cid)
        n = self._network(ref)
        if rec is None or not any(r["network"] == n.id for r in rec.get("networks") or ()):
            if n.name == "host" and rec is not None and rec["mode"] == "host":
                raise Conflict("container cannot be disconnected from host network or "
                               "connected to host network")
            raise Conflict(f"container {cid} is not connected to network {n.name}")
        sb = rec.get("sandbox")
        if sb and sb.get("mode") == "netns":
            ep = next((e for e in sb["endpoints"] if e["network"] == n.id), None)
            if ep is not None:
                try:
                    with links.SandboxLinks(self._nl_for(sb)) as sl:
                        sl.remove(ep["ifname"])
                except (OSError, PalletError) as e:
                    if not force:
                        raise PalletError(f"disconnect {cid[:12]} from {n.name}: {e}") from None
                try:
                    self.links.delete(ep["host_ifname"])
                except PalletError:
                    pass
                self._free_addresses(ep, cid)
                sb["endpoints"].remove(ep)
                if sb.get("gateway") == n.gateway:
                    nxt = next((self.networks[e["network"]].gateway for e in sb["endpoints"]
                                if e["network"] in self.networks
                                and not self.networks[e["network"]].internal), None)
                    sb["gateway"] = nxt
                    try:
                        with links.SandboxLinks(self._nl_for(sb)) as sl:
                            sl.default_route(nxt)
                    except (OSError, PalletError) as e:
                        log.warning("container %s: default route: %s", cid[:12], e)
                self._write_netns_files(rec, sb, hostname=False, resolv=False)
        rec["networks"] = [r for r in rec["networks"] if r["network"] != n.id]
        self._save_record(rec)
        self._rebuild_dns()


def _empty_settings() -> dict:
    return {"Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": {}}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def check_mac(mac: str) -> None:
    import re

    if not isinstance(mac, str) or not re.fullmatch(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}",
                                                     mac):
        raise InvalidArgument(f"invalid MAC address {mac}")


def _endpoint_view(n, req, ep, endpoint_id: str = "", cid: str = "") -> dict:
    aliases = None
    if req is not None and n.user_defined:
        aliases = list(req.get("aliases") or []) + ([cid[:12]] if cid else [])
    ipam = {k: req[v] for k, v in (("IPv4Address", "ipv4"), ("IPv6Address", "ipv6"),
                                   ("LinkLocalIPs", "linklocal"))
            if req and req.get(v)} or None
    ep = ep or {}
    return {"IPAMConfig": ipam, "Links": list(req.get("links") or ()) or None if req else None,
            "Aliases": aliases, "NetworkID": n.id,
            "EndpointID": ep.get("id") or endpoint_id,
            "Gateway": n.gateway if ep else "", "IPAddress": ep.get("ip", ""),
            "IPPrefixLen": ep.get("prefixlen", 0), "IPv6Gateway": ep.get("gateway6", ""),
            "GlobalIPv6Address": ep.get("ip6", ""),
            "GlobalIPv6PrefixLen": ep.get("prefixlen6", 0),
            "MacAddress": ep.get("mac") or (req.get("mac") if req else "") or "",
            "DriverOpts": req.get("driver_opts") if req else None}
