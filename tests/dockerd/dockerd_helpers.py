"""Raw requests and clients for the dockerd side of the comparisons (the
palletd side is tests/api's ``Palletd``, which has the same methods)."""
from __future__ import annotations

import json
import socket
import subprocess

from engines import DOCKER_CLI, Docker


class RealDocker(Docker):
    """bench's Docker engine with tests/api's ``docker``/``api``/``client``."""

    def docker(self, *args: str, check: bool = True, timeout: float = 60,
               input: bytes | None = None, capture: bool = True):
        r = subprocess.run([DOCKER_CLI, *args], env=self.env, input=input, capture_output=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {r.returncode}: "
                                 f"{r.stderr.decode(errors='replace')}")
        return r

    def api(self, method: str, path: str, body=None, *, raw: bytes | None = None,
            headers: dict | None = None, timeout: float = 30):
        return raw_request(self.sock, method, path, body, raw=raw, headers=headers,
                           timeout=timeout)

    def client(self):
        import docker

        return docker.DockerClient(base_url=f"unix://{self.sock}", version="1.41", timeout=60)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False).stdout.decode().split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
        self.stop()


def raw_request(sock_path: str, method: str, path: str, body=None, *, raw: bytes | None = None,
                headers: dict | None = None, timeout: float = 30):
    """One HTTP request on a unix socket: ``(status, headers, body bytes)``."""
    import http.client

    class Conn(http.client.HTTPConnection):
        def connect(conn):
            conn.sock = socket.socket(socket.AF_UNIX)
            conn.sock.settimeout(timeout)
            conn.sock.connect(sock_path)

    c = Conn("localhost")
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    c.request(method, path, body=data, headers=hdrs)
    r = c.getresponse()
    out = (r.status, dict(r.getheaders()), r.read())
    c.close()
    return out


def message(body: bytes) -> str:
    """The ``message`` of docker's JSON error."""
    try:
        return json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")
