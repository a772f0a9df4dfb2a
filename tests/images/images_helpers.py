"""palletd for the image tests: its own roots, socket and client config
directory (``DOCKER_CONFIG`` and ``PALLET_CONFIG``, so that ``login`` never
touches the machine's), driven by the docker CLI, the pallet CLI and raw
HTTP; killed and restarted by pid.  Registries come from
``tests/registry/registry_helpers.py`` (Debian's docker-registry on
127.0.0.1, its own port, stopped by pid)."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "registry"))

from engines import DOCKER_CLI, VENV_BIN, Pallet  # noqa: E402
from registry_helpers import (USERS, Proxy, RegistryServer, oci_image,  # noqa: E402,F401
                              oci_layout, skopeo, skopeo_copy)

PALLET_CLI = os.path.join(VENV_BIN, "pallet")
PALLET_CTR = os.path.join(VENV_BIN, "pallet-ctr")


class ImagePalletd(Pallet):
    """One palletd; ``docker(...)``, ``pallet(...)``, ``api(...)``, ``kill9()``, ``restart()``."""

    def __init__(self):
        super().__init__("--debug")
        self.config_dir = os.path.join(self.root, "cfg")

    @property
    def env(self) -> dict:
        return dict(os.environ, DOCKER_HOST=f"unix://{self.sock}", DOCKER_CONFIG=self.config_dir,
                    PALLET_HOST=f"unix://{self.sock}", PALLET_CONFIG=self.config_dir)

    def start(self) -> "ImagePalletd":
        super().start()
        deadline = time.monotonic() + 120
        while True:  # the socket is bound before pallet-containerd answers
            try:
                if self.api("GET", "/_ping", timeout=5)[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"palletd did not answer: {self.log_text()[-3000:]}")
            time.sleep(0.1)

    def log_text(self) -> str:
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def _run(self, argv, check, input, timeout):
        r = subprocess.run(argv, env=self.env, input=input, capture_output=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {r.returncode}: "
                                 f"{r.stdout.decode(errors='replace')}"
                                 f"{r.stderr.decode(errors='replace')}")
        return r

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               capture: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        r = self._run([DOCKER_CLI, *args], check, input, timeout)
        if args and args[0] in ("run", "create") and r.returncode == 0:
            out = r.stdout.decode().strip()
            if len(out) == 64:
                self.known_ids.add(out)
        return r

    def pallet(self, *args: str, check: bool = True, input: bytes | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
        return self._run([PALLET_CLI, *args], check, input, timeout)

    def ctr(self, *args: str, namespace: str = "moby") -> str:
        sock = os.path.join(self.exec_root, "containerd", "containerd.sock")
        return self._run([PALLET_CTR, "-a", sock, "-n", namespace, *args], True, None, 60) \
            .stdout.decode()

    def api(self, method: str, path: str, body=None, *, headers: dict | None = None,
            raw: bytes | None = None, timeout: float = 60):
        """A raw HTTP request: ``(status, headers, body bytes)``."""
        sock_path = self.sock

        class Conn(http.client.HTTPConnection):
            def connect(conn):
                conn.sock = socket.socket(socket.AF_UNIX)
                conn.sock.settimeout(timeout)
                conn.sock.connect(sock_path)
        c = Conn("localhost")
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        try:
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def kill9(self) -> None:
        """SIGKILL palletd (by pid); pallet-containerd and the shims stay."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def restart(self) -> "ImagePalletd":
        return self.start()

    def data(self, *parts: str) -> str:
        return os.path.join(self.data_root, "containerd", *parts)

    def blobs(self) -> set[str]:
        d = self.data("io.containerd.content.v1.content", "blobs", "sha256")
        try:
            return set(os.listdir(d))
        except FileNotFoundError:
            return set()

    def snapshots(self) -> list[str]:
        lines = self.ctr("snapshots", "ls").splitlines()[1:]
        return [line.split()[0] for line in lines if line.strip()]


def image_ids(engine, *args) -> list[str]:
    out = engine.docker("images", "-q", "--no-trunc", *args).stdout.decode().split()
    return sorted(set(out))


def wait_for(cond, timeout: float = 30, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    return cond()


def random_image(base: str, layers: int, per_layer: int, tag: str = "v1") -> str:
    """An OCI layout: busybox, then layers of random (incompressible) data; its path."""
    from registry_helpers import busybox_files
    layout = os.path.join(base, f"layout-{tag}")
    files = [busybox_files()] + [{f"data/l{i}/blob": os.urandom(per_layer)}
                                 for i in range(layers)]
    desc = oci_image(layout, files, compression="gzip")
    oci_layout(layout, [desc], tag)
    return layout
