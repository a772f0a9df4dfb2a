"""Start pallet and the real Docker side by side, each with its own roots.

Used by the benchmarks (and usable from tests): both engines are driven by the
same docker CLI through their own unix sockets, and stopped by their pids.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
DOCKER_CLI = shutil.which("docker", path="/usr/local/bin:/usr/bin") or "docker"


def wait_socket(path: str, proc: subprocess.Popen, log: str, timeout: float = 60) -> None:
    """Wait until ``proc`` answers on the unix socket ``path``; on failure raise
    with the tail of its log file."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    with open(log, errors="replace") as f:
        tail = f.read()[-4000:]
    raise RuntimeError(f"no answer on {path} (exit {proc.poll()}); log:\n{tail}")


def umount_below(root: str) -> None:
    """Lazily unmount ``root`` and everything mounted below it (deepest first)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p == root or p.startswith(root + "/")),
                        key=len, reverse=True):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def interleaved(actions: dict, runs: int, warmup: int = 2) -> dict:
    """Median wall time (ms) of each engine's action, the engines taking turns
    (first one, then the other, swapping who goes first) so that the
    machine's drifts fall on both alike."""
    import statistics

    samples: dict = {k: [] for k in actions}
    order = list(actions)
    for i in range(warmup + runs):
        for key in (order if i % 2 else order[::-1]):
            t = time.perf_counter()
            actions[key]()
            if i >= warmup:
                samples[key].append((time.perf_counter() - t) * 1000)
    return {k: statistics.median(v) for k, v in samples.items()}


class Engine:
    """One running engine: its socket, its docker CLI environment, its pids."""

    name = "engine"

    def __init__(self, *extra_args: str) -> None:
        """``extra_args`` are added to the daemon's command line."""
        self.extra_args = list(extra_args)
        self.root = tempfile.mkdtemp(prefix=f"pb-{self.name[:2]}-", dir="/tmp")
        self.sock = os.path.join(self.root, "e.sock")
        self.proc: subprocess.Popen | None = None
        self.log = open(os.path.join(self.root, "daemon.log"), "wb")
        self.cgroups_before = cgroup_parents()

    @property
    def env(self) -> dict:
        return dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               capture: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER_CLI, *args], env=self.env, check=check, input=input,
                              stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                              stderr=subprocess.PIPE if capture else subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)
        self._stop_children()
        umount_below(self.root)
        remove_new_cgroup_parents(self.cgroups_before)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _stop_children(self) -> None:
        pass


class NetNames:
    """A bridge name, an iptables chain prefix and a free subnet of one engine's
    own, so that engines side by side (and tests) never share pallet0 or the
    PALLET chains; ``remove`` deletes what palletd made with them."""

    def __init__(self, bridge_options: dict | None = None) -> None:
        """``bridge_options``: more keys for ``[plugins.net_bridge]`` (mtu, icc...)."""
        import secrets

        sfx = secrets.token_hex(3)
        self.bridge = f"plb{sfx}"
        self.prefix = f"PLB{sfx.upper()}"
        self.subnet = free_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self.bridge_options = dict(bridge_options or {})

    def toml(self) -> str:
        import json

        extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.bridge_options.items())
        return (f'[plugins.net_bridge]\nbridge = "{self.bridge}"\n'
                f'bip = "{self.gateway}/{self.subnet.prefixlen}"\n'
                f'chain-prefix = "{self.prefix}"\n{extra}')

    def remove(self, data_root: str) -> None:
        import json

        from pallet.plugins.net_bridge import firewall
        from pallet.linux import netlink as links
        from pallet.linux import networker as workermod
        from pallet.plugins.net_proxy.publisher import remove_rules

        bridges = {self.bridge}
        folder = os.path.join(data_root, "network", "networks")
        for name in (os.listdir(folder) if os.path.isdir(folder) else ()):
            try:
                with open(os.path.join(folder, name)) as f:
                    bridges.add(json.load(f).get("bridge") or self.bridge)
            except (OSError, ValueError):
                pass

        def clean():
            host = links.HostLinks()
            try:
                for bridge in bridges:
                    host.delete(bridge)
            finally:
                host.close()
            firewall.remove(self.prefix)
            remove_rules(self.prefix)
        workermod.get().call(clean)


