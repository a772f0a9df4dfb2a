"""Fixtures of the containerd tests: Debian's real containerd 1.6 and pallet-containerd,
each on its own short roots, stopped by pid and cleaned up even when a test fails."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
CTR = shutil.which("ctr") or "/usr/bin/ctr"
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))


def _unmount_under(root: str) -> None:
    """Lazily unmount whatever is still mounted below ``root`` (deepest first)."""
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
    except OSError:
        return
    for p in sorted((p for p in points if p == root or p.startswith(root + "/")),
                    key=len, reverse=True):
        subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL)


def _pids_with_arg(text: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.append(int(d))
        except OSError:
            pass
    return out


def _stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_socket(path: str, proc: subprocess.Popen, log: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(log) as f:
        tail = f.read()[-3000:]
    raise RuntimeError(f"daemon did not create {path}; log:\n{tail}")


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

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
        # shims started for this daemon carry its address on their command line
        for pid in _pids_with_arg(self.address):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def real_containerd():
    """Debian's containerd 1.6 with its own root, state, socket and config."""
    if os.geteuid() != 0 or not os.path.exists(CONTAINERD):
        pytest.skip("needs root and /usr/bin/containerd")
    base = tempfile.mkdtemp(prefix="pl-", dir="/tmp")
    d = Daemon(base, os.path.join(base, "c.sock"), os.path.join(base, "root"),
               os.path.join(base, "state"))
    config = os.path.join(base, "config.toml")
    with open(config, "w") as f:
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
  path = "{base}/opt"
''')
    try:
        with open(d.log, "w") as log:
            d.proc = subprocess.Popen([CONTAINERD, "--config", config, "--log-level", "warn"],
                                      stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_socket(d.address, d.proc, d.log)
        yield d
    finally:
        d.stop()


@pytest.fixture
def pallet_containerd():
    """pallet-containerd with its own root, state and socket."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = tempfile.mkdtemp(prefix="pl-", dir="/tmp")
    d = Daemon(base, os.path.join(base, "p.sock"), os.path.join(base, "root"),
               os.path.join(base, "state"))
    try:
        with open(d.log, "w") as log:
            d.proc = subprocess.Popen(
                [os.path.join(VENV_BIN, "pallet-containerd"), "--address", d.address,
                 "--root", d.root, "--state", d.state, "--log-level", "debug"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        _wait_socket(d.address, d.proc, d.log)
        yield d
    finally:
        d.stop()


@pytest.fixture(params=["real", "pallet"])
def any_containerd(request):
    """Each test runs against the real containerd and against pallet-containerd."""
    name = "real_containerd" if request.param == "real" else "pallet_containerd"
    return request.getfixturevalue(name)
