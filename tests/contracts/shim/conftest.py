"""Fixtures of the shim contract tests: each shim binary started as containerd
starts it, in a bundle of containerd's layout under a state directory of its
own, with an event sink standing for containerd's ttrpc endpoint.

The shims: pallet-shim (installed as ``containerd-shim-pallet-v2``) and
Debian's ``containerd-shim-runc-v2``; ``PALLET_CONTRACT_SHIMS=path[,path]``
names others (a third-party shim runs the same tests).  Everything a test
starts is stopped by pid, its cgroups, mounts and runc state removed, even
when it fails.
"""
from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "shim"))

from shimtest_util import (EventSink, make_busybox_rootfs, pid_alive,  # noqa: E402
                           remove_cgroups, runc_like_spec, umount_below, wait_gone)

VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
TASK = "containerd.task.v2.Task"
TASK_DIR = "io.containerd.runtime.v2.task"
RUNC_ROOT = "/run/containerd/runc"   # containerd's runc shim keeps runc's state here


def shim_binaries() -> list[str]:
    """The shims under test: pallet's and containerd's runc shim, or those named."""
    named = os.environ.get("PALLET_CONTRACT_SHIMS")
    if named:
        return [p for p in named.split(",") if p]
    return [os.path.join(VENV_BIN, "containerd-shim-pallet-v2"),
            shutil.which("containerd-shim-runc-v2") or "/usr/bin/containerd-shim-runc-v2"]


@pytest.fixture(scope="session")
def rootfs():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = tempfile.mkdtemp(prefix="pl-csr-", dir="/tmp")
    path = os.path.join(base, "rootfs")
    make_busybox_rootfs(path)
    yield path
    shutil.rmtree(base, ignore_errors=True)


class Shims:
    """One test's shims: bundles, started shims, clients, events, cleanup."""

    def __init__(self, binary: str, rootfs: str, base: str):
        self.binary = binary
        self.rootfs = rootfs
        self.base = base
        self.namespace = "ct" + secrets.token_hex(3)
        self.state = os.path.join(base, "state")
        # containerd's address as the shims are told it; its ".ttrpc" is the sink
        self.address = os.path.join(base, "c.sock")
        self.events = EventSink(self.address + ".ttrpc")
        self.started: list[tuple[str, str]] = []    # (id, bundle)
        self.pids: list[int] = []                   # of the shims, to stop them at the end
        self.clients: list = []
        self.cgroups: list[str] = []
        self.logs: dict[str, bytearray] = {}

    def _read_log(self, id: str, bundle: str) -> None:
        """The bundle's ``log`` FIFO, which containerd makes and reads (a shim
        writes its log there, and containerd's runc shim needs it)."""
        path = os.path.join(bundle, "log")
        os.mkfifo(path, 0o700)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        buf = self.logs[id] = bytearray()

        def copy():
            try:
                while True:
                    select.select([fd], [], [])
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        return
                    buf.extend(chunk)
            finally:
                os.close(fd)
        threading.Thread(target=copy, daemon=True).start()

    def bundle(self, id: str, args, *, cgroup: bool = False, **spec_kw) -> str:
        """A bundle of containerd's layout; its rootfs comes as a Create mount."""
        bundle = os.path.join(self.state, TASK_DIR, self.namespace, id)
        os.makedirs(os.path.join(bundle, "rootfs"))
        if cgroup:
            spec_kw["cgroup"] = f"/pallet-shim-contract/{self.namespace}-{id}"
            self.cgroups.append(spec_kw["cgroup"])
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(runc_like_spec(args, **spec_kw), f)
        self._read_log(id, bundle)
        return bundle

    def rootfs_mounts(self) -> list:
        from pallet.proto.containerd.types import mount_pb2

        return [mount_pb2.Mount(type="bind", source=self.rootfs, options=["rbind", "ro"])]

    def env(self) -> dict:
        return dict(os.environ, TTRPC_ADDRESS=self.address + ".ttrpc",
                    GRPC_ADDRESS=self.address, NAMESPACE=self.namespace)

    def argv(self, id: str, *verb, bundle: str | None = None) -> list[str]:
        argv = [self.binary, "-namespace", self.namespace, "-id", id, "-address", self.address]
        if bundle:
            argv += ["-bundle", bundle]
        return argv + ["-publish-binary", "containerd", *verb]

    def start(self, id: str, bundle: str) -> str:
        """The start verb, as containerd runs it: in the bundle; its address."""
        r = subprocess.run(self.argv(id, "start"), cwd=bundle, env=self.env(),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        self.started.append((id, bundle))
        out = r.stdout.decode().strip()
        if out.startswith("{"):  # shim API v3 bootstrap parameters
            out = json.loads(out)["address"]
        return out

    def connect(self, address: str):
        from pallet.ttrpc import protocol as ttrpc

        c = ttrpc.Client(address, metadata=(("containerd-namespace-ttrpc", self.namespace),))
        self.clients.append(c)
        self.pids.append(self.shim_pid(c))
        return c

    def shim_pid(self, client) -> int:
        """The shim's pid, as it tells it (Connect)."""
        from pallet.proto.containerd.task.v2 import shim_pb2

        r = client.call(TASK, "Connect", shim_pb2.ConnectRequest(), shim_pb2.ConnectResponse,
                        timeout=10)
        return r.shim_pid

    def delete_verb(self, id: str, bundle: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(id, "delete", bundle=bundle), cwd=bundle,
                              env=self.env(), stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=60)

    def cleanup(self) -> None:
        for c in self.clients:
            c.close()
        for pid in self.pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 5)
        for id, bundle in self.started:
            if os.path.isdir(bundle):
                self.delete_verb(id, bundle)  # kills what is left, removes runc's state
            subprocess.run(["runc", "--root", os.path.join(RUNC_ROOT, self.namespace),
                            "delete", "--force", id], capture_output=True)
        shutil.rmtree(os.path.join(RUNC_ROOT, self.namespace), ignore_errors=True)
        self.events.close()
        umount_below(self.base)
        remove_cgroups(self.cgroups)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(params=shim_binaries(), ids=lambda p: os.path.basename(p))
def shims(request, rootfs):
    binary = request.param
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} is not installed")
    base = tempfile.mkdtemp(prefix="pl-cs-", dir="/tmp")
    s = Shims(binary, rootfs, base)
    try:
        yield s
    finally:
        s.cleanup()