def free_subnets(count: int = 1, prefixlen: int = 24) -> list:
    """``count`` random 10.x.y.0/N subnets that overlap no address or route of
    the host, nor each other."""
    import ipaddress
    import random

    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    out += subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    taken = []
    for word in out.split():
        try:
            taken.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            pass
    found: list = []
    while len(found) < count:
        net = ipaddress.ip_network(f"10.{random.randrange(64, 250)}.{random.randrange(256)}"
                                   f".0/{prefixlen}", strict=False)
        if not any(net.overlaps(t) for t in taken + found):
            found.append(net)
    return found


def free_subnet():
    return free_subnets(1)[0]


class Pallet(Engine):
    """palletd (which starts its own pallet-containerd) on roots of its own.

    Unless ``--config`` is among the arguments, it gets a configuration of its
    own naming its own bridge, chain prefix and subnet (``config`` adds TOML to
    it); they are removed when it stops."""

    name = "pallet"

    def __init__(self, *extra_args: str, config: str = "",
                 bridge_options: dict | None = None) -> None:
        super().__init__(*extra_args)
        self.data_root = os.path.join(self.root, "d")
        self.exec_root = os.path.join(self.root, "r")
        self.known_ids: set[str] = set()
        self.net: NetNames | None = None
        if "--config" not in extra_args:
            self.net = NetNames(bridge_options)
            path = os.path.join(self.root, "pallet.toml")
            with open(path, "w") as f:
                f.write(self.net.toml() + config)
            self.extra_args += ["--config", path]

    def command(self) -> list[str]:
        return [os.path.join(VENV_BIN, "palletd"), "-H", f"unix://{self.sock}",
                "--data-root", self.data_root, "--exec-root", self.exec_root, *self.extra_args]

    def start(self) -> "Pallet":
        """Start palletd (again, after it stopped: the same roots and names)."""
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        wait_socket(self.sock, self.proc, self.log.name)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", "--no-trunc", check=False).stdout.decode().split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
        super().stop()

    def _stop_children(self) -> None:
        # the safety net for a failed run (palletd stops its children in order):
        # pallet-containerd names our roots; a shim names itself after its
        # container ("pallet-shim <id>"), so look for every id we ever had too
        try:
            self.known_ids.update(os.listdir(os.path.join(self.data_root, "containers")))
        except OSError:
            pass
        for marker in [self.root, *self.known_ids]:
            for pid in pids_mentioning(marker):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.2)
        remove_cgroups(self.known_ids)
        if self.net is not None:
            self.net.remove(self.data_root)


def cgroup_parents() -> set[str]:
    """The cgroup directories right below each controller (``memory/pallet``...)."""
    out = set()
    try:
        controllers = os.listdir("/sys/fs/cgroup")
    except OSError:
        return out
    for c in controllers:
        base = os.path.join("/sys/fs/cgroup", c)
        try:
            out.update(os.path.join(base, d) for d in os.listdir(base)
                       if os.path.isdir(os.path.join(base, d)))
        except OSError:
            pass
    return out


def remove_new_cgroup_parents(before: set[str]) -> None:
    """Remove the parents (``/pallet``, ``/docker``...) that appeared since
    ``before`` once nothing is left in them (busy ones stay)."""
    for parent in cgroup_parents() - before:
        for dirpath, _dirs, _files in os.walk(parent, topdown=False):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def remove_cgroups(ids) -> None:
    """Remove container cgroups (any controller, any parent) named by these ids."""
    ids = set(ids)
    if not ids:
        return
    for dirpath, _dirs, _files in os.walk("/sys/fs/cgroup", topdown=False):
        if os.path.basename(dirpath) in ids:
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


