"""Helpers of the containerd tests (importable by name: tests/containerd is on sys.path):
daemons on their own short roots, stopped by pid with everything they started."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

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
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)  # accepting, not a stale file of a killed daemon
            return
        except OSError:
            pass
        finally:
            s.close()
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
            _stop(self.proc)
        # shims started for this daemon carry its address on their command line, or
        # (forked by the zygote) left their pid in its bundles; the zygote names its state
        for pid in set(_pids_with_arg(self.address) + shims + _pids_with_arg(self.state)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
        _unmount_under(self.base)
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
        _wait_socket(self.address, self.proc, self.log)




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
