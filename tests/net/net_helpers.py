"""Helpers and fixtures of the networking tests: a palletd with its own bridge, chain
prefix and subnets; client network namespaces linked to the host; a fake
upstream DNS server on loopback.

Every name carries a random suffix and every subnet is picked at random in
10.x and checked against the host's addresses and routes, since other
engineers run root tests at the same time.  Whatever a test made (bridges,
chains, namespaces, processes) is removed even when it fails.  Traffic goes
only to loopback, to the namespaces made here and to the containers'
addresses on pallet's own bridges: the palletd under test is given a
resolv.conf naming only the fake loopback DNS server.
"""
from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))

from pallet.linux import netlink as links, netns  # noqa: E402
from pallet.linux import networker as workermod  # noqa: E402

from engines import free_subnets  # noqa: E402,F401  (the tests' subnets too)

BUSYBOX = "/bin/busybox"


def iptables_save() -> str:
    return subprocess.run(["iptables-legacy-save"], capture_output=True, text=True).stdout


def rules_of(prefix: str) -> list[str]:
    """Every rule line of iptables-legacy-save that mentions the prefix."""
    return [line for line in iptables_save().splitlines()
            if prefix in line and line.startswith("-A")]


def link_names() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def proxies_for(ip_prefix: str) -> list[int]:
    """pallet-proxy pids whose container address is in our subnet."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if any(c.endswith(b"pallet-proxy") for c in cmd[:2]) and \
                any(c.startswith(ip_prefix.encode()) for c in cmd):
            out.append(int(entry))
    return out


def wait_for(fn, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# --- fake upstream DNS server on loopback ------------------------------------------------

class FakeUpstream:
    """A DNS server on a random 127.x address, port 53: answers A for the
    names it is given, NXDOMAIN for every other name; counts queries."""

    def __init__(self, records: dict[str, str]):
        self.records = {k.lower(): v for k, v in records.items()}
        self.queries: list[str] = []
        for _ in range(50):
            self.ip = f"127.{random.randrange(60, 250)}.{random.randrange(1, 255)}." \
                      f"{random.randrange(1, 255)}"
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                self.sock.bind((self.ip, 53))
                break
            except OSError:
                self.sock.close()
        self.sock.settimeout(0.2)
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        from pallet.plugins.net_bridge import dns
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            q = dns.parse_question(data)
            if q is None:
                continue
            name, qtype, _, qend = q
            self.queries.append(name)
            ip = self.records.get(name.lower().rstrip("."))
            if ip and qtype == dns.TYPE_A:
                reply = dns.response(data, qend, 0, [(dns.TYPE_A, socket.inet_aton(ip))])
            else:
                reply = dns.response(data, qend, dns.RCODE_NXDOMAIN)
            self.sock.sendto(reply, addr)

    def close(self):
        self._stop = True
        self.sock.close()
        self.thread.join(2)


@pytest.fixture
def upstream():
    fake = FakeUpstream({"upstream.pallet.test": "10.99.88.77"})
    try:
        yield fake
    finally:
        fake.close()


# --- a palletd with its own network names -------------------------------------------------

class NetEngine:
    """A palletd (bench/engines.Pallet, with its own bridge, chain prefix and
    subnet) whose containers resolve names through the test's upstream."""

    def __init__(self, tmp_root: str, upstream: FakeUpstream, daemon_args=(), **opts):
        from engines import Pallet

        self.resolv = os.path.join(tmp_root, f"resolv-{secrets.token_hex(3)}.conf")
        with open(self.resolv, "w") as f:
            f.write(f"# test resolvers: loopback only\nnameserver {upstream.ip}\n")
        bridge = {k: v for k, v in opts.items() if k in ("icc", "fixed-cidr", "mtu")}
        bridge["resolv-conf"] = self.resolv
        proxy = "".join(f"{k} = {json.dumps(v)}\n" for k, v in opts.items()
                        if k in ("userland-proxy",))
        self.engine = Pallet("--debug", *daemon_args, bridge_options=bridge,
                             config=f"[plugins.net_proxy]\n{proxy}")
        names = self.engine.net
        self.bridge, self.prefix, self.subnet = names.bridge, names.prefix, names.subnet
        self.gateway = names.gateway
        self.sfx = self.bridge[3:]
        self.ip_prefix = ".".join(str(self.subnet.network_address).split(".")[:3]) + "."
        self.networks_made: list[str] = []

    @property
    def root(self):
        return self.engine.root

    @property
    def data_root(self):
        return self.engine.data_root

    def docker(self, *args, check=True, timeout=120):
        r = subprocess.run([_docker(), *args], env=self.engine.env, capture_output=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: exit {r.returncode}: "
                                 f"{r.stderr.decode(errors='replace')}")
        return r

    def out(self, *args, **kw) -> str:
        return self.docker(*args, **kw).stdout.decode().strip()

    def inspect(self, ref: str) -> dict:
        return json.loads(self.out("inspect", ref))[0]

    def start(self):
        self.engine.start()
        return self

    def kill_daemon(self):
        """SIGKILL palletd (by pid) and wait for it."""
        self.engine.proc.send_signal(signal.SIGKILL)
        self.engine.proc.wait(30)

    def stop_daemon(self):
        self.engine.proc.send_signal(signal.SIGTERM)
        self.engine.proc.wait(60)

    def restart(self):
        """Start palletd again on the same roots (after stop_daemon/kill_daemon)."""
        self.engine.start()

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.engine.root, "daemon.log"), errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def cleanup(self):
        """Containers and networks removed through palletd while it runs; then
        the engine stops (its bridges, chains and rules go with it) and any
        pallet-proxy left for our subnet is killed."""
        try:
            if self.engine.proc is not None and self.engine.proc.poll() is None:
                ids = self.out("ps", "-aq", "--no-trunc", check=False).split()
                if ids:
                    self.docker("rm", "-f", *ids, check=False)
                for n in self.networks_made:
                    self.docker("network", "rm", n, check=False)
        finally:
            self.engine.stop()
            for pid in proxies_for(self.ip_prefix):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _docker() -> str:
    from engines import DOCKER_CLI
    return DOCKER_CLI