class Docker(Engine):
    name = "docker"

    @staticmethod
    def available() -> bool:
        return os.path.exists("/usr/sbin/dockerd")

    def start(self) -> "Docker":
        data, run = os.path.join(self.root, "d"), os.path.join(self.root, "r")
        self.proc = subprocess.Popen(
            ["/usr/sbin/dockerd", "-H", f"unix://{self.sock}", "--data-root", data,
             "--exec-root", run, "--pidfile", os.path.join(self.root, "d.pid"),
             "--bridge=none", "--iptables=false", "--ip-masq=false", *self.extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_socket(self.sock, self.proc, self.log.name)
        return self

    def stop(self) -> None:
        """Stop dockerd, then delete the bridges of its networks (dockerd keeps
        them when it stops) and what is enslaved to them; only those."""
        links = []
        try:
            if self.proc is not None and self.proc.poll() is None:
                r = self.docker("network", "ls", "--no-trunc", "--format",
                                "{{.ID}} {{.Name}} {{.Driver}}", check=False)
                for line in r.stdout.decode().splitlines():
                    nid, name, driver = (line.split() + ["", "", ""])[:3]
                    if driver == "bridge" and name not in ("bridge", "host", "none"):
                        links.append("docker_gwbridge" if name == "docker_gwbridge"
                                     else f"br-{nid[:12]}")
        except Exception:  # noqa: BLE001 - clean-up must not fail a test's teardown
            links = []
        super().stop()
        for link in links:
            try:
                out = subprocess.run(["ip", "-o", "link", "show", "master", link],
                                     capture_output=True, text=True).stdout
                for row in out.splitlines():
                    port = row.split(":")[1].strip().split("@")[0]
                    subprocess.run(["ip", "link", "del", port], capture_output=True)
                subprocess.run(["ip", "link", "del", link], capture_output=True)
            except Exception:  # noqa: BLE001
                pass

    def _stop_children(self) -> None:
        for pid in pids_mentioning(self.root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def pids_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (a root path, a container id)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if text.encode() in cmd and int(entry) != os.getpid():
            out.append(int(entry))
    return out


def pss_kib(pid: int) -> int:
    """Proportional set size of one process, in KiB."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def pids_named(prefix: str) -> list[int]:
    """Pids whose /proc/PID/comm starts with ``prefix``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().startswith(prefix):
                        out.append(int(entry))
            except OSError:
                pass
    return out


# --- the kernel's same-page merging (pallet-containerd starts it for its shims) ---------------

KSM = "/sys/kernel/mm/ksm"


def ksm_value(name: str) -> str:
    """A KSM sysfs value ("" without KSM)."""
    try:
        with open(os.path.join(KSM, name)) as f:
            return f.read().strip()
    except OSError:
        return ""


def settle_merging(scans: int = 2, timeout: float = 150.0) -> float:
    """Wait until ksmd, if it runs, has gone ``scans`` times over all the
    mergeable memory (a page merges when two scans found it unchanged);
    returns the seconds waited.  Memory is a steady-state figure: the pods of
    a node run for hours, ksmd goes over them every few seconds."""
    if ksm_value("run") != "1":
        return 0.0
    start = time.monotonic()
    first = int(ksm_value("full_scans") or 0)
    while int(ksm_value("full_scans") or 0) < first + scans + 1:  # +1: the scan under way
        if time.monotonic() - start > timeout:
            break
        time.sleep(0.5)
    return time.monotonic() - start


class HostKsm:
    """``/sys/kernel/mm/ksm/run`` as it was when made, put back by
    :meth:`restore` (pallet-containerd starts ksmd with its default
    ``shim-memory-merge``)."""

    def __init__(self):
        self.run = ksm_value("run")

    def restore(self) -> None:
        if self.run in ("0", "1") and ksm_value("run") != self.run:
            with open(os.path.join(KSM, "run"), "w") as f:
                f.write(self.run)


#: every bench puts the host's KSM switch back as it found it when it ends
atexit.register(HostKsm().restore)
