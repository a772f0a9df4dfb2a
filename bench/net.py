"""Networking: pallet against the real Docker, same docker CLI, same run.

    .venv/bin/python bench/net.py [--runs 15] [--mib 256] [--streams 5]

* throughput of one TCP stream of 256 MiB through a published port, read
  from 127.0.0.1 (the userland proxy path: pallet-proxy against Debian's
  docker-proxy); the container sends with ``nc -e dd`` from /dev/zero;
  target >= 1.0x docker-proxy;
* time to set up the network of one container: median ``docker network
  connect`` of a running container to a user-defined network (a new
  endpoint: address, veth pair, interface configured in the container's
  namespace, /etc/hosts, DNS records); target <= 0.5x Docker's;
* for information, median ``docker start`` of a bridge-networked container
  minus that of a ``--network none`` one (dockerd's ``none`` sandbox costs
  about what its bridge one does, so Docker's difference is near zero).

Each engine has its own roots, socket, bridge and (for pallet) iptables chain
prefix; dockerd runs with ``--bridge=<its own bridge> --iptables=false``
so that it does not touch the host's DOCKER chains, which other engines on
this machine may use.  Only loopback and the containers' addresses are
reached.  Everything made here is removed at the end, even on failure.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engines import Docker, Pallet, wait_socket  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_TAR = os.path.join(ROOT, "build", "busybox.tar")


def _free_subnet() -> ipaddress.IPv4Network:
    from pallet.linux import netlink as links, networker as worker

    def taken():
        hl = links.HostLinks()
        try:
            return hl.host_networks()
        finally:
            hl.close()
    used = worker.get().call(taken)
    while True:
        net = ipaddress.ip_network(f"10.{random.randrange(64, 250)}."
                                   f"{random.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net


class BridgedDocker(Docker):
    """dockerd on a bridge of its own (made here), userland proxy on, no iptables."""

    def __init__(self, bridge: str, subnet: ipaddress.IPv4Network):
        super().__init__()
        self.bridge, self.subnet = bridge, subnet

    def start(self) -> "BridgedDocker":
        from pallet.linux import networker as worker
        gw = str(self.subnet.network_address + 1)
        worker.get().call(lambda: _with_links(lambda hl: hl.ensure_bridge(
            self.bridge, gw, self.subnet.prefixlen, 1500)))
        data, run = os.path.join(self.root, "d"), os.path.join(self.root, "r")
        self.proc = subprocess.Popen(
            ["/usr/sbin/dockerd", "-H", f"unix://{self.sock}", "--data-root", data,
             "--exec-root", run, "--pidfile", os.path.join(self.root, "d.pid"),
             f"--bridge={self.bridge}", "--iptables=false", "--ip-masq=false",
             "--userland-proxy=true", "--userland-proxy-path=/usr/sbin/docker-proxy",
             "--dns", "127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_socket(self.sock, self.proc, self.log.name)
        return self

    def stop(self) -> None:
        super().stop()
        from pallet.linux import networker as worker
        worker.get().call(lambda: _with_links(lambda hl: hl.delete(self.bridge)))


def _with_links(fn):
    from pallet.linux import netlink as links
    hl = links.HostLinks()
    try:
        return fn(hl)
    finally:
        hl.close()


def make_pallet(tmp: str) -> Pallet:
    sfx = secrets.token_hex(3)
    subnet = _free_subnet()
    resolv = os.path.join(tmp, f"resolv-{sfx}.conf")
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\n")
    cfg = os.path.join(tmp, f"pallet-{sfx}.toml")
    with open(cfg, "w") as f:
        f.write(f'[plugins.net_bridge]\nbridge = "pbp{sfx}"\n'
                f'bip = "{subnet.network_address + 1}/{subnet.prefixlen}"\n'
                f'chain-prefix = "PBP{sfx.upper()}"\nresolv-conf = "{resolv}"\n')
    e = Pallet("--config", cfg)
    e.net_names = (f"pbp{sfx}", f"PBP{sfx.upper()}")
    return e


def clean_pallet(e: Pallet) -> None:
    from pallet.plugins.net_bridge import firewall
    from pallet.linux import networker as worker
    from pallet.plugins.net_proxy.publisher import remove_rules
    bridge, prefix = e.net_names

    def clean():
        _with_links(lambda hl: hl.delete(bridge))
        firewall.remove(prefix)
        remove_rules(prefix)
    worker.get().call(clean)


# --- benchmarks -----------------------------------------------------------------------------

def _stream_server(engine, mib: int) -> tuple[str, int]:
    """A container sending ``mib`` MiB to each client; its published port."""
    cid = engine.docker("run", "-d", "-p", "127.0.0.1::80", "busybox", "nc", "-ll", "-p", "80",
                        "-e", "dd", "if=/dev/zero", "bs=1M", f"count={mib}").stdout.decode().strip()
    info = json.loads(engine.docker("inspect", cid).stdout)[0]
    port = int(info["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait for the listener inside
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            got = s.recv(1)
            s.close()
            if got:
                break
        except OSError:
            pass
        time.sleep(0.1)
    return cid, port


def _one_stream(port: int, mib: int) -> float:
    view = memoryview(bytearray(1 << 20))
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    total, t0 = 0, time.perf_counter()
    while True:
        n = s.recv_into(view)
        if not n:
            break
        total += n
    elapsed = time.perf_counter() - t0
    s.close()
    if total != mib << 20:
        raise RuntimeError(f"got {total} bytes, expected {mib} MiB")
    return mib / elapsed


def stream_rates(engines, mib: int, streams: int) -> dict[str, list[float]]:
    """``streams`` downloads per engine, the engines taking turns (so that the
    load other programs put on the machine falls on both alike)."""
    servers = {e.name: _stream_server(e, mib) for e in engines}
    rates: dict[str, list[float]] = {e.name: [] for e in engines}
    try:
        for _ in range(streams):
            for e in engines:
                rates[e.name].append(_one_stream(servers[e.name][1], mib))
    finally:
        for e in engines:
            e.docker("rm", "-f", servers[e.name][0], check=False)
    return rates


def setup_ms(engine, runs: int) -> float:
    """Median start time with a bridge network minus that with none (ms)."""
    def created(net: str) -> list[str]:
        return [engine.docker("create", "--network", net, "busybox", "true")
                .stdout.decode().strip() for _ in range(runs + 2)]
    bridged, none = created("bridge"), created("none")
    times = {"bridge": [], "none": []}
    try:
        for i in range(runs + 2):
            for net, ids in (("bridge", bridged), ("none", none)):
                t = time.perf_counter()
                engine.docker("start", ids[i])
                if i >= 2:  # two warm-up rounds
                    times[net].append((time.perf_counter() - t) * 1000)
    finally:
        engine.docker("rm", "-f", *bridged, *none, check=False)
    return statistics.median(times["bridge"]) - statistics.median(times["none"])


def connect_ms(engine, runs: int) -> float:
    """Median ``POST /networks/{id}/connect`` of a running container to a
    user-defined network: a new endpoint (address, veth pair, interface set up
    in the container's namespace, /etc/hosts, the DNS server's records).
    Timed at the API (docker-py), so the docker CLI's own start-up does not
    blur the daemons' figures."""
    import docker

    api = docker.APIClient(base_url=f"unix://{engine.sock}", version="1.41", timeout=60)
    subnet = _free_subnet()
    net = f"pbn{secrets.token_hex(3)}"
    nid = api.create_network(net, driver="bridge", ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet=str(subnet))]))["Id"]
    cid = engine.docker("run", "-d", "busybox", "sleep", "600").stdout.decode().strip()
    samples = []
    try:
        for i in range(runs + 2):
            t = time.perf_counter()
            api.connect_container_to_network(cid, nid)
            if i >= 2:
                samples.append((time.perf_counter() - t) * 1000)
            api.disconnect_container_from_network(cid, nid)
    finally:
        engine.docker("rm", "-f", cid, check=False)
        api.remove_network(nid)
        api.close()
    return statistics.median(samples)


