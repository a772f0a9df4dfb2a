"""Helpers of the containerd tests (importable by name: tests/containerd is on sys.path):
daemons on their own short roots, stopped by pid with everything they started."""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from engines import pids_mentioning, stop_process, umount_below, wait_socket  # bench/

CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
CTR = shutil.which("ctr") or "/usr/bin/ctr"
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
#: pallet's runtime name: pallet-containerd runs it with pallet-shim (runc's name,
#: io.containerd.runc.v2, runs containerd's runc shim, as in containerd)
PALLET_RUNTIME = "io.containerd.pallet.v2"


class Daemon:
    """A started daemon: its address, roots, process and log path."""

    def __init__(self, base: str, address: str, root: str, state: str):
        self.base, self.address, self.root, self.state = base, address, root, state
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(base, "daemon.log")

    def ctr(self, *args, namespace: str = "default", check: bool = True) -> str:
        r = subprocess.run([CTR, "--address", self.address, "--namespace", namespace, *args],
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r.stdout if check else r

    def shim_pids(self) -> list[int]:
        out = []
        for path in glob.glob(os.path.join(self.state, "io.containerd.runtime.v2.task", "*", "*",
                                           "shim.pid")):
            try:
                with open(path) as f:
                    out.append(int(f.read()))
            except (OSError, ValueError):
                pass
        return out

    def stop(self) -> None:
        shims = self.shim_pids()
        if self.proc is not None:
            stop_process(self.proc, 10)
        # shims started for this daemon carry its address on their command line, or
        # (forked by the zygote) left their pid in its bundles; the zygote names its state
        for pid in set(pids_mentioning(self.address) + shims + pids_mentioning(self.state)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
        umount_below(self.base)
        shutil.rmtree(self.base, ignore_errors=True)

    def restart(self, *extra) -> None:
        """Start pallet-containerd again on the same roots (after it was stopped or killed)."""
        log = open(self.log, "a")
        self.proc = subprocess.Popen(
            [os.path.join(VENV_BIN, "pallet-containerd"), "--address", self.address,
             "--root", self.root, "--state", self.state, "--log-level", "debug", *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        wait_socket(self.address, self.proc, self.log)


def minimal_spec(cid: str, args: list[str]) -> dict:
    """An OCI spec that runc and runtime_ns both accept, rootfs from the task mounts."""
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/bin"], "cwd": "/",
                    "capabilities": {k: ["CAP_KILL", "CAP_CHOWN"] for k in
                                     ("bounding", "effective", "permitted")},
                    "noNewPrivileges": True},
        "root": {"path": "rootfs"},
        "hostname": cid[:12],
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
                  "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]},
    }


def real_containerd_config(d: Daemon) -> str:
    """A config.toml for Debian's containerd on ``d``'s roots and address (no CRI, no
    debug or metrics listener, the snapshotters this machine cannot load disabled)."""
    path = os.path.join(d.base, "config.toml")
    with open(path, "w") as f:
        f.write(f'''version = 2
root = "{d.root}"
state = "{d.state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d.address}"
[ttrpc]
  address = "{d.address}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d.base}/opt"
''')
    return path


def start_real_containerd() -> Daemon:
    """Debian's containerd 1.6 on roots, socket and config of its own (``stop()`` it)."""
    base = tempfile.mkdtemp(prefix="pl-", dir="/tmp")
    d = Daemon(base, os.path.join(base, "c.sock"), os.path.join(base, "root"),
               os.path.join(base, "state"))
    config = real_containerd_config(d)
    try:
        with open(d.log, "w") as log:
            d.proc = subprocess.Popen([CONTAINERD, "--config", config, "--log-level", "warn"],
                                      stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        wait_socket(d.address, d.proc, d.log)
    except BaseException:
        d.stop()
        raise
    return d


def start_pallet_containerd(*extra: str) -> Daemon:
    """pallet-containerd on roots and a socket of its own (``stop()`` it)."""
    base = tempfile.mkdtemp(prefix="pl-", dir="/tmp")
    d = Daemon(base, os.path.join(base, "p.sock"), os.path.join(base, "root"),
               os.path.join(base, "state"))
    try:
        with open(d.log, "w") as log:
            d.proc = subprocess.Popen(
                [os.path.join(VENV_BIN, "pallet-containerd"), "--address", d.address,
                 "--root", d.root, "--state", d.state, "--log-level", "debug", *extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        wait_socket(d.address, d.proc, d.log)
    except BaseException:
        d.stop()
        raise
    return d


def pallet_ctr(address: str, *args, namespace: str = "default", input: bytes | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """Run pallet-ctr against ``address`` (bytes in, bytes out)."""
    return subprocess.run([os.path.join(VENV_BIN, "pallet-ctr"), "-a", address, "-n", namespace,
                           *args], capture_output=True, input=input, timeout=timeout)


def ctr(address: str, *args, namespace: str = "default", input: bytes | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Debian's ctr against ``address`` (bytes in, bytes out)."""
    return subprocess.run([CTR, "--address", address, "--namespace", namespace, *args],
                          capture_output=True, input=input, timeout=timeout)


def ok(r: subprocess.CompletedProcess) -> str:
    """The output of a command that must have succeeded."""
    assert r.returncode == 0, (r.returncode, r.stderr.decode(errors="replace"))
    return r.stdout.decode()


@contextlib.contextmanager
def serving(engine, image_tar: str):
    """A started bench engine (palletd) with the image archive loaded; stopped after."""
    try:
        engine.start()
        engine.docker("load", "-i", image_tar)
        yield engine
    finally:
        engine.stop()


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def pid_exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def wait_for(cond, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(step)
    return cond()


def mounted_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]
