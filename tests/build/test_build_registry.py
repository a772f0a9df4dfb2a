"""``FROM`` an image of a private registry: the docker CLI sends the
credentials of its config.json as ``X-Registry-Config`` and the build pulls
with them; without them the pull, and the build, fail."""
from __future__ import annotations

import base64
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "registry"))

from build_helpers import docker_build, write_context  # noqa: E402
from registry_helpers import USERS, RegistryServer, needs_registry  # noqa: E402

pytestmark = needs_registry


@pytest.fixture
def private(tmp_path):
    reg = RegistryServer(str(tmp_path / "reg"), auth="htpasswd", users=USERS)
    os.makedirs(reg.base)
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


def _config(path, host: str | None) -> dict:
    os.makedirs(path, exist_ok=True)
    auths = {}
    if host:
        auths[host] = {"auth": base64.b64encode(f"alice:{USERS['alice']}".encode()).decode()}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"auths": auths}, f)
    return {"DOCKER_CONFIG": path}


def test_from_a_private_registry(palletd, private, ctx, tmp_path):
    name = f"{private.host}/private/busybox:v1"
    with_creds = _config(str(tmp_path / "cfg"), private.host)
    palletd.docker("tag", "busybox", name)
    from engines import DOCKER_CLI
    import subprocess
    r = subprocess.run([DOCKER_CLI, "push", name], env=dict(palletd.env, **with_creds),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    palletd.docker("rmi", name)
    write_context(ctx, {"Dockerfile": f"FROM {name}\nRUN echo pulled > /p\n"})
    r = docker_build(palletd, str(ctx), env=_config(str(tmp_path / "none"), None))
    assert r.returncode == 1
    assert "unauthorized" in r.stderr.decode().lower() or \
        "authentication required" in r.stderr.decode().lower(), r.stderr.decode()
    r = docker_build(palletd, str(ctx), "-t", "fromprivate", env=with_creds)
    assert r.returncode == 0, r.stderr.decode()
    assert "Pulling from private/busybox" in r.stdout.decode()
