"""The ``port_proxy`` role object: published ports, as dockerd's port mapper.

For each binding of a starting container: a host port is taken (the one
asked for, the first free one of a range, or an ephemeral one), checked
against the ports this daemon already publishes (docker's "port is already
allocated") and bound by the daemon itself, so that a port another program
holds fails at once; then ``pallet-proxy`` is spawned with the bound socket
as fd 3 (``-use-listen-fd``), one process per port, and the DNAT,
hairpin-masquerade and forward-accept rules are synced in pallet's chains.
With ``userland-proxy = false`` no proxy runs: the daemon keeps the socket
to hold the port, DNAT applies to 127.0.0.1 too (``route_localnet`` on the
bridge and a masquerade of host-sourced traffic, as dockerd does).

State: one file per container under ``{network_root}/ports`` (mappings,
proxy pids and start times), so that a restarted daemon removes the rules
and proxies of containers that are gone and restarts the proxies of those
still running.  Every system call runs on the shared plugin worker thread.

Rules, with the chain prefix P (nat ``P`` is the DNAT chain, as docker's
``DOCKER``)::

    nat    PREROUTING  -m addrtype --dst-type LOCAL -j P
    nat    OUTPUT      ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j P
    nat    POSTROUTING -j P-HAIRPIN
    nat    P           [-d HOSTIP] -p PROTO --dport HP -j DNAT --to-destination CIP:CP
    nat    P-HAIRPIN   -s CIP -d CIP -p PROTO --dport CP -j MASQUERADE
    filter P           -d CIP -o BRIDGE -p PROTO --dport CP -j ACCEPT
"""
from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import signal
import socket
import sys
import time

from pallet.core.errors import InvalidArgument, PalletError
from pallet.linux import networker as workermod
from pallet.linux import xtables
from pallet.core.files import read_json, remove, write_json
from pallet.plugins.net_proxy import ports as portsmod

log = logging.getLogger("pallet.net_proxy")


class PortAllocated(PalletError):
    """The host port is already published by this daemon, or held by another program."""


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None when it is gone
    or a zombie (a zombie no longer holds its port; its reaper may be slow)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            return None
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _proxy_command(configured: str | None) -> list[str]:
    if configured:
        return [configured]
    exe = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "pallet-proxy")
    if os.access(exe, os.X_OK):
        return [exe]
    found = shutil.which("pallet-proxy")
    if found:
        return [found]
    return [sys.executable, "-m", "pallet.commands.proxy"]


