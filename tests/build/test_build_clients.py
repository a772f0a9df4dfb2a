"""docker-py 7 and docker-compose 1.29 building against palletd:
``images.build`` (its log, its error stream), ``container.commit``,
``docker-compose build`` and ``up --build``."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid

import pytest

from build_helpers import write_context

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "compose"))


@pytest.fixture(scope="module")
def client(palletd):
    docker = pytest.importorskip("docker")
    c = docker.DockerClient(base_url=f"unix://{palletd.sock}", version="1.41")
    try:
        yield c
    finally:
        c.close()


def test_dockerpy_build(client, ctx):
    write_context(ctx, {"Dockerfile": "FROM busybox\nARG MSG\nCOPY f /f\n"
                                      "RUN echo $MSG > /msg\nLABEL built=by-py\n", "f": "file"})
    image, logs = client.images.build(path=str(ctx), tag="py:1", buildargs={"MSG": "hi"},
                                      rm=True)
    logs = list(logs)
    assert "py:1" in image.tags and image.labels == {"built": "by-py"}
    streams = "".join(x.get("stream", "") for x in logs)
    assert "Step 4/5 : RUN echo $MSG > /msg" in streams and "Successfully built" in streams
    assert any("aux" in x for x in logs)
    out = client.containers.run("py:1", ["cat", "/f", "/msg"], remove=True, network_mode="none")
    assert out == b"filehi\n"
    # a Dockerfile as a file object, no context
    image, _ = client.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN echo fileobj\n"),
                                   tag="py:2")
    assert "py:2" in image.tags


def test_dockerpy_build_errors(client, ctx):
    import docker.errors

    write_context(ctx, {"Dockerfile": "FROM busybox\nRUN echo going && exit 4\n"})
    with pytest.raises(docker.errors.BuildError) as e:
        client.images.build(path=str(ctx), tag="py:bad")
    assert e.value.msg == "The command '/bin/sh -c echo going && exit 4' returned a " \
        "non-zero code: 4"
    assert any("going" in x.get("stream", "") for x in e.value.build_log)
    write_context(ctx, {"Dockerfile": "FROM busybox\nBOGUS x\n"})
    with pytest.raises(docker.errors.APIError) as e:
        client.images.build(path=str(ctx))
    assert e.value.status_code == 400
    assert "dockerfile parse error line 2: unknown instruction: BOGUS" in str(e.value)


def test_dockerpy_commit(client):
    c = client.containers.run("busybox", ["sh", "-c", "echo made > /made; rm /bin/vi; "
                                          "sleep 60"], detach=True, network_mode="none")
    try:
        import time
        time.sleep(0.5)
        image = c.commit(repository="pycommit", tag="v1", message="from py", author="me",
                         changes=["ENV COMMITTED=1", 'CMD ["cat", "/made"]'])
        attrs = image.attrs
        assert attrs["Comment"] == "from py" and attrs["Author"] == "me"
        assert "COMMITTED=1" in attrs["Config"]["Env"]
        assert client.containers.run("pycommit:v1", remove=True, network_mode="none") == \
            b"made\n"
        history = image.history()
        assert history[0]["Comment"] == "from py"
        c.reload()
        assert c.status == "running"  # unpaused again
    finally:
        c.remove(force=True)


# --- docker-compose 1.29 ----------------------------------------------------------------

COMPOSE = """\
version: "2.4"
services:
  app:
    build:
      context: ./app
      args:
        GREETING: hello-compose
    image: {project}_app:latest
    command: ["sh", "-c", "cat /greeting; sleep 60"]
"""


from test_compose import compose  # noqa: E402,F401  (tests/compose: docker-compose 1.29)


def _compose(compose, palletd, project, cwd, *args):
    return subprocess.run([compose, "-p", project, *args], cwd=cwd,
                          env=dict(os.environ, DOCKER_HOST=f"unix://{palletd.sock}",
                                   COMPOSE_DOCKER_CLI_BUILD="0", DOCKER_BUILDKIT="0"),
                          capture_output=True, timeout=300)


def test_compose_build_and_up(compose, palletd, tmp_path):
    project = "plb" + uuid.uuid4().hex[:8]
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(project=project))
    write_context(tmp_path / "app", {"Dockerfile": "FROM busybox\nARG GREETING\n"
                                                   "RUN echo $GREETING > /greeting\n"})
    try:
        r = _compose(compose, palletd, project, tmp_path, "build")
        assert r.returncode == 0, r.stderr.decode()
        assert "Successfully tagged" in r.stdout.decode() + r.stderr.decode()
        (tmp_path / "app" / "Dockerfile").write_text(
            "FROM busybox\nARG GREETING\nRUN echo $GREETING again > /greeting\n")
        r = _compose(compose, palletd, project, tmp_path, "up", "-d", "--build")
        assert r.returncode == 0, r.stderr.decode()
        r = _compose(compose, palletd, project, tmp_path, "logs", "--no-color")
        assert "hello-compose again" in r.stdout.decode()
    finally:
        _compose(compose, palletd, project, tmp_path, "down", "--rmi", "local")
