"""The /etc files of a container attached through CNI: hosts (the usual
loopback entries, the extra hosts asked for, the container's addresses with
its name), hostname, and resolv.conf (the requested servers, else the
host's without its loopback ones, which mean nothing in another network
namespace; the DNS of the CNI result when it gives some).  Files are
rewritten in place, so a bind mount of them sees the change."""
from __future__ import annotations

import ipaddress
import os

LOCAL = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
         "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
         "ff02::2\tip6-allrouters\n")


def put(path: str, text: str) -> None:
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def extra_lines(extra_hosts) -> str:
    """docker's ``--add-host name:ip`` entries as hosts lines."""
    out = []
    for item in extra_hosts or ():
        name, _, ip = str(item).partition(":")
        if ip:
            out.append(f"{ip}\t{name}\n")
    return "".join(out)


def hosts(hostname: str, domainname: str, ips, extra_hosts) -> str:
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    return LOCAL + extra_lines(extra_hosts) + "".join(f"{ip}\t{names}\n" for ip in ips)


def resolv(host_text: str, *, servers=(), searches=(), options=(), result_dns=None) -> str:
    """resolv.conf for a container in its own network namespace."""
    result_dns = result_dns or {}
    servers = list(servers) or list(result_dns.get("nameservers") or ())
    searches = list(searches) or list(result_dns.get("search") or ())
    options = list(options) or list(result_dns.get("options") or ())
    kept, host_servers = [], []
    for line in host_text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            try:
                if not ipaddress.ip_address(words[1].split("%")[0]).is_loopback:
                    host_servers.append(words[1])
            except ValueError:
                pass
            continue
        if words[:1] in (["search"], ["domain"]) and searches:
            continue
        if words[:1] == ["options"] and options:
            continue
        kept.append(line)
    out = [line for line in kept if line.strip()]
    if searches:
        out.append("search " + " ".join(searches))
    for s in servers or host_servers or ["8.8.8.8", "8.8.4.4"]:
        out.append(f"nameserver {s}")
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out) + "\n"
