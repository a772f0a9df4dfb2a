"""CRI runtimes side by side: pallet-containerd (api_cri) against Debian's
containerd 1.6 with its CRI plugin, runc and the same CNI plugins, in the
same run, each on roots, a socket, a bridge, a subnet and a cgroup parent of
its own.

    .venv/bin/python bench/cri.py [--runs 20] [--pods 30] [--parallel 4] [--json]

Three figures (pallet / containerd), two with the target the CRI issue sets:

* latency from RunPodSandbox to a container running in it (RunPodSandbox,
  CreateContainer, StartContainer through a gRPC client generated from the
  CRI proto), median of ``--runs`` (at least 15), the runtimes taking turns;
  target <= 0.5x;
* ``--pods`` pods started ``--parallel`` at a time, wall time (no target:
  it shows how the runtimes share the machine's CPUs under load);
* memory per running pod, with the ``--pods`` pods of the burst running:
  the PSS of the processes the runtime adds per pod (shims, pallet's
  namespace holders, containerd's pause containers), plus what the
  processes all pods share (the daemon, pallet-shim's zygote) grew by since
  before the burst, divided by the pods; the containers' own processes are
  counted on neither side.  The components are printed; target <= 0.5x.
  pallet-containerd has the kernel merge its shims' identical pages (KSM,
  ``[containerd] shim-memory-merge``, on by default): both runtimes are
  read once ksmd has gone twice over the mergeable memory, and the host's
  KSM switch is put back as it was at the end (bench/engines.py).

Pods are configured as kubelet configures them (a PID namespace per
container); each runs busybox's ``sleep``.  The classes here are also the
harness of tests/cri and tests/cni.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))

from engines import (cgroup_parents, free_subnet, ksm_value,  # noqa: E402
                     pids_mentioning, pss_kib, settle_merging,
                     remove_new_cgroup_parents, stop_process, umount_below, wait_socket)

CRICTL = os.path.join(ROOT, "..", "shared", "tools", "crictl")
if not os.path.exists(CRICTL):
    CRICTL = "/work/shared/tools/crictl"
CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
CTR = shutil.which("ctr") or "/usr/bin/ctr"
IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"
PLUGIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")
BUSYBOX = "docker.io/library/busybox:latest"
PAUSE = "docker.io/pallet/pause:test"


# --- CNI networks of one run's own ---------------------------------------------------------------

def conflist(name: str, bridge: str, subnet, data_dir: str, *, portmap: bool = True,
             version: str = "1.0.0") -> dict:
    """bridge + host-local (+ portmap) on ``bridge`` and ``subnet``."""
    plugins = [{"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True,
                "hairpinMode": True,
                "ipam": {"type": "host-local", "dataDir": data_dir,
                         "ranges": [[{"subnet": str(subnet)}]],
                         "routes": [{"dst": "0.0.0.0/0"}]}}]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return {"cniVersion": version, "name": name, "plugins": plugins}


def nat_rules() -> list[str]:
    r = subprocess.run([IPTABLES, "-w", "-t", "nat", "-S"], capture_output=True, text=True)
    return r.stdout.splitlines()


def nat_chains() -> set[str]:
    return {line.split()[1] for line in nat_rules() if line.startswith("-N ")}


class CniNetwork:
    """A bridge name, a free subnet, a conf dir and IPAM dir of one test's own;
    :meth:`cleanup` removes the bridge and the nat chains that were not
    there before."""

    def __init__(self, base: str, *, portmap: bool = True, version: str = "1.0.0"):
        sfx = secrets.token_hex(3)
        self.name = f"plcni-{sfx}"
        self.bridge = f"plc{sfx}"
        self.subnet = free_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self.base = base
        self.conf_dir = os.path.join(base, "net.d")
        self.cache_dir = os.path.join(base, "cache")
        self.ipam_dir = os.path.join(base, "ipam")
        os.makedirs(self.conf_dir, exist_ok=True)
        self.doc = conflist(self.name, self.bridge, self.subnet, self.ipam_dir,
                            portmap=portmap, version=version)
        self.conf_path = os.path.join(self.conf_dir, "10-test.conflist")
        with open(self.conf_path, "w") as f:
            json.dump(self.doc, f)
        self.chains_before = nat_chains()
        self.rules_before = set(nat_rules())

    def cleanup(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], stderr=subprocess.DEVNULL)
        # this network's rules (the plugins name it in their comments) and the
        # chains they jump to; other runs' networks may be live beside it
        ours = [line for line in nat_rules()
                if line.startswith("-A ") and f'name: \\"{self.name}\\"' in line]
        jumps = {line.split(" -j ")[1].split()[0] for line in ours if " -j " in line}
        self._delete(ours)
        mine = (jumps & nat_chains()) - self.chains_before
        self._delete([line for line in nat_rules()
                      if line.startswith("-A ") and line.split()[1] in mine])
        self._drop(mine)
        if any("name: \\\"plcni-" in line for line in nat_rules()):
            return   # the shared plumbing (portmap's chains) serves another run still
        self._delete([line for line in nat_rules()
                      if line.startswith("-A ") and line not in self.rules_before])
        self._drop(nat_chains() - self.chains_before)

    @staticmethod
    def _delete(rules: list[str]) -> None:
        for line in rules:
            subprocess.run([IPTABLES, "-w", "-t", "nat", "-D", *shlex.split(line)[1:]],
                           stderr=subprocess.DEVNULL)

    @staticmethod
    def _drop(chains: set[str]) -> None:
        for flag in ("-F", "-X"):   # chains jump to each other: empty them all first
            for chain in chains:
                subprocess.run([IPTABLES, "-w", "-t", "nat", flag, chain],
                               stderr=subprocess.DEVNULL)


# --- the runtimes ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pause_archive(out: str) -> None:
    """A pause image for containerd's CRI plugin: busybox's layer, running
    ``sleep`` for ever (no image from the internet in tests)."""
    import hashlib

    from pallet.core.models import Descriptor
    from pallet.distribution import busybox_image as bb
    from pallet.distribution.archive import (ExportImage, docker_manifest, manifest_bytes,
                                             write_docker_archive)
    from pallet.distribution.mediatypes import (MT_DOCKER_CONFIG, MT_DOCKER_LAYER,
                                                MT_DOCKER_MANIFEST)

    layer = bb.build_layer()
    layer_d = Descriptor(MT_DOCKER_LAYER, "sha256:" + hashlib.sha256(layer).hexdigest(),
                         len(layer))
    config = json.loads(bb.build_config(layer_d.digest))
    config["config"] = {"Env": [bb.DEFAULT_PATH_ENV], "Entrypoint": ["/bin/sleep"],
                        "Cmd": ["2147483647"]}
    config = json.dumps(config, sort_keys=True).encode()
    config_d = Descriptor(MT_DOCKER_CONFIG, "sha256:" + hashlib.sha256(config).hexdigest(),
                          len(config))
    manifest = manifest_bytes(docker_manifest(config_d, [layer_d]))
    manifest_d = Descriptor(MT_DOCKER_MANIFEST, "sha256:" + hashlib.sha256(manifest).hexdigest(),
                            len(manifest))
    blobs = {layer_d.digest: layer, config_d.digest: config, manifest_d.digest: manifest}
    write_docker_archive(out, [ExportImage((PAUSE,), manifest_d, config_d, (layer_d,))],
                         lambda d: io.BytesIO(blobs[d]), mtime=bb.EPOCH)


class CriDaemon:
    """A CRI runtime on roots of its own: ``kind`` is ``pallet`` or ``containerd``."""

    kind = "pallet"

    def __init__(self, extra_config: str = "", *, portmap: bool = True):
        self.base = tempfile.mkdtemp(prefix="plcri-", dir="/tmp")
        self.address = os.path.join(self.base, "c.sock")
        self.root = os.path.join(self.base, "root")
        self.state = os.path.join(self.base, "state")
        self.log = os.path.join(self.base, "daemon.log")
        self.net = CniNetwork(self.base, portmap=portmap)
        self.cgroup_parent = f"/plcri-{secrets.token_hex(3)}"
        self.log_dir = os.path.join(self.base, "logs")
        self.extra_config = extra_config
        self.proc: subprocess.Popen | None = None
        self.cgroups_before = cgroup_parents()
        self.crictl_config = os.path.join(self.base, "crictl.yaml")
        with open(self.crictl_config, "w") as f:
            f.write(f"runtime-endpoint: unix://{self.address}\n"
                    f"image-endpoint: unix://{self.address}\ntimeout: 60\n")

    # --- processes --------------------------------------------------------------------------
    def config_text(self) -> str:
        return (f'[plugins.api_cri]\n{self.extra_config}\n'
                f'[plugins.api_cri.cni]\nconf_dir = "{self.net.conf_dir}"\n'
                f'bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]\n')

    def command(self) -> list[str]:
        return [os.path.join(VENV_BIN, "pallet-containerd"), "--address", self.address,
                "--root", self.root, "--state", self.state, "-c", self.config_path,
                "--log-level", "debug"]

    def start(self) -> "CriDaemon":
        self.config_path = os.path.join(self.base, "config.toml")
        with open(self.config_path, "w") as f:
            f.write(self.config_text())
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        wait_socket(self.address, self.proc, self.log)
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def restart(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        wait_socket(self.address, self.proc, self.log)

    def import_image(self, tar: str) -> None:
        r = subprocess.run([os.path.join(VENV_BIN, "pallet-ctr"), "-a", self.address, "-n",
                            "k8s.io", "images", "import", tar], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.crictl("rmp", "-f", "-a", check=False, timeout=60)
        finally:
            if self.proc is not None:
                stop_process(self.proc, 20)
            self._kill_leftovers()
            time.sleep(0.2)
            umount_below(self.base)
            self.net.cleanup()
            for d in (self.cgroup_parent,):
                for ctrl in os.listdir("/sys/fs/cgroup"):
                    path = os.path.join("/sys/fs/cgroup", ctrl, d.lstrip("/"))
                    for dirpath, _dirs, _files in os.walk(path, topdown=False):
                        try:
                            os.rmdir(dirpath)
                        except OSError:
                            pass
            remove_new_cgroup_parents(self.cgroups_before)
            shutil.rmtree(self.base, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        pids = set(pids_mentioning(self.base))
        for path in _glob_pids(self.state):
            pids.add(path)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # --- clients -------------------------------------------------------------------------------
    def crictl(self, *args, check: bool = True, input: str | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run([CRICTL, "--config", self.crictl_config, *args], capture_output=True,
                           text=True, input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"crictl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
        return r

    def client(self):
        return CriClient(self.address)

    # --- configs ---------------------------------------------------------------------------------
    def pod_config(self, name: str = "pod", *, pid: int | None = None, **extra) -> dict:
        cfg = {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                            "attempt": 0},
               "hostname": name, "log_directory": os.path.join(self.log_dir, name),
               "linux": {"cgroup_parent": self.cgroup_parent}}
        if pid is not None:
            cfg["linux"]["security_context"] = {"namespace_options": {"pid": pid}}
        _merge(cfg, extra)
        return cfg

    def container_config(self, name: str = "c", command=None, *, image: str = BUSYBOX,
                         **extra) -> dict:
        cfg = {"metadata": {"name": name}, "image": {"image": image},
               "log_path": f"{name}.log", "linux": {}}
        if command is not None:
            cfg["command"] = list(command)
        _merge(cfg, extra)
        return cfg

    def write(self, name: str, obj: dict) -> str:
        path = os.path.join(self.base, name)
        with open(path, "w") as f:
            json.dump(obj, f)
        return path

    def run_pod(self, name: str = "pod", **kw) -> str:
        return self.crictl("runp", self.write(f"{name}.pod.json",
                                              self.pod_config(name, **kw))).stdout.strip()

    def run_container(self, pod_id: str, pod_name: str, name: str, command, *,
                      start: bool = True, pod: dict | None = None, **kw) -> str:
        ctr = self.write(f"{pod_name}-{name}.ctr.json", self.container_config(name, command, **kw))
        podf = self.write(f"{pod_name}.pod.json", pod or self.pod_config(pod_name))
        cid = self.crictl("create", pod_id, ctr, podf).stdout.strip()
        if start:
            self.crictl("start", cid)
        return cid

    def inspect(self, cid: str) -> dict:
        return json.loads(self.crictl("inspect", cid).stdout)

    def inspectp(self, pid: str) -> dict:
        return json.loads(self.crictl("inspectp", pid).stdout)

    def wait_state(self, cid: str, state: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            info = self.inspect(cid)
            if info["status"]["state"] == state or time.monotonic() > deadline:
                return info
            time.sleep(0.05)


class ContainerdCri(CriDaemon):
    """Debian's containerd 1.6 with its CRI plugin, runc and the same CNI plugins."""

    kind = "containerd"

    def config_text(self) -> str:
        self.stream_port = free_port()
        return f'''version = 2
root = "{self.root}"
state = "{self.state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.base}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "{self.stream_port}"
  # the pause container's -998 needs CAP_SYS_RESOURCE, which test machines may lack
  restrict_oom_score_adj = true
  # the pods' network namespaces under this run's state, not /var/run/netns, so that
  # the clean-up of the run's directory takes them too
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{self.net.conf_dir}"
'''

    def command(self) -> list[str]:
        return [CONTAINERD, "--config", self.config_path, "--log-level", "warn"]

    def import_image(self, tar: str) -> None:
        r = subprocess.run([CTR, "--address", self.address, "-n", "k8s.io", "images", "import",
                            tar], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr


def _glob_pids(state: str) -> list[int]:
    import glob

    out = []
    for path in glob.glob(os.path.join(state, "io.containerd.runtime.v2.task", "*", "*",
                                       "shim.pid")) + \
            glob.glob(os.path.join(state, "io.containerd.runtime.v2.task", "*", "*", "init.pid")):
        try:
            with open(path) as f:
                out.append(int(f.read()))
        except (OSError, ValueError):
            pass
    return out


def _merge(into: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


class CriClient:
    """The Python client of the CRI, generated from the same proto."""

    def __init__(self, address: str):
        import grpc

        from pallet.proto.cri.runtime.v1 import api_pb2, api_pb2_grpc

        self.pb = api_pb2
        self.channel = grpc.insecure_channel("unix://" + address)
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def code(self, call, request) -> str:
        """The gRPC status code name of a call that must fail."""
        import grpc

        try:
            call(request, timeout=60)
        except grpc.RpcError as e:
            return e.code().name
        raise AssertionError(f"{call} did not fail")


# --- the benchmark ---------------------------------------------------------------------------------

def _busybox_tar(workdir: str) -> str:
    built = os.path.join(ROOT, "build", "busybox.tar")
    if os.path.exists(built):
        return built
    out = os.path.join(workdir, "busybox.tar")
    subprocess.run([sys.executable, "-m", "pallet.distribution.busybox_image", out],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def _pod_config(pb, d, name: str):
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="bench", uid=f"uid-{name}"),
        hostname=name, log_directory=os.path.join(d.log_dir, name),
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=d.cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(pid=pb.CONTAINER))))


