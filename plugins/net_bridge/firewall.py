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
``xtables.sync``): idempotent, reconciled at start, never duplicated.
"""
from __future__ import annotations

from pallet.linux import xtables


def chains(prefix: str) -> dict[str, list[str]]:
    """Every chain of the bridge driver, per table (net_proxy's ``P`` included,
    which the bridge driver only makes sure exists)."""
    return {"filter": [f"{prefix}-FORWARD", f"{prefix}-ISOLATION-1", f"{prefix}-ISOLATION-2",
                       prefix],
            "nat": [f"{prefix}-POSTROUTING"]}


def rules(prefix: str, networks) -> tuple[dict, dict]:
    """(filter chains, nat chains) for the materialized bridge networks."""
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
        if n.masquerade and not n.internal:
            post.append(("-s", n.subnet, "!", "-o", b, "-j", "MASQUERADE"))
    iso1.append(("-j", "RETURN"))
    iso2.append(("-j", "RETURN"))
    return ({f"{prefix}-FORWARD": fwd, f"{prefix}-ISOLATION-1": iso1,
             f"{prefix}-ISOLATION-2": iso2},
            {f"{prefix}-POSTROUTING": post})


def apply(prefix: str, networks) -> None:
    """Sync the rules of ``networks`` (every materialized bridge network)."""
    filt, nat = rules(prefix, networks)
    xtables.sync("filter", filt, jumps=[("FORWARD", ("-j", f"{prefix}-FORWARD"))],
                 ensure=(prefix,))
    xtables.sync("nat", nat, jumps=[("POSTROUTING", ("-j", f"{prefix}-POSTROUTING"))])


def remove(prefix: str) -> None:
    """Delete every chain of the bridge driver and the jumps to them."""
    names = chains(prefix)
    xtables.remove_chains("filter", names["filter"])
    xtables.remove_chains("nat", names["nat"])


def enable_forwarding() -> None:
    """IPv4 forwarding on, and bridged traffic through iptables (dockerd does both:
    without br_netfilter's switch, ICC=false would not see bridged frames)."""
    xtables.set_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
    path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    try:
        xtables.set_sysctl(path, "1")
    except Exception:  # noqa: BLE001 — br_netfilter absent: ICC=false cannot be enforced
        pass
