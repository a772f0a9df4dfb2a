"""/etc/hosts, /etc/hostname and /etc/resolv.conf of a container, as dockerd
writes them.

* hosts: the loopback and IPv6 defaults, the ``--add-host`` entries, then one
  line per address of the container with its hostname (``host.domain host``
  when a domain name is set); with ``--network host`` the host's own file
  plus the ``--add-host`` entries.
* resolv.conf without the embedded DNS server (default bridge): the host's
  file with its loopback nameservers removed (they mean nothing inside the
  container), 8.8.8.8 and 8.8.4.4 when none is left; ``--dns``,
  ``--dns-search`` and ``--dns-option`` replace their part.  With the
  embedded server (user-defined networks): ``nameserver 127.0.0.11``, the
  search domains, ``options ndots:0``; the servers it forwards to are the
  ``--dns`` ones, else the host's (loopback ones included: it forwards from
  the host's namespace).

The files live in the container's directory and are bind-mounted by the
runtime; once mounted they are rewritten in place (same inode), never
replaced by a rename, so the container sees the change.
"""
from __future__ import annotations

import ipaddress
import os
import socket

from pallet.core.errors import InvalidArgument

DEFAULT_HOSTS = ("127.0.0.1\tlocalhost\n"
                 "::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "fe00::0\tip6-localnet\n"
                 "ff00::0\tip6-mcastprefix\n"
                 "ff02::1\tip6-allnodes\n"
                 "ff02::2\tip6-allrouters\n")
DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")
EMBEDDED_DNS = "127.0.0.11"
HOST_GATEWAY = "host-gateway"


def write(path: str, text: str) -> None:
    """Write in place: truncate and rewrite the same inode (bind mounts follow it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, 0)
        data = text.encode()
        while data:
            n = os.write(fd, data)
            data = data[n:]
    finally:
        os.close(fd)


def read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# --- hosts ------------------------------------------------------------------------

def parse_extra_hosts(items, host_gateway_ip: str | None = None) -> list[tuple[str, str]]:
    """``--add-host`` values (``name:ip`` or ``name=ip``) as (ip, name) pairs."""
    out = []
    for item in items or ():
        if not isinstance(item, str):
            raise InvalidArgument(f"invalid extra host: {item!r}")
        sep = min((i for i in (item.find(":"), item.find("=")) if i > 0), default=-1)
        if sep <= 0:
            raise InvalidArgument(f"bad format for add-host: {item!r}")
        name, ip = item[:sep], item[sep + 1:].strip("[]")
        if ip == HOST_GATEWAY:
            if not host_gateway_ip:
                raise InvalidArgument("unable to derive the IP value for host-gateway")
            ip = host_gateway_ip
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: {ip!r}") from None
        out.append((ip, name))
    return out


def hosts(hostname: str, domainname: str, addresses, extra) -> str:
    """A bridge-network container's /etc/hosts."""
    lines = [DEFAULT_HOSTS]
    for ip, name in extra:
        lines.append(f"{ip}\t{name}\n")
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    for ip in addresses:
        lines.append(f"{ip}\t{names}\n")
    return "".join(lines)


def host_mode_hosts(extra, host_file: str = "/etc/hosts") -> str:
    text = read(host_file)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "".join(f"{ip}\t{name}\n" for ip, name in extra)


def host_hostname() -> str:
    return socket.gethostname()


# --- resolv.conf --------------------------------------------------------------------

def parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    ns, search, opts = [], [], []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            ns.append(fields[1])
        elif fields[0] in ("search", "domain") and len(fields) > 1:
            search = fields[1:]
        elif fields[0] == "options":
            opts.extend(fields[1:])
    return ns, search, opts


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


def _is_v6(ip: str) -> bool:
    return ":" in ip


def _build(nameservers, search, options) -> str:
    out = []
    if search and " ".join(search).strip() != ".":
        out.append("search " + " ".join(search) + "\n")
    out.extend(f"nameserver {ns}\n" for ns in nameservers)
    if options:
        out.append("options " + " ".join(options) + "\n")
    return "".join(out)


def _filtered_host(host_text: str) -> str:
    """The host's file without loopback (or IPv6) nameservers, defaults if empty."""
    kept = []
    for line in host_text.splitlines(keepends=True):
        fields = line.split()
        if len(fields) > 1 and fields[0] == "nameserver" and (_is_loopback(fields[1])
                                                               or _is_v6(fields[1])):
            continue
        kept.append(line)
    text = "".join(kept)
    if not parse_resolv(text)[0]:
        if text and not text.endswith("\n"):
            text += "\n"
        text += "".join(f"nameserver {ns}\n" for ns in DEFAULT_DNS)
    return text


def resolv(host_text: str, *, dns=(), search=(), options=(), embedded: bool = False) \
        -> tuple[str, list[str]]:
    """The container's resolv.conf, and the servers the embedded DNS server
    forwards to (empty without it)."""
    host_ns, host_search, host_opts = parse_resolv(host_text)
    for ip in dns or ():
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"{ip} is not an ip address") from None
    if embedded:
        upstream = list(dns) if dns else [ns for ns in host_ns if not _is_v6(ns)]
        opts = list(options) if options else list(host_opts)
        if not any(o.startswith("ndots:") for o in opts):
            opts.append("ndots:0")
        return _build([EMBEDDED_DNS], list(search) if search else host_search, opts), upstream
    if dns or search or options:
        servers = list(dns) if dns else [ns for ns in host_ns
                                          if not _is_loopback(ns) and not _is_v6(ns)]
        if not servers:
            servers = list(DEFAULT_DNS)
        return _build(servers, list(search) if search else host_search,
                      list(options) if options else host_opts), []
    return _filtered_host(host_text), []