def start_pod(client, d, name: str) -> tuple[str, str]:
    """RunPodSandbox, CreateContainer, StartContainer: a pod with ``sleep`` running."""
    pb = client.pb
    cfg = _pod_config(pb, d, name)
    pod = client.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg),
                                       timeout=120).pod_sandbox_id
    ctr = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="sleeper"), image=pb.ImageSpec(image=BUSYBOX),
        command=["sleep", "100000"], log_path="sleeper.log",
        linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
            namespace_options=pb.NamespaceOption(pid=pb.CONTAINER))))
    cid = client.runtime.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=pod, config=ctr, sandbox_config=cfg), timeout=120).container_id
    client.runtime.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
    return pod, cid


def remove_pod(client, pod: str) -> None:
    pb = client.pb
    client.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=120)
    client.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod),
                                    timeout=120)


def latency(daemons: dict, runs: int) -> dict:
    """Median ms from RunPodSandbox to the container running, runtimes taking turns."""
    clients = {k: d.client() for k, d in daemons.items()}
    samples: dict = {k: [] for k in daemons}
    order = list(daemons)
    for i in range(2 + runs):          # two warm-up rounds
        for kind in (order if i % 2 else order[::-1]):
            t = time.perf_counter()
            pod, _ = start_pod(clients[kind], daemons[kind], f"lat{i}")
            elapsed = (time.perf_counter() - t) * 1000
            remove_pod(clients[kind], pod)
            if i >= 2:
                samples[kind].append(elapsed)
    for c in clients.values():
        c.close()
    return {k: statistics.median(v) for k, v in samples.items()}


