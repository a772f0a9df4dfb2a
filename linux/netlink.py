"""Links, addresses and routes with pyroute2.

Host side (``HostLinks``, one IPRoute for the daemon's life, on the worker
thread): bridges, and each veth pair made in one request, its host end on
the bridge and up, its other end (``eth0``, MAC, MTU) created straight in
the sandbox's namespace (``net_ns_fd``), so that no temporary name ever
exists in the host namespace and nothing has to be moved.  Sandbox side
(``SandboxLinks``): a route netlink socket opened inside the namespace when
it is made stays bound to it, so the worker configures the sandbox through
it (loopback up, addresses, up, default route) without joining it.  Host
ends of released sandboxes are deleted by a background ``Reaper`` (the
kernel's veth teardown waits for an RCU grace period).
"""
from __future__ import annotations

import errno
import ipaddress
import os
import secrets

from pallet.core.errors import PalletError

ENODEV = errno.ENODEV


def _netlink_error():
    from pyroute2 import NetlinkError
    return NetlinkError


def mac_for(ip: str) -> str:
    """libnetwork's MAC for an IPv4 address: 02:42 followed by the address bytes."""
    b = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


def veth_name() -> str:
    """A host-side veth name as docker makes them (``veth`` + 7 hex digits)."""
    return "veth" + secrets.token_hex(4)[:7]


class HostLinks:
    """Netlink in the daemon's own namespace (worker thread only)."""

    def __init__(self):
        self._ipr = None
        self._bridges: dict[str, int | None] = {}  # bridge name -> index (add_veth's cache)

    @property
    def ipr(self):
        if self._ipr is None:
            from pyroute2 import IPRoute
            self._ipr = IPRoute()
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def index(self, name: str) -> int | None:
        """The link's index (one RTM_GETLINK by name, not a dump of every link)."""
        return index_of(self.ipr, name)

    def exists(self, name: str) -> bool:
        return self.index(name) is not None

    def ensure_bridge(self, name: str, gateway: str, prefixlen: int, mtu: int) -> int:
        """The bridge ``name`` up with ``gateway/prefixlen`` (created if missing)."""
        nle = _netlink_error()
        try:
            idx = self.index(name)
            if idx is None:
                try:
                    self.ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
                except nle as e:
                    if e.code != errno.EEXIST:
                        raise
                idx = self.index(name)
                if idx is None:
                    raise PalletError(f"create bridge {name}: it vanished")
            have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                    for a in self.ipr.get_addr(index=idx, family=2)}
            if (gateway, prefixlen) not in have:
                try:
                    self.ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
                except nle as e:
                    if e.code != errno.EEXIST:
                        raise
            self.ipr.link("set", index=idx, state="up")
            return idx
        except nle as e:
            raise PalletError(f"set up bridge {name}: {os.strerror(e.code).lower()}") from None

    def ensure_address(self, name: str, address: str, prefixlen: int) -> None:
        """Another address (an IPv6 gateway) on the link ``name``, IPv6 switched
        on for it first (a bridge made while ``disable_ipv6`` is set has none)."""
        nle = _netlink_error()
        idx = self.index(name)
        if idx is None:
            raise PalletError(f"add address {address} to {name}: no such device")
        if ":" in address:
            _set_ipv6(name, True)
        family = 10 if ":" in address else 2
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in self.ipr.get_addr(index=idx, family=family)}
        if (address, prefixlen) in have:
            return
        try:
            self.ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
        except nle as e:
            if e.code != errno.EEXIST:
                raise PalletError(f"add address {address}/{prefixlen} to {name}: "
                                  f"{os.strerror(e.code).lower()}") from None

    def bridge_addresses(self, name: str) -> list[tuple[str, int]]:
        idx = self.index(name)
        if idx is None:
            return []
        return [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in self.ipr.get_addr(index=idx, family=2)]

    def delete(self, name: str) -> bool:
        """Delete a link (a veth takes its peer along); False when it was not there."""
        nle = _netlink_error()
        self._bridges.pop(name, None)
        idx = self.index(name)
        if idx is None:
            return False
        try:
            self.ipr.link("del", index=idx)
        except nle as e:
            if e.code == ENODEV:
                return False
            raise PalletError(f"delete link {name}: {os.strerror(e.code).lower()}") from None
        return True

    def add_veth(self, ep: dict, bridge: str, ns_path: str) -> None:
        """One veth pair in one request: the host end ``ep["host_ifname"]`` on
        ``bridge`` and up, the other end ``ep["ifname"]`` (MAC, MTU) created
        straight in the namespace at ``ns_path``."""
        nle = _netlink_error()
        br = self._bridges.get(bridge)
        if br is None or not os.path.exists(f"/sys/class/net/{bridge}"):
            br = self._bridges[bridge] = self.index(bridge)
        if br is None:
            raise PalletError(f"create veth {ep['host_ifname']}: no bridge {bridge}")
        fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.ipr.link("add", ifname=ep["host_ifname"], kind="veth", mtu=ep["mtu"],
                          master=br, state="up",
                          peer={"ifname": ep["ifname"], "net_ns_fd": fd, "address": ep["mac"],
                                "mtu": ep["mtu"]})
        except nle as e:
            raise PalletError(f"create veth {ep['host_ifname']} on {bridge}: "
                              f"{os.strerror(e.code).lower()}") from None
        finally:
            os.close(fd)

    def names(self) -> set[str]:
        return {link.get_attr("IFLA_IFNAME") for link in self.ipr.get_links()}

    def host_networks(self) -> list[ipaddress.IPv4Network]:
        """Every IPv4 network the host has an address or a route in."""
        out = []
        for a in self.ipr.get_addr(family=2):
            try:
                out.append(ipaddress.ip_network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}",
                                                strict=False))
            except ValueError:
                pass
        for r in self.ipr.get_routes(family=2, table=254):
            dst = r.get_attr("RTA_DST")
            if dst and r["dst_len"]:
                try:
                    out.append(ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False))
                except ValueError:
                    pass
        return out