class Publisher:
    def __init__(self, *, network_root: str, network, prefix: str, userland_proxy: bool = True,
                 proxy_path: str | None = None, iptables: bool = True):
        #: ``network``: a callable returning the network role object (its
        #: ``port_target(cid)`` and ``running_sandboxes()``)
        self._network = network
        self.dir = os.path.join(network_root, "ports")
        self.prefix = prefix
        self.userland = userland_proxy
        self.iptables = iptables
        self.proxy_cmd = _proxy_command(proxy_path)
        self.worker = workermod.get()
        self.records: dict[str, dict] = {}
        self._held: dict[str, list[socket.socket]] = {}   # userland proxy off: held sockets
        self._loaded = False
        self._reconciled = False
        self._rules_dirty = False
        self._next_ephemeral: int | None = None

    # --- state --------------------------------------------------------------------------
    def _file(self, cid: str) -> str:
        return os.path.join(self.dir, f"{cid}.json")

    def _load(self) -> None:
        if self._loaded:
            return
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        for name in sorted(os.listdir(self.dir)):
            if ".tmp" in name:
                remove(os.path.join(self.dir, name))
            elif name.endswith(".json"):
                rec = read_json(os.path.join(self.dir, name))
                if isinstance(rec, dict) and rec.get("id") == name[:-5]:
                    self.records[rec["id"]] = rec
        self._loaded = True

    def _save(self, rec: dict) -> None:
        write_json(self._file(rec["id"]), rec)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Reconcile at daemon start: proxies and rules of gone containers go,
        the proxies of running ones are started again."""
        self.worker.call(self._reconcile)

    def _reconcile(self) -> None:
        self._load()
        if self._reconciled:
            return
        self._reconciled = True
        if not self.records:
            return
        running = self._network().running_sandboxes()
        for cid, rec in list(self.records.items()):
            for m in rec.get("mappings") or ():
                self._kill_stale(m)
            if cid not in running:
                log.info("container %s: removing the published ports of a container that is "
                         "gone", cid[:12])
                self.records.pop(cid)
                remove(self._file(cid))
                continue
            kept = []
            for m in rec.get("mappings") or ():
                try:
                    self._open(rec, m)
                    kept.append(m)
                except PalletError as e:
                    log.warning("container %s: cannot publish %s:%s again: %s", cid[:12],
                                m["host_ip"], m["host_port"], e)
            rec["mappings"] = kept
            self._save(rec)
        self._sync_rules(force=True)

    def shutdown(self) -> None:
        """palletd stops: its proxies stop with it (they are started again, for
        the containers still running, at the next start)."""
        def stop():
            for rec in self.records.values():
                for m in rec.get("mappings") or ():
                    self._stop_proxy(m)
                self._save(rec)
            for socks in self._held.values():
                for s in socks:
                    s.close()
            self._held.clear()
        try:
            self.worker.call(stop)
        except RuntimeError:
            pass

    def _kill_stale(self, m: dict) -> None:
        """A proxy recorded by an earlier daemon that somehow survived it."""
        pid, started = m.get("pid"), m.get("start_time")
        if pid and started and _start_time(pid) == started:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                cmd = b""
            if b"-container-port" in cmd and m["container_ip"].encode() in cmd:
                log.info("stopping orphan pallet-proxy %s", pid)
                self._signal_and_reap(pid)
        m["pid"], m["start_time"] = 0, 0

    # --- publish --------------------------------------------------------------------------------
    def check(self, host_config: dict, exposed_ports=None) -> None:
        """Validate a create request's port settings (raises InvalidArgument)."""
        portsmod.requests(host_config or {}, exposed_ports)
        portsmod.exposed(host_config or {}, exposed_ports)

    def publish(self, container: dict, bindings=None) -> dict:
        """Publish the ports of a starting container (after the network's
        ``setup``).  ``container``: ``id``, ``name``, ``host_config``
        (PortBindings, PublishAllPorts, NetworkMode), ``exposed_ports``.
        Returns docker's ``NetworkSettings.Ports``.  ``bindings`` (a list of
        ``pallet.core.models.PortBinding``) replaces ``PortBindings`` when given."""
        return self.worker.call(self._publish, container, bindings)

    def _publish(self, info: dict, bindings=None) -> dict:
        self._load()
        if not self._reconciled:
            self._reconcile()
        cid = info["id"]
        if cid in self.records:
            self._unpublish(cid)
        host = dict(info.get("host_config") or {})
        if bindings is not None:
            host["PortBindings"] = {f"{b.container_port}/{b.protocol}":
                                    [{"HostIp": b.host_ip,
                                      "HostPort": str(b.host_port or "")}]
                                    for b in bindings}
        exposed_ports = info.get("exposed_ports") or {}
        reqs = portsmod.requests(host, exposed_ports)
        keys = portsmod.exposed(host, exposed_ports)
        mode = host.get("NetworkMode") or "default"
        target = None
        if reqs and mode not in ("host", "none") and not mode.startswith("container:"):
            target = self._network().port_target(cid)
        rec = {"id": cid, "name": (info.get("name") or "").lstrip("/"), "exposed": keys,
               "mappings": [], "target": target}
        if target is None or not reqs:
            self.records[cid] = rec
            self._save(rec)
            return portsmod.ports_map([], keys)
        try:
            for r in reqs:
                m = self._allocate(rec, r, target)
                rec["mappings"].append(m)
                self._open(rec, m)
            self.records[cid] = rec
            self._save(rec)
            self._sync_rules()
            if self.iptables:
                from pallet.linux.netlink import set_hairpin
                try:
                    set_hairpin(target["host_ifname"], True)
                except PalletError as e:
                    log.warning("container %s: %s", cid[:12], e)
        except BaseException:
            for m in rec["mappings"]:
                self._stop_proxy(m)
            for s in self._held.pop(cid, []):
                s.close()
            self.records.pop(cid, None)
            remove(self._file(cid))
            if self._rules_dirty:
                self._sync_rules()
            raise
        return portsmod.ports_map(rec["mappings"], keys)

    def _conflicts(self, proto: str, ip: str, port: int) -> bool:
        for rec in self.records.values():
            for m in rec.get("mappings") or ():
                if m["proto"] == proto and m["host_port"] == port and (
                        m["host_ip"] == ip or "0.0.0.0" in (m["host_ip"], ip)):
                    return True
        return False

    def _allocate(self, rec: dict, r: portsmod.Request, target: dict) -> dict:
        """Choose the host port (not yet bound; ``_open`` binds it)."""
        ip = r.host_ip or target.get("host_ip") or "0.0.0.0"
        base = {"proto": r.proto, "host_ip": ip, "container_ip": target["ip"],
                "container_port": r.container_port, "bridge": target["bridge"], "pid": 0,
                "start_time": 0}
        mine = [(m["proto"], m["host_ip"], m["host_port"]) for m in rec["mappings"]]

        def taken(port):
            return self._conflicts(r.proto, ip, port) or any(
                p == r.proto and h_port == port and (h == ip or "0.0.0.0" in (h, ip))
                for p, h, h_port in mine)

        if r.low:
            for port in range(r.low, r.high + 1):
                if not taken(port) and (r.low == r.high or self._bindable(r.proto, ip, port)):
                    return dict(base, host_port=port)
            shown = f"{r.low}" if r.low == r.high else f"{r.low}-{r.high}"
            raise PortAllocated(self._conn_error(rec, target, f"Bind for {ip}:{shown} failed: "
                                                             "port is already allocated"))
        lo, hi = portsmod.local_port_range()
        size = hi - lo + 1
        if self._next_ephemeral is None:
            self._next_ephemeral = lo + random.randrange(size)
        for i in range(size):
            port = lo + (self._next_ephemeral - lo + i) % size
            if not taken(port) and self._bindable(r.proto, ip, port):
                self._next_ephemeral = port + 1
                return dict(base, host_port=port)
        raise PortAllocated(self._conn_error(rec, target, "all ports are allocated"))

    @staticmethod
    def _bindable(proto: str, ip: str, port: int) -> bool:
        s = _socket(proto)
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def _conn_error(self, rec: dict, target: dict, what: str) -> str:
        return (f"driver failed programming external connectivity on endpoint {rec['name']} "
                f"({target.get('endpoint_id') or rec['id']}): {what}")

    def _open(self, rec: dict, m: dict) -> None:
        """Bind the host port and start its proxy (or hold the socket)."""
        s = _socket(m["proto"])
        try:
            s.bind((m["host_ip"], m["host_port"]))
            if m["proto"] == "tcp" and self.userland:
                s.listen(512)
        except OSError as e:
            s.close()
            if e.errno == errno.EADDRINUSE:
                raise PortAllocated(self._conn_error(
                    rec, rec.get("target") or {},
                    f"Error starting userland proxy: listen {m['proto']}4 "
                    f"{m['host_ip']}:{m['host_port']}: bind: address already in use")) from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"listen {m['proto']} {m['host_ip']}:{m['host_port']}: "
                                      "bind: cannot assign requested address") from None
            raise PalletError(f"listen {m['proto']} {m['host_ip']}:{m['host_port']}: "
                              f"{(e.strerror or str(e)).lower()}") from None
        if not self.userland:
            self._held.setdefault(rec["id"], []).append(s)
            return
        try:
            m["pid"] = self._spawn(m, s)
            m["start_time"] = _start_time(m["pid"]) or 0
        finally:
            s.close()

    def _spawn(self, m: dict, sock: socket.socket) -> int:
        argv = self.proxy_cmd + ["-proto", m["proto"], "-host-ip", m["host_ip"],
                                 "-host-port", str(m["host_port"]),
                                 "-container-ip", m["container_ip"],
                                 "-container-port", str(m["container_port"]),
                                 "-use-listen-fd"]
        env = dict(os.environ, PALLET_PROXY_PPID=str(os.getpid()))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            actions = [(os.POSIX_SPAWN_DUP2, sock.fileno(), 3),
                       (os.POSIX_SPAWN_DUP2, devnull, 0)]
            try:
                return os.posix_spawn(argv[0], argv, env, file_actions=actions,
                                      setsigmask=(), setsigdef=(signal.SIGTERM, signal.SIGINT,
                                                                signal.SIGPIPE))
            except OSError as e:
                raise PalletError(f"start pallet-proxy ({argv[0]}): "
                                  f"{(e.strerror or str(e)).lower()}") from None
        finally:
            os.close(devnull)

    # --- unpublish ------------------------------------------------------------------------------
    def unpublish(self, container) -> None:
        """Remove the container's rules, stop its proxies, free its ports
        (``container`` is its id or the dict given to ``publish``)."""
        cid = container if isinstance(container, str) else container["id"]
        self.worker.call(self._unpublish, cid)

    def _unpublish(self, cid: str) -> None:
        self._load()
        rec = self.records.pop(cid, None)
        for s in self._held.pop(cid, []):
            s.close()
        if rec is None:
            return
        for m in rec.get("mappings") or ():
            self._stop_proxy(m)
        remove(self._file(cid))
        if rec.get("mappings"):
            self._sync_rules()

    def _stop_proxy(self, m: dict) -> None:
        pid = m.get("pid")
        if pid:
            self._signal_and_reap(pid)
        m["pid"], m["start_time"] = 0, 0

    @staticmethod
    def _signal_and_reap(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline, killed = time.monotonic() + 2.0, False
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    return
            except ChildProcessError:
                # not our child (an orphan from an earlier daemon): watch it go
                if _start_time(pid) is None:
                    return
            if time.monotonic() > deadline:
                if killed:
                    log.warning("pallet-proxy %s did not exit after SIGKILL", pid)
                    return
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    return
                killed, deadline = True, time.monotonic() + 5.0
            time.sleep(0.002)

    # --- what docker reports -------------------------------------------------------------------
    def ports(self, cid: str) -> dict:
        """docker's ``NetworkSettings.Ports`` of a published container ({} if none)."""
        rec = self.records.get(cid) if self._loaded else self.worker.call(self._get, cid)
        if rec is None:
            return {}
        return portsmod.ports_map(rec.get("mappings") or [], rec.get("exposed") or [])

    def ports_list(self, cid: str) -> list[dict]:
        """docker's ``Ports`` for ``docker ps``."""
        rec = self.records.get(cid) if self._loaded else self.worker.call(self._get, cid)
        if rec is None:
            return []
        return portsmod.ports_list(rec.get("mappings") or [], rec.get("exposed") or [])

    def _get(self, cid: str):
        self._load()
        return self.records.get(cid)

    # --- rules -----------------------------------------------------------------------------------
    def _sync_rules(self, force: bool = False) -> None:
        if not self.iptables:
            return
        p = self.prefix
        dnat, hairpin, accept = [], [], []
        bridges = set()
        for rec in self.records.values():
            for m in rec.get("mappings") or ():
                proto, cip, cport = m["proto"], m["container_ip"], str(m["container_port"])
                dest = () if m["host_ip"] == "0.0.0.0" else ("-d", f"{m['host_ip']}/32")
                dnat.append(dest + ("-p", proto, "-m", proto, "--dport", str(m["host_port"]),
                                    "-j", "DNAT", "--to-destination", f"{cip}:{cport}"))
                hairpin.append(("-s", f"{cip}/32", "-d", f"{cip}/32", "-p", proto, "-m", proto,
                                "--dport", cport, "-j", "MASQUERADE"))
                accept.append(("-d", f"{cip}/32", "-o", m["bridge"], "-p", proto, "-m", proto,
                               "--dport", cport, "-j", "ACCEPT"))
                bridges.add(m["bridge"])
        if not self.userland:
            from pallet.linux.netlink import set_route_localnet
            for b in sorted(bridges):
                hairpin.append(("-o", b, "-m", "addrtype", "--src-type", "LOCAL",
                                "-j", "MASQUERADE"))
                try:
                    set_route_localnet(b)
                except PalletError as e:
                    log.warning("%s", e)
        local = ("-m", "addrtype", "--dst-type", "LOCAL", "-j", p)
        output = (("!", "-d", "127.0.0.0/8") + local) if self.userland else local
        self._rules_dirty = True
        xtables.sync("nat", {p: dnat, f"{p}-HAIRPIN": hairpin},
                     jumps=[("PREROUTING", local), ("OUTPUT", output),
                            ("POSTROUTING", ("-j", f"{p}-HAIRPIN"))])
        xtables.sync("filter", {p: accept})
        self._rules_dirty = False


def _socket(proto: str) -> socket.socket:
    if proto == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return s
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def remove_rules(prefix: str) -> None:
    """Delete net_proxy's chains and the jumps to them (tests, uninstall)."""
    xtables.remove_chains("nat", [prefix, f"{prefix}-HAIRPIN"])
    xtables.remove_chains("filter", [prefix])
