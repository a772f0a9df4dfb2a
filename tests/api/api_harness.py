"""palletd under test (see conftest.py): the bench's Pallet engine, plus raw
API calls, docker-py, a real-containerd mode and containerd restarts."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time

from engines import DOCKER_CLI, Pallet, stop_process, wait_socket

CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"


class Palletd(Pallet):
    """One palletd with its own roots: ``docker(...)``, ``api(...)``, ``client()``.

    ``mode`` "real" runs it against Debian's containerd 1.6 (``--containerd``)."""

    def __init__(self, mode: str, config: str = ""):
        super().__init__("--debug", config=config)
        self.mode = mode
        self.log_path = self.log.name
        self.containerd: subprocess.Popen | None = None
        self.containerd_sock = os.path.join(self.root, "c.sock")

    def command(self) -> list[str]:
        cmd = super().command()
        if self.mode == "real":
            cmd += ["--containerd", self.containerd_sock]
        # PALLET_API_PALLETD replaces the palletd command (a development harness)
        return shlex.split(os.environ.get("PALLET_API_PALLETD", "")) + cmd[1:] \
            if os.environ.get("PALLET_API_PALLETD") else cmd

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
        wait_socket(self.containerd_sock, self.containerd, log.name)

    def start(self) -> "Palletd":
        if self.mode == "real" and self.containerd is None:
            self._start_real_containerd()
        super().start()
        # the socket is bound before pallet-containerd is up: wait for an answer
        status = self.api("GET", "/_ping", timeout=120)[0]
        assert status == 200, f"palletd _ping answered {status}"
        return self

    def stop_daemon(self) -> None:
        """Stop palletd only (SIGTERM, by pid), leaving its containers running."""
        if self.proc is not None:
            stop_process(self.proc, 20)

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
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(os.path.join(self.exec_root, "containerd", "containerd.sock"))
                    return
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.05)
        raise AssertionError("pallet-containerd was not restarted")

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            if self.containerd is not None:
                stop_process(self.containerd, 20)

    def log_text(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    # --- clients --------------------------------------------------------------
    def docker(self, *args: str, check: bool = True, timeout: float = 60,
               input: bytes | None = None, capture: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([DOCKER_CLI, *args], env=self.env, input=input, capture_output=True,
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
