"""Address management for one network, persisted under the data root.

Each network has a pool per address family: its subnet, the gateway, and
optionally a smaller range addresses are handed out from (``--ip-range``,
dockerd's ``--fixed-cidr``, ``--fixed-cidr-v6``), less the auxiliary
addresses (``--aux-address``), which are never handed out.  As in
libnetwork, a range's own first and last addresses are usable; only the
subnet's network and broadcast addresses and the gateway are not.  Allocation rolls forward from the last address handed
out, as libnetwork's default IPAM does, so an address just released is not
reused at once; an address is never handed out while an owner holds it, and
the allocations survive daemon restarts (one file per network, written
atomically after every change).
"""
from __future__ import annotations

import ipaddress
import threading

from pallet.core.errors import AlreadyExists, InvalidArgument, PalletError
from pallet.core.files import read_json, remove, write_json


class Exhausted(PalletError):
    """No address left in the pool."""


def parse_subnet(text: str, what: str = "subnet", version: int | None = 4):
    """A network (``version`` 4, 6, or None for either)."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except (ValueError, TypeError):
        raise InvalidArgument(f"invalid {what} {text!r}") from None
    if version is not None and net.version != version:
        raise InvalidArgument(f"invalid {what} {text}: an IPv{version} network is expected")
    return net


def parse_address(text: str, what: str = "address", version: int | None = 4):
    try:
        addr = ipaddress.ip_address(text)
    except (ValueError, TypeError):
        raise InvalidArgument(f"invalid {what} {text!r}") from None
    if version is not None and addr.version != version:
        raise InvalidArgument(f"invalid {what} {text}: an IPv{version} address is expected")
    return addr


class Pool:
    """The allocations of one network (thread-safe)."""

    def __init__(self, path: str, subnet: str, gateway: str, ip_range: str | None = None,
                 label: str = "", reserved=()):
        self.path = path
        self.subnet = parse_subnet(subnet, version=None)
        v = self.subnet.version
        self.gateway = parse_address(gateway, "gateway", v)
        self.range = parse_subnet(ip_range, "ip range", v) if ip_range else self.subnet
        self.reserved = {int(parse_address(a, "auxiliary address", v)) for a in reserved}
        self.label = label
        self._lock = threading.Lock()
        self.allocated: dict[str, str] = {}
        self.last: int | None = None
        self._load()

    # --- persistence -------------------------------------------------------------
    def _load(self) -> None:
        data = read_json(self.path, {}) or {}
        if data.get("subnet") not in (None, str(self.subnet)):
            # the network's subnet changed (dockerd's --bip changed): old
            # allocations mean nothing in the new subnet
            data = {}
        self.allocated = {ip: owner for ip, owner in (data.get("allocated") or {}).items()
                          if self._in_subnet(ip)}
        last = data.get("last")
        self.last = int(ipaddress.ip_address(last)) if last and self._in_subnet(last) else None

    def _save(self) -> None:
        write_json(self.path, {
            "subnet": str(self.subnet), "gateway": str(self.gateway),
            "allocated": self.allocated,
            "last": str(self._address(self.last)) if self.last is not None else None})

    def _address(self, value: int):
        return ipaddress.IPv6Address(value) if self.subnet.version == 6 \
            else ipaddress.IPv4Address(value)

    def destroy(self) -> None:
        """Forget the pool (its network is removed)."""
        remove(self.path)

    def _in_subnet(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.subnet
        except ValueError:
            return False

    # --- allocation ---------------------------------------------------------------
    def _usable(self, value: int) -> bool:
        if value == int(self.gateway) or value in self.reserved:
            return False
        if self.subnet.version == 6:
            return value != int(self.subnet.network_address)  # the subnet-router anycast
        return value not in (int(self.subnet.network_address),
                             int(self.subnet.broadcast_address)) \
            or self.subnet.prefixlen >= 31

    def allocate(self, owner: str, want: str | None = None) -> str:
        """Hand an address to ``owner``: ``want`` if given (and free), else the
        next free one after the last handed out."""
        with self._lock:
            if want:
                addr = parse_address(want, "IP address", self.subnet.version)
                if addr not in self.subnet:
                    raise InvalidArgument(f"invalid address {want}: it does not belong to any "
                                          f"of this network's subnets")
                if not self._usable(int(addr)):
                    raise InvalidArgument(f"invalid address {want}: it is the network, "
                                          "broadcast or gateway address")
                holder = self.allocated.get(str(addr))
                if holder is not None and holder != owner:
                    raise AlreadyExists(f"Address already in use: {want}")
                self.allocated[str(addr)] = owner
                self._save()
                return str(addr)
            first, last = int(self.range.network_address), int(self.range.broadcast_address)
            size = last - first + 1
            start = self.last + 1 if self.last is not None and first <= self.last < last else first
            for i in range(size):
                value = first + (start - first + i) % size
                ip = str(self._address(value))
                if ip in self.allocated or not self._usable(value):
                    continue
                self.allocated[ip] = owner
                self.last = value
                self._save()
                return ip
            raise Exhausted(f"no available IPv{self.subnet.version} addresses on this "
                            f"network's address pools: {self.label}")

    def release(self, ip: str, owner: str | None = None) -> None:
        """Give ``ip`` back (only if ``owner`` holds it, when given)."""
        with self._lock:
            holder = self.allocated.get(ip)
            if holder is None or (owner is not None and holder != owner):
                return
            del self.allocated[ip]
            self._save()

    def release_owner(self, owner: str) -> None:
        with self._lock:
            mine = [ip for ip, o in self.allocated.items() if o == owner]
            for ip in mine:
                del self.allocated[ip]
            if mine:
                self._save()

    def owners(self) -> set[str]:
        with self._lock:
            return set(self.allocated.values())

    def keep_only(self, owners: set[str]) -> list[str]:
        """Release every address whose owner is not in ``owners``; return them."""
        with self._lock:
            stale = [ip for ip, o in self.allocated.items() if o not in owners]
            for ip in stale:
                del self.allocated[ip]
            if stale:
                self._save()
            return stale
