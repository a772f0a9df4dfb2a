"""The bridge networks' iptables rules, in chains of pallet's own.

With the chain prefix P (``[plugins.net_bridge] chain-prefix``, default
``PALLET``), as dockerd lays out its DOCKER-* chains:

filter
    FORWARD          -j P-FORWARD                       (first rule)
    P-FORWARD        -j P-ISOLATION-1
                     per bridge B: -o B conntrack RELATED,ESTABLISHED ACCEPT;
                     -o B -j P (published ports, filled by net_proxy);
                     -i B ! -o B ACCEPT (internal: DROP both ways);
                     -i B -o B ACCEPT, or DROP when ICC is off
    P-ISOLATION-1    per bridge B: -i B ! -o B -j P-ISOLATION-2; RETURN
    P-ISOLATION-2    per bridge B: -o B DROP; RETURN
                     (so that two bridge networks cannot reach each other)
nat
    POSTROUTING      -j P-POSTROUTING                   (first rule)
    P-POSTROUTING    per masquerading network: -s SUBNET ! -o B MASQUERADE

The whole set is recomputed from the network records and synced (see
``xtables.sync``): idempotent, reconciled at start, never duplicated.  The
networks with IPv6 get the same filter chains and rules in ip6tables; their
IPv6 subnets are routed, not masqueraded, as by dockerd 20.10 (whose IPv6
NAT is the experimental ``--ip6tables``; python-iptables also cannot load
the MASQUERADE target for both families in one process).  The chains exist
in ip6tables only while such a network does.
"""
from __future__ import annotations

from pallet.linux import xtables


def chains(prefix: str) -> dict[str, list[str]]:
    """Every chain of the bridge driver, per table (net_proxy's ``P`` included,
    which the bridge driver only makes sure exists)."""
    return {"filter": [f"{prefix}-FORWARD", f"{prefix}-ISOLATION-1", f"{prefix}-ISOLATION-2",
                       prefix],
            "nat": [f"{prefix}-POSTROUTING"]}


def rules(prefix: str, networks, family: int = 4) -> tuple[dict, dict]:
    """(filter chains, nat chains) for the materialized bridge networks (their
    IPv6 side with ``family`` 6)."""
    fwd, iso1, iso2, post = [("-j", f"{prefix}-ISOLATION-1")], [], [], []
    for n in networks:
        b = n.bridge
        iso1.append(("-i", b, "!", "-o", b, "-j", f"{prefix}-ISOLATION-2"))
        iso2.append(("-o", b, "-j", "DROP"))
        fwd.append(("-o", b, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
                    "-j", "ACCEPT"))
        fwd.append(("-o", b, "-j", prefix))
        if n.internal:
            fwd.append(("-i", b, "!", "-o", b, "-j", "DROP"))
            fwd.append(("!", "-i", b, "-o", b, "-j", "DROP"))
        else:
            fwd.append(("-i", b, "!", "-o", b, "-j", "ACCEPT"))
        fwd.append(("-i", b, "-o", b, "-j", "ACCEPT" if n.icc else "DROP"))
        subnet = n.subnet6 if family == 6 else n.subnet
        if n.masquerade and not n.internal and subnet:
            post.append(("-s", subnet, "!", "-o", b, "-j", "MASQUERADE"))
    iso1.append(("-j", "RETURN"))
    iso2.append(("-j", "RETURN"))
    return ({f"{prefix}-FORWARD": fwd, f"{prefix}-ISOLATION-1": iso1,
             f"{prefix}-ISOLATION-2": iso2},
            {f"{prefix}-POSTROUTING": post})


def apply(prefix: str, networks) -> None:
    """Sync the rules of ``networks`` (every materialized bridge network), in
    iptables and, for those with IPv6, in ip6tables."""
    networks = list(networks)
    filt, nat = rules(prefix, networks)
    xtables.sync("filter", filt, jumps=[("FORWARD", ("-j", f"{prefix}-FORWARD"))],
                 ensure=(prefix,))
    xtables.sync("nat", nat, jumps=[("POSTROUTING", ("-j", f"{prefix}-POSTROUTING"))])
    v6 = [n for n in networks if getattr(n, "ipv6", False)]
    if v6:
        filt, _ = rules(prefix, v6, family=6)
        xtables.sync("filter", filt, jumps=[("FORWARD", ("-j", f"{prefix}-FORWARD"))],
                     ensure=(prefix,), family=6)
    else:
        remove(prefix, families=(6,))


def remove(prefix: str, families=(4, 6)) -> None:
    """Delete every chain of the bridge driver and the jumps to them."""
    names = chains(prefix)
    for family in families:
        xtables.remove_chains("filter", names["filter"], family)
        if family == 4:
            xtables.remove_chains("nat", names["nat"], family)


def enable_forwarding(ipv6: bool = False) -> None:
    """IPv4 forwarding on, and bridged traffic through iptables (dockerd does both:
    without br_netfilter's switch, ICC=false would not see bridged frames);
    with IPv6 networks, IPv6 forwarding too."""
    xtables.set_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
    if ipv6:
        xtables.set_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")
    path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    try:
        xtables.set_sysctl(path, "1")
    except Exception:  # noqa: BLE001 — br_netfilter absent: ICC=false cannot be enforced
        pass