def burst(d, count: int, parallel: int) -> tuple[float, list[str]]:
    """Wall seconds to start ``count`` pods ``parallel`` at a time; their ids."""
    client = d.client()
    try:
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            pods = list(pool.map(lambda i: start_pod(client, d, f"burst{i}")[0], range(count)))
        return time.perf_counter() - t, pods
    finally:
        client.close()


# --- memory: what each runtime adds per running pod ---------------------------------------------

def _process_table() -> dict[int, tuple[int, str, str]]:
    """Every process: pid -> (parent pid, comm, command line)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
        out[int(entry)] = (int(stat[stat.rindex(b")") + 2:].split()[1]), comm, cmd)
    return out


def _descendants(table: dict, roots) -> set[int]:
    found, todo = set(), list(roots)
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _c, _cmd) in table.items():
        kids.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        if pid in found or pid not in table:
            continue
        found.add(pid)
        todo += kids.get(pid, [])
    return found


def _status_pids(d, pods: list[str]) -> tuple[set[int], set[int]]:
    """The pods' own processes (pallet's holders, containerd's pause containers)
    and the containers' main processes, as the runtime reports them."""
    client = d.client()
    pb = client.pb
    infra, containers = set(), set()
    try:
        for pod in pods:
            info = client.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(
                pod_sandbox_id=pod, verbose=True)).info.get("info") or "{}"
            if json.loads(info).get("pid"):
                infra.add(int(json.loads(info)["pid"]))
        for c in client.runtime.ListContainers(pb.ListContainersRequest()).containers:
            info = client.runtime.ContainerStatus(pb.ContainerStatusRequest(
                container_id=c.id, verbose=True)).info.get("info") or "{}"
            if json.loads(info).get("pid"):
                containers.add(int(json.loads(info)["pid"]))
    finally:
        client.close()
    return infra, containers