def main() -> int:
    import tempfile
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--streams", type=int, default=9)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/net.py needs root (bridges, namespaces)", file=sys.stderr)
        return 1
    if not os.path.exists(IMAGE_TAR):
        subprocess.run([sys.executable, "-m", "pallet.distribution.busybox_image", IMAGE_TAR],
                       check=True)
    tmp = tempfile.mkdtemp(prefix="pbn-", dir="/tmp")
    engines = [make_pallet(tmp)]
    if Docker.available() and os.path.exists("/usr/sbin/docker-proxy"):
        engines.append(BridgedDocker(f"pbd{secrets.token_hex(3)}", _free_subnet()))
    results: dict[str, dict[str, float]] = {}
    try:
        for e in engines:
            e.start()
            e.docker("load", "-i", IMAGE_TAR)
        rates = stream_rates(engines, args.mib, args.streams)
        results[f"TCP stream {args.mib} MiB via 127.0.0.1 (MiB/s, median of {args.streams})"] = \
            {name: statistics.median(r) for name, r in rates.items()}
        results[f"TCP stream {args.mib} MiB via 127.0.0.1 (MiB/s, best of {args.streams})"] = \
            {name: max(r) for name, r in rates.items()}
        title2 = f"network setup of one container: network connect (ms, median of {args.runs})"
        results[title2] = {e.name: connect_ms(e, args.runs) for e in engines}
        title3 = f"start, bridge minus none (ms, median of {args.runs})"
        results[title3] = {e.name: setup_ms(e, args.runs) for e in engines}
    finally:
        for e in engines:
            try:
                e.stop()
            finally:
                if isinstance(e, Pallet):
                    clean_pallet(e)
        subprocess.run(["rm", "-rf", tmp])
    width = max(len(t) for t in results) if results else 10
    print(f"{'benchmark':<{width}}  {'pallet':>10}  {'docker':>10}  {'ratio':>7}  target")
    targets = {0: ">= 1.0x", 1: ">= 1.0x", 2: "<= 0.5x", 3: "(for information)"}
    for i, (t, row) in enumerate(results.items()):
        p, d = row.get("pallet"), row.get("docker")
        ratio = f"{p / d:.2f}x" if p is not None and d else "-"
        print(f"{t:<{width}}  {p:>10.1f}  {d if d is not None else float('nan'):>10.1f}  "
              f"{ratio:>7}  {targets[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
