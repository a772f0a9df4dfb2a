"""palletd under test: its own short roots and socket, busybox loaded, driven by
the unmodified docker CLI and docker-py; stopped by pid and cleaned up (its
containers, children, mounts, cgroups) even when a test fails.

``PALLET_API_CONTAINERD=real`` runs palletd against Debian's containerd 1.6
(``palletd --containerd``) instead of letting it start pallet-containerd:
the same tests then prove palletd's containerd client on the real thing.
``PALLET_API_PALLETD`` replaces the palletd command (a development harness).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
DOCKER = shutil.which("docker", path="/usr/local/bin:/usr/bin") or "docker"
CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"


def _wait_socket(path: str, proc: subprocess.Popen, log: str, timeout: float = 60) -> None:
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


def _pids_mentioning(text: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.append(int(entry))
        except OSError:
            pass
    return out


def _stop_pid(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _umount_below(root: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for p in sorted((p for p in points if p == root or p.startswith(root + "/")),
                    key=len, reverse=True):
        subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL)


def _remove_cgroups(ids: list[str]) -> None:
    """Container cgroups (``/pallet/<id>`` or containerd's) left behind, by id."""
    if not ids:
        return
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup", topdown=False):
        if os.path.basename(dirpath) in ids:
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


class Palletd:
    """One palletd with its own roots: ``docker(...)``, ``api(...)``, ``client()``."""

    def __init__(self, mode: str):
        self.mode = mode
        self.root = tempfile.mkdtemp(prefix="pa-", dir="/tmp")
        self.data_root = os.path.join(self.root, "d")
        self.exec_root = os.path.join(self.root, "r")
        self.sock = os.path.join(self.root, "p.sock")
        self.log_path = os.path.join(self.root, "palletd.log")
        self.proc: subprocess.Popen | None = None
        self.containerd: subprocess.Popen | None = None
        self.containerd_sock = os.path.join(self.root, "c.sock")
        self.known_ids: set[str] = set()

    @property
    def env(self) -> dict:
        return dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")

    # --- processes ------------------------------------------------------------
    def _start_real_containerd(self) -> None:
        croot = os.path.join(self.root, "c")
        os.makedirs(croot, exist_ok=True)
        cfg = os.path.join(croot, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{croot}/root"\nstate = "{croot}/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.containerd_sock}"\n')
        log = open(os.path.join(self.root, "containerd.log"), "wb")
        self.containerd = subprocess.Popen([CONTAINERD, "--config", cfg], stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        _wait_socket(self.containerd_sock, self.containerd, log.name)

    def start(self) -> "Palletd":
        if self.mode == "real" and self.containerd is None:
            self._start_real_containerd()
        cmd = shlex.split(os.environ.get("PALLET_API_PALLETD", "")) or \
            [os.path.join(VENV_BIN, "palletd")]
        args = ["-H", f"unix://{self.sock}", "--data-root", self.data_root,
                "--exec-root", self.exec_root, "--debug"]
        if self.mode == "real":
            args += ["--containerd", self.containerd_sock]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd + args, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        _wait_socket(self.sock, self.proc, self.log_path)
        return self

    def stop_daemon(self) -> None:
        """Stop palletd only (SIGTERM, by pid), leaving its containers running."""
        if self.proc is not None:
            _stop_pid(self.proc)

    def restart_containerd(self) -> None:
        """Kill the containerd palletd talks to (SIGKILL, by pid) and have it back:
        palletd's supervisor restarts pallet-containerd; the real one we restart."""
        if self.mode == "real":
            self.containerd.kill()
            self.containerd.wait(10)
            self.containerd = None
            self._start_real_containerd()
            return
        pidfile = os.path.join(self.exec_root, "containerd", "pallet-containerd.pid")
        with open(pidfile) as f:
            old = int(f.read().strip())
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with open(pidfile) as f:
                    new = int(f.read().strip() or 0)
            except (OSError, ValueError):
                new = 0
            if new and new != old:
                sock = os.path.join(self.exec_root, "containerd", "containerd.sock")
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(sock)
                    return
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.05)
        raise AssertionError("pallet-containerd was not restarted")

    def cleanup(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                r = self.docker("ps", "-aq", "--no-trunc", check=False, timeout=20)
                ids = r.stdout.decode().split()
                self.known_ids.update(ids)
                if ids:
                    self.docker("rm", "-f", *ids, check=False, timeout=60)
        finally:
            if self.proc is not None:
                _stop_pid(self.proc)
            if self.containerd is not None:
                _stop_pid(self.containerd)
            for pid in _pids_mentioning(self.root):  # shims, pallet-containerd: ours only
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
            _umount_below(self.root)
            _remove_cgroups(sorted(self.known_ids))
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    # --- clients --------------------------------------------------------------
    def docker(self, *args: str, check: bool = True, timeout: float = 60,
               input: bytes | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run([DOCKER, *args], env=self.env, input=input, capture_output=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {r.returncode}: "
                                 f"{r.stderr.decode(errors='replace')}")
        if args and args[0] in ("run", "create") and r.returncode == 0:
            out = r.stdout.decode().strip()
            if len(out) == 64:
                self.known_ids.add(out)
        return r

    def api(self, method: str, path: str, body=None, *, raw: bytes | None = None,
            headers: dict | None = None, timeout: float = 30):
        """A raw HTTP request on the socket: ``(status, headers, body bytes)``."""
        import http.client

        class Conn(http.client.HTTPConnection):
            def connect(conn):
                conn.sock = socket.socket(socket.AF_UNIX)
                conn.sock.settimeout(timeout)
                conn.sock.connect(self.sock)

        c = Conn("localhost")
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        c.request(method, path, body=data, headers=hdrs)
        r = c.getresponse()
        out = (r.status, dict(r.getheaders()), r.read())
        c.close()
        return out

    def client(self):
        import docker

        return docker.DockerClient(base_url=f"unix://{self.sock}", version="1.43", timeout=60)


def _mode() -> str:
    return os.environ.get("PALLET_API_CONTAINERD", "pallet")


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory) -> str:
    """The built-in busybox image as a docker-save tarball."""
    out = str(tmp_path_factory.mktemp("api-image") / "busybox.tar")
    subprocess.run([sys.executable, "-m", "pallet.plugins.store_overlay.builtin", out],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def palletd(busybox_tar):
    """One palletd per test module, busybox loaded."""
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    d = Palletd(_mode())
    try:
        d.start()
        r = d.docker("load", "-i", busybox_tar)
        assert b"Loaded image: busybox:latest" in r.stdout, r
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def fresh_palletd(busybox_tar):
    """A palletd of its own for tests that stop or restart it."""
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    d = Palletd(_mode())
    try:
        d.start()
        d.docker("load", "-i", busybox_tar)
        yield d
    finally:
        d.cleanup()