def runtime_processes(d, pods: list[str]) -> dict[str, dict[int, str]]:
    """The runtime's processes by component (pid -> command line):

    * ``daemon``: pallet-containerd or containerd;
    * ``helpers``: processes serving every pod (pallet-shim's zygote);
    * ``shims``: pallet-shim or containerd-shim-runc-v2 processes, one per pod
      or per container, found wherever they are: descendants of the daemon
      or the zygote, or daemonized and reparented (containerd's shims are,
      to init or the nearest subreaper), matched by the runtime's roots or
      socket address in their command line (``-address <socket>``);
    * ``pod``: pallet's namespace holders, containerd's pause containers;
    * ``containers``: the containers' own processes and their descendants,
      the same on both sides and counted on neither.
    """
    table = _process_table()
    infra, containers = _status_pids(d, pods) if pods else (set(), set())
    roots = {d.proc.pid} | {pid for pid, (_p, _c, cmd) in table.items()
                            if d.base in cmd and pid != os.getpid()}
    ours = _descendants(table, roots)
    in_containers = _descendants(table, containers)
    out: dict[str, dict[int, str]] = {k: {} for k in
                                      ("daemon", "helpers", "shims", "pod", "containers")}
    for pid in ours:
        _ppid, comm, cmd = table[pid]
        if pid == d.proc.pid:
            kind = "daemon"
        elif pid in infra:
            kind = "pod"
        elif pid in in_containers:
            kind = "containers"
        elif comm.startswith("containerd-shim") or (cmd.startswith("pallet-shim")
                                                    and " zygote " not in cmd + " "):
            kind = "shims"
        else:
            kind = "helpers"
        out[kind][pid] = cmd or comm
    return out


