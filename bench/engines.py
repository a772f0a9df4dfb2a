"""Start pallet and the real Docker side by side, each with its own roots.

Used by the benchmarks (and usable from tests): both engines are driven by the
same docker CLI through their own unix sockets, and stopped by their pids.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
DOCKER_CLI = shutil.which("docker", path="/usr/local/bin:/usr/bin") or "docker"


def _wait_socket(path: str, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    raise RuntimeError(f"{what} did not answer on {path}")


def _umount_below(root: str) -> None:
    """Lazily unmount everything still mounted below ``root`` (deepest first)."""
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(root + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)


class Engine:
    """One running engine: its socket, its docker CLI environment, its pids."""

    name = "engine"

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix=f"pb-{self.name[:2]}-", dir="/tmp")
        self.sock = os.path.join(self.root, "e.sock")
        self.proc: subprocess.Popen | None = None
        self.log = open(os.path.join(self.root, "daemon.log"), "wb")

    @property
    def env(self) -> dict:
        return dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               capture: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER_CLI, *args], env=self.env, check=check, input=input,
                              stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                              stderr=subprocess.PIPE if capture else subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stop_children()
        _umount_below(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def _stop_children(self) -> None:
        pass


class Pallet(Engine):
    name = "pallet"

    def __init__(self, *extra_args: str) -> None:
        super().__init__()
        self.extra_args = list(extra_args)

    def start(self) -> "Pallet":
        data, run = os.path.join(self.root, "d"), os.path.join(self.root, "r")
        self.data_root, self.exec_root = data, run
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.proc = subprocess.Popen(
            [os.path.join(VENV_BIN, "palletd"), "-H", f"unix://{self.sock}",
             "--data-root", data, "--exec-root", run, *self.extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        _wait_socket(self.sock, self.proc, "palletd")
        return self

    def _stop_children(self) -> None:
        # pallet-containerd and shims left behind (palletd stops them in order;
        # this is the safety net for a failed run): only pids under our roots
        for pid in _pids_mentioning(self.root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
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
             "--bridge=none", "--iptables=false", "--ip-masq=false"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_socket(self.sock, self.proc, "dockerd")
        return self

    def _stop_children(self) -> None:
        for pid in _pids_mentioning(self.root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _pids_mentioning(root: str) -> list[int]:
    """Pids whose command line names a path under ``root`` (our own children only)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if root.encode() in cmd and int(entry) != os.getpid():
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