def index_of(ipr, name: str) -> int | None:
    nle = _netlink_error()
    try:
        return ipr.link("get", ifname=name)[0]["index"]
    except nle as e:
        if e.code in (ENODEV, errno.ENOENT, errno.EINVAL):
            return None
        raise


class Reaper:
    """Deletes host-side veths on a thread of its own: the kernel's veth teardown
    waits for an RCU grace period (milliseconds), which a container's exit need
    not wait for.  The names are random, so nothing can reuse them meanwhile;
    ``drain()`` waits for the queue (tests, shutdown)."""

    def __init__(self):
        import queue
        import threading
        self._q: "queue.Queue[str | None]" = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pallet-net-reaper", daemon=True)
        self._thread.start()

    def delete(self, name: str) -> None:
        self._q.put(name)

    def drain(self) -> None:
        self._q.join()

    def _run(self) -> None:
        import logging
        from pyroute2 import IPRoute
        nle = _netlink_error()
        with IPRoute() as ipr:
            while True:
                name = self._q.get()
                try:
                    idx = index_of(ipr, name)
                    if idx is not None:
                        ipr.link("del", index=idx)
                except nle as e:
                    if e.code != ENODEV:
                        logging.getLogger("pallet.net_bridge").warning(
                            "delete link %s: %s", name, os.strerror(e.code).lower())
                except Exception:  # noqa: BLE001 — keep reaping
                    logging.getLogger("pallet.net_bridge").exception("delete link %s", name)
                finally:
                    self._q.task_done()


def set_hairpin(ifname: str, on: bool) -> None:
    """The bridge port's hairpin mode: frames may go back out the port they came
    in by (needed for a container to reach itself through a NATed address)."""
    path = f"/sys/class/net/{ifname}/brport/hairpin_mode"
    try:
        with open(path, "w") as f:
            f.write("1" if on else "0")
    except OSError as e:
        raise PalletError(f"set hairpin mode of {ifname}: {(e.strerror or str(e)).lower()}") \
            from None


def set_route_localnet(ifname: str, on: bool = True) -> None:
    path = f"/proc/sys/net/ipv4/conf/{ifname}/route_localnet"
    try:
        with open(path, "w") as f:
            f.write("1" if on else "0")
    except OSError as e:
        raise PalletError(f"set route_localnet of {ifname}: {(e.strerror or str(e)).lower()}") \
            from None


def _set_ipv6(ifname: str, on: bool) -> None:
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    try:
        with open(path, "w") as f:
            f.write("0" if on else "1")
    except OSError:
        pass  # IPv6 is off in this kernel: the address add says so


IFA_F_NODAD = 0x02


def _broadcast(ip: str, prefixlen: int) -> str:
    """The broadcast address libnetwork gives an endpoint's IPv4 address."""
    return str(ipaddress.ip_network(f"{ip}/{prefixlen}", strict=False).broadcast_address)


def netlink_socket():
    """A route netlink socket; opened inside a sandbox, it stays bound to that
    namespace, so the worker thread can configure the sandbox through it
    (``SandboxLinks``) without joining it."""
    import socket
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)  # NETLINK_ROUTE


