"""A build stopped half-way (/build/cancel, the client gone, Ctrl-C, palletd
killed) leaves no running or half-made container, no mounted or active
snapshot, no half-tagged image; what the cache kept stays valid."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest

from build_helpers import (api, context_tar, docker_build, engine_with_busybox, leftovers,
                           wait_for, write_context)

SLOW = "FROM busybox\nRUN echo before > /before\nCOPY f /f\nRUN sleep 120\n"


def _clean(engine) -> dict:
    """Wait until the build's leftovers are gone; what is left."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = leftovers(engine)
        if not left:
            return left
        time.sleep(0.2)
    return leftovers(engine)


def _running_step(engine) -> bool:
    ids = engine.docker("ps", "-q").stdout.decode().split()
    return bool(ids)


def _tags(engine) -> list[str]:
    return engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode() \
        .split()


def test_cancel_by_build_id(palletd):
    body = context_tar({"Dockerfile": SLOW, "f": "f"})
    result = {}

    def build():
        result["r"] = api(palletd, "POST", "/v1.41/build?buildid=b1&t=cancelled:1", body,
                          {"Content-Type": "application/x-tar"})
    t = threading.Thread(target=build)
    t.start()
    wait_for(lambda: _running_step(palletd))
    status, _ = api(palletd, "POST", "/v1.41/build/cancel?id=b1")
    assert status == 200
    t.join(30)
    status, data = result["r"]
    assert status == 200
    last = json.loads(data.decode().strip().splitlines()[-1])
    assert last.get("error") == "Build cancelled"
    assert _clean(palletd) == {}
    assert "cancelled:1" not in _tags(palletd)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_client_gone(palletd, ctx, how):
    write_context(ctx, {"Dockerfile": SLOW, "f": f"f{how}"})
    from engines import DOCKER_CLI
    proc = subprocess.Popen([DOCKER_CLI, "build", "-t", "gone:1", str(ctx)],
                            env=dict(palletd.env, DOCKER_BUILDKIT="0"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _running_step(palletd))
        proc.send_signal(how)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _clean(palletd) == {}
    assert "gone:1" not in _tags(palletd)


def test_palletd_killed_mid_build(busybox_tar, ctx):

    engine = engine_with_busybox("pallet", busybox_tar)
    try:
        write_context(ctx, {"Dockerfile": SLOW, "f": "killed"})
        from engines import DOCKER_CLI
        proc = subprocess.Popen([DOCKER_CLI, "build", "-t", "killed:1", str(ctx)],
                                env=dict(engine.env, DOCKER_BUILDKIT="0"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _running_step(engine))
        engine.proc.send_signal(signal.SIGKILL)
        engine.proc.wait(10)
        proc.wait(30)
        engine.start()
        assert _clean(engine) == {}
        assert "killed:1" not in _tags(engine)
        # the steps the cache kept before the kill are still good
        write_context(ctx, {"Dockerfile": "FROM busybox\nRUN echo before > /before\n"
                                          "COPY f /f\nRUN echo done\n", "f": "killed"})
        r = docker_build(engine, str(ctx), "-t", "killed:2")
        assert r.returncode == 0, r.stderr.decode()
        out = r.stdout.decode()
        assert out.count("Using cache") == 2
    finally:
        engine.stop()
