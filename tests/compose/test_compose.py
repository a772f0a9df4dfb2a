"""docker-compose 1.29 against palletd: a two-service project sharing a
named volume comes up, the services see each other's writes in the volume,
and ``down -v`` removes containers, network and volume."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from compose_helpers import ensure_compose
from engines import Pallet

COMPOSE_FILE = """\
version: "2.4"
services:
  writer:
    image: busybox
    command: ["sh", "-c", "echo written-by-writer > /data/shared; exec sleep 600"]
    volumes:
      - data:/data
  reader:
    image: busybox
    command: ["sleep", "600"]
    volumes:
      - data:/data:ro
    depends_on:
      - writer
volumes:
  data:
"""


@pytest.fixture(scope="module")
def compose():
    path, why = ensure_compose()
    if path is None:
        pytest.skip("docker-compose 1.29.2 could not be installed: " + why)
    return path


@pytest.fixture
def project(busybox_tar, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    engine = Pallet()
    try:
        engine.start()
        engine.docker("load", "-i", busybox_tar)
        (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE)
        engine.project = "plc" + uuid.uuid4().hex[:8]
        engine.dir = str(tmp_path)
        yield engine
    finally:
        engine.stop()


def _compose(compose, engine, *args, timeout=120):
    env = dict(os.environ, DOCKER_HOST=f"unix://{engine.sock}", COMPOSE_INTERACTIVE_NO_CLI="1")
    env.pop("DOCKER_TLS_VERIFY", None)
    return subprocess.run([compose, "-p", engine.project, *args], cwd=engine.dir, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_two_services_with_a_named_volume(compose, project):
    name = project.project
    r = _compose(compose, project, "up", "-d")
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        r = _compose(compose, project, "ps")
        assert r.returncode == 0, r.stderr
        lines = [ln for ln in r.stdout.splitlines() if name in ln]
        assert len(lines) == 2 and all(" Up" in ln for ln in lines), r.stdout
        vols = project.docker("volume", "ls", "-q").stdout.decode().split()
        assert f"{name}_data" in vols
        deadline = time.monotonic() + 30
        while True:
            r = _compose(compose, project, "exec", "-T", "reader", "cat", "/data/shared")
            if r.returncode == 0 and r.stdout == "written-by-writer\n":
                break
            assert time.monotonic() < deadline, r.stdout + r.stderr
            time.sleep(0.2)
        r = _compose(compose, project, "exec", "-T", "reader", "sh", "-c", "echo x > /data/y")
        assert r.returncode != 0  # mounted read-only there
        labels = project.docker("inspect", "-f",
                                '{{index .Config.Labels "com.docker.compose.service"}}',
                                f"{name}_writer_1").stdout.decode().strip()
        assert labels == "writer"
    finally:
        r = _compose(compose, project, "down", "-v")
    assert r.returncode == 0, r.stdout + r.stderr
    assert project.docker("ps", "-aq").stdout.decode().split() == []
    assert f"{name}_data" not in project.docker("volume", "ls", "-q").stdout.decode().split()
    nets = project.docker("network", "ls", "--format", "{{.Name}}").stdout.decode().split()
    assert f"{name}_default" not in nets


HEALTHY_FILE = """\
version: "2.4"
services:
  db:
    image: busybox
    command: ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 600"]
    healthcheck:
      test: ["CMD", "test", "-e", "/tmp/ready"]
      interval: 500ms
      timeout: 2s
      retries: 20
  app:
    image: busybox
    command: ["sleep", "600"]
    depends_on:
      db:
        condition: service_healthy
"""


def test_depends_on_service_healthy(compose, project):
    """``condition: service_healthy``: compose starts app once db's health
    check says healthy (it reads State.Health.Status)."""
    name = project.project
    with open(os.path.join(project.dir, "docker-compose.yml"), "w") as f:
        f.write(HEALTHY_FILE)
    r = _compose(compose, project, "up", "-d")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        health = project.docker("inspect", "-f", "{{.State.Health.Status}}",
                                f"{name}_db_1").stdout.decode().strip()
        assert health == "healthy"
        started = {}
        for svc in ("db", "app"):
            started[svc] = project.docker("inspect", "-f", "{{.State.StartedAt}}",
                                          f"{name}_{svc}_1").stdout.decode().strip()
        db_log = json.loads(project.docker("inspect", f"{name}_db_1").stdout)[0]["State"][
            "Health"]["Log"]
        # app started after db's first healthy probe
        assert started["app"] > min(e["End"] for e in db_log if e["ExitCode"] == 0)
    finally:
        r = _compose(compose, project, "down", "-v")
    assert r.returncode == 0, r.stdout + r.stderr