def _busybox_tar(tmp_path_factory) -> str:
    built = os.path.join(REPO, "build", "busybox.tar")
    if os.path.exists(built):
        return built
    out = str(tmp_path_factory.mktemp("image") / "busybox.tar")
    subprocess.run([sys.executable, "-m", "pallet.distribution.busybox_image", out],
                   check=True)
    return out


@pytest.fixture(scope="session")
def image_tar(tmp_path_factory) -> str:
    return _busybox_tar(tmp_path_factory)


@pytest.fixture
def make_engine(tmp_path, upstream, image_tar):
    """Factory: ``make_engine(*daemon_args, **net_opts)`` starts a configured palletd
    with busybox loaded."""
    made: list[NetEngine] = []

    def make(*daemon_args, **opts) -> NetEngine:
        e = NetEngine(str(tmp_path), upstream, daemon_args, **opts)
        made.append(e)
        e.start()
        e.docker("load", "-i", image_tar)
        return e

    try:
        yield make
    finally:
        for e in made:
            e.cleanup()


@pytest.fixture
def engine(make_engine) -> NetEngine:
    return make_engine()


# --- a client namespace linked to the host by a veth pair -----------------------------------

class ClientNS:
    """A network namespace (ours) with a veth pair to the host: the host end
    has ``host_ip``, the namespace end ``ip`` and a default route via the host."""

    def __init__(self, tmp_root: str):
        sfx = secrets.token_hex(3)
        self.path = os.path.join(tmp_root, f"cns-{sfx}")
        self.host_if = f"plc{sfx}"
        net = free_subnets(1, 30)[0]
        hosts = list(net.hosts())
        self.host_ip, self.ip = str(hosts[0]), str(hosts[1])
        host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            ep = {"ifname": "eth0", "host_ifname": self.host_if, "ip": self.ip,
                  "prefixlen": 30, "mac": links.mac_for(self.ip), "mtu": 1500}
            netns.create(self.path, then=lambda: links.configure_sandbox(
                [ep], host_ns_fd=host_fd, gateway=self.host_ip))
        finally:
            os.close(host_fd)

        def host_side():
            from pyroute2 import IPRoute
            with IPRoute() as ipr:
                idx = ipr.link_lookup(ifname=self.host_if)[0]
                ipr.addr("add", index=idx, address=self.host_ip, prefixlen=30)
                ipr.link("set", index=idx, state="up")
        workermod.get().call(host_side)

    def run(self, *argv, timeout=30, check=False) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--net={self.path}", *argv], capture_output=True,
                              timeout=timeout, check=check)

    def close(self):
        def gone():
            hl = links.HostLinks()
            try:
                hl.delete(self.host_if)
            finally:
                hl.close()
        try:
            workermod.get().call(gone)
        finally:
            netns.remove(self.path)


@pytest.fixture
def client_ns(tmp_path):
    ns = ClientNS(str(tmp_path))
    try:
        yield ns
    finally:
        ns.close()


def wget(argv_prefix, url: str, timeout: int = 5) -> subprocess.CompletedProcess:
    # (busybox 1.35's wget -T crashes: the timeout comes from timeout(1))
    return subprocess.run([*argv_prefix, BUSYBOX, "timeout", str(timeout), BUSYBOX, "wget", "-q",
                           "-O", "-", url], capture_output=True, timeout=timeout + 10)


def udp_echo_in(sandbox_key: str, port: int) -> subprocess.Popen:
    """A UDP echo server (upper-cases what it gets) in a container's namespace."""
    code = ("import socket\ns=socket.socket(2,2)\ns.bind(('0.0.0.0',%d))\n"
            "while 1:\n d,a=s.recvfrom(9999)\n s.sendto(d.upper(),a)\n" % port)
    return subprocess.Popen(["nsenter", f"--net={sandbox_key}", sys.executable, "-c", code])


def udp_ask(addr: tuple[str, int], payload: bytes, netns_path: str | None = None,
            timeout: float = 3.0) -> bytes | None:
    """Send one datagram and wait for the answer (from a namespace when given)."""
    def ask():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        try:
            for _ in range(3):  # the proxy or the server may still be starting
                s.sendto(payload, addr)
                try:
                    return s.recvfrom(65535)[0]
                except socket.timeout:
                    continue
            return None
        finally:
            s.close()
    if netns_path:
        return netns.run_in(netns_path, ask)
    return ask()


def tcp_reachable(ip: str, port: int, timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((ip, port), timeout=timeout).close()
        return True
    except OSError:
        return False