class SandboxLinks:
    """pyroute2 over a sandbox's own netlink socket (a dup of it, closed after)."""

    def __init__(self, sock):
        self.sock = sock

    def __enter__(self):
        from pyroute2 import IPRoute
        self.ipr = IPRoute(fileno=os.dup(self.sock.fileno()))
        return self

    def __exit__(self, *exc):
        self.ipr.close()

    def configure(self, endpoints: list[dict], gateway: str | None,
                  loopback: bool = True, gateway6: str | None = None) -> None:
        """Loopback up; each endpoint's interface (made by ``add_veth``) gets its
        addresses (``ip``, and ``ip6`` when it has one) and goes up; the default
        routes via ``gateway`` and ``gateway6``."""
        nle = _netlink_error()
        ipr = self.ipr
        step = "bring loopback up"
        try:
            if loopback:
                ipr.link("set", index=1, state="up")  # lo is index 1 in every netns
            for ep in endpoints:
                step = f"configure {ep['ifname']}"
                idx = index_of(ipr, ep["ifname"])
                if idx is None:
                    raise PalletError(f"sandbox: {step}: no such device")
                ipr.addr("add", index=idx, address=ep["ip"], prefixlen=ep["prefixlen"],
                         broadcast=_broadcast(ep["ip"], ep["prefixlen"]))
                for extra in ep.get("linklocal") or ():
                    # --link-local-ip: one more address, on the link only
                    ipr.addr("add", index=idx, address=extra,
                             prefixlen=64 if ":" in extra else 16)
                if ep.get("ip6"):
                    # no duplicate address detection: the address is usable at
                    # once (the IPAM made sure it is unique), as libnetwork sets it
                    ipr.addr("add", index=idx, address=ep["ip6"], prefixlen=ep["prefixlen6"],
                             flags=IFA_F_NODAD)
                ipr.link("set", index=idx, state="up")
            if gateway:
                step = f"add default route via {gateway}"
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
            if gateway6:
                step = f"add default route via {gateway6}"
                ipr.route("add", dst="::/0", gateway=gateway6, family=10)
        except nle as e:
            raise PalletError(f"sandbox: {step}: {os.strerror(e.code).lower()}") from None

    def remove(self, ifname: str) -> None:
        nle = _netlink_error()
        idx = index_of(self.ipr, ifname)
        if idx is not None:
            try:
                self.ipr.link("del", index=idx)
            except nle as e:
                if e.code != ENODEV:
                    raise PalletError(f"delete {ifname}: {os.strerror(e.code).lower()}") \
                        from None

    def default_route(self, gateway: str | None) -> None:
        nle = _netlink_error()
        try:
            self.ipr.route("del", dst="0.0.0.0/0")
        except nle:
            pass
        if gateway:
            try:
                self.ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
            except nle as e:
                raise PalletError(f"add default route via {gateway}: "
                                  f"{os.strerror(e.code).lower()}") from None


def configure_sandbox(endpoints: list[dict], *, host_ns_fd: int, gateway: str | None,
                      loopback: bool = True, extra=None):
    """Inside the sandbox's namespace (the calling thread joined it): loopback,
    one veth per endpoint (``ifname``, ``host_ifname``, ``ip``, ``prefixlen``,
    ``mac``, ``mtu``), the default route via ``gateway``; then ``extra()``
    (opening the DNS socket) whose result is returned."""
    from pyroute2 import IPRoute
    nle = _netlink_error()
    with IPRoute() as ipr:
        step = "bring loopback up"
        try:
            if loopback:
                ipr.link("set", index=1, state="up")  # lo is always index 1 in a new netns
            for ep in endpoints:
                step = f"create {ep['ifname']} (peer {ep['host_ifname']})"
                ipr.link("add", ifname=ep["ifname"], kind="veth", address=ep["mac"],
                         mtu=ep["mtu"], peer={"ifname": ep["host_ifname"],
                                              "net_ns_fd": host_ns_fd, "mtu": ep["mtu"]})
                idx = index_of(ipr, ep["ifname"])
                step = f"configure {ep['ifname']}"
                ipr.addr("add", index=idx, address=ep["ip"], prefixlen=ep["prefixlen"])
                ipr.link("set", index=idx, state="up")
            if gateway:
                step = f"add default route via {gateway}"
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
        except nle as e:
            raise PalletError(f"sandbox: {step}: {os.strerror(e.code).lower()}") from None
    return extra() if extra is not None else None