def _pss_total(pids) -> int:
    total = 0
    for pid in pids:
        try:
            total += pss_kib(pid)
        except OSError:
            pass   # gone meanwhile
    return total


def shared_pss(procs: dict[str, dict[int, str]]) -> int:
    """PSS KiB of the processes every pod shares (the daemon, the zygote) now."""
    return _pss_total([*procs["daemon"], *procs["helpers"]])


def memory(d, pods: list[str], shared_before: int) -> dict:
    """PSS per running pod, by component, with ``pods`` running;
    ``shared_before`` is :func:`shared_pss` before they started.

    The per-pod processes (shims, holders or pause containers) are summed;
    the processes every pod shares (the daemon, the zygote) count with what
    they grew by.  Forked shims share pages with the zygote, and PSS splits
    those among them, so only the sum of both is meaningful: it is what the
    ``shared growth`` adds to the shims' own figure."""
    procs = runtime_processes(d, pods)
    n = len(pods)
    shared_now = shared_pss(procs)
    parts = {"shims": _pss_total(procs["shims"]) / n, "pod": _pss_total(procs["pod"]) / n,
             "shared growth": (shared_now - shared_before) / n}
    return {"per_pod": sum(parts.values()), "parts": parts,
            "counts": {k: len(v) for k, v in procs.items()},
            "containers_not_counted": _pss_total(procs["containers"]) / n,
            "examples": {k: sorted(set(v.values()))[:2] for k, v in procs.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="latency samples per runtime (>= 15)")
    ap.add_argument("--pods", type=int, default=30, help="pods of the burst and the memory")
    ap.add_argument("--parallel", type=int, default=4, help="pods started at a time")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/cri.py needs root", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="plcri-bench-", dir="/tmp")
    daemons = {"pallet": CriDaemon(), "containerd": ContainerdCri()}
    try:
        pause = os.path.join(work, "pause.tar")
        pause_archive(pause)
        for d in daemons.values():
            d.start()
            d.import_image(_busybox_tar(work))
        daemons["containerd"].import_image(pause)
        figures: dict = {"latency_ms": latency(daemons, max(args.runs, 15))}
        figures["burst_s"], figures["pss_kib_per_pod"] = {}, {}
        mem: dict = {}
        for kind, d in daemons.items():
            time.sleep(2)   # the latency rounds' processes gone, the rest settled
            before = shared_pss(runtime_processes(d, []))
            seconds, pods = burst(d, args.pods, args.parallel)
            figures["burst_s"][kind] = seconds
            time.sleep(2)   # let the processes settle before their memory is read
            merged = settle_merging()
            mem[kind] = memory(d, pods, before)
            mem[kind]["ksm"] = {"run": ksm_value("run"), "waited_s": round(merged, 1)}
            figures["pss_kib_per_pod"][kind] = mem[kind]["per_pod"]
            d.crictl("rmp", "-f", "-a", check=False, timeout=300)
        ratios = {k: figures[k]["pallet"] / figures[k]["containerd"] for k in figures}
        targets = {"latency_ms": 0.5, "pss_kib_per_pod": 0.5}
        out = {"figures": figures, "ratios": ratios, "targets": targets,
               "memory": mem, "runs": max(args.runs, 15), "pods": args.pods,
               "parallel": args.parallel}
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            names = {"latency_ms": "RunPodSandbox to container running, median ms",
                     "burst_s": f"{args.pods} pods, {args.parallel} at a time, s",
                     "pss_kib_per_pod": "memory per running pod, PSS KiB"}
            for k, label in names.items():
                f = figures[k]
                print(f"{label:48} pallet {f['pallet']:9.1f}  containerd {f['containerd']:9.1f}"
                      f"  ratio {ratios[k]:.2f}"
                      + (f" (target <= {targets[k]})" if k in targets else " (no target)"))
            for kind, m in mem.items():
                ksm = m["ksm"]
                print(f"  {kind:10} read with the kernel's same-page merging "
                      + (f"running, after {ksm['waited_s']:.1f} s of it" if ksm["run"] == "1"
                         else "stopped"))
                parts = ", ".join(f"{k} {v:.1f}" for k, v in m["parts"].items())
                counts = ", ".join(f"{k} {v}" for k, v in m["counts"].items())
                print(f"  {kind:10} per pod: {parts} KiB; processes: {counts}; "
                      f"containers' own (not counted) {m['containers_not_counted']:.1f} KiB")
                for k, cmds in m["examples"].items():
                    if cmds and k != "containers":
                        print(f"    {k:10} e.g. {cmds[0][:110]}")
        return 0
    finally:
        for d in daemons.values():
            d.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
