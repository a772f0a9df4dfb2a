"""Helpers of the CRI tests: pallet-containerd with api_cri, Debian's
containerd 1.6 with its CRI plugin, both on roots, sockets, bridges,
subnets and cgroup parents of their own, driven by crictl
(``../shared/tools/crictl``) and by a Python client generated from the same
proto.  Everything they start is stopped by pid, and what they leave (pods'
namespaces, mounts, bridges, nat chains, cgroups) removed, even when a
test fails.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "cni"))

from cni_helpers import Network  # noqa: E402
from engines import (pids_mentioning, remove_new_cgroup_parents, cgroup_parents,  # noqa: E402
                     stop_process, umount_below, wait_socket)

VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
CRICTL = os.path.join(REPO, "..", "shared", "tools", "crictl")
if not os.path.exists(CRICTL):
    CRICTL = "/work/shared/tools/crictl"
CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
CTR = shutil.which("ctr") or "/usr/bin/ctr"
BUSYBOX = "docker.io/library/busybox:latest"
PAUSE = "docker.io/pallet/pause:test"

needs_root = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
needs_crictl = pytest.mark.skipif(not os.access(CRICTL, os.X_OK), reason="needs crictl")
needs_containerd = pytest.mark.skipif(not os.path.exists(CONTAINERD), reason="needs containerd")


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
        self.net = Network(self.base, portmap=portmap)
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
