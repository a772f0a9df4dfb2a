"""Raw requests and clients for the dockerd side of the comparisons (the
palletd side is tests/api's ``Palletd``, which has the same methods)."""
from __future__ import annotations

import json
import subprocess

from api_harness import Palletd
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

    api = Palletd.api  # a raw request on this engine's socket, the same way

    def client(self):
        import docker

        return docker.DockerClient(base_url=f"unix://{self.sock}", version="1.41", timeout=60)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False).stdout.decode().split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
        self.stop()


def message(body: bytes) -> str:
    """The ``message`` of docker's JSON error."""
    try:
        return json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")
