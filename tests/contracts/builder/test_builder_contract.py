"""The ``builder`` role's contract (``pallet.core.contracts.Builder``), for
every installed implementation: the object it provides, a build through a
palletd whose configuration names it, a cancelled build that leaves
nothing behind; and a configuration naming no installed builder refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from contract_helpers import implementations, kernel_for

BUILD_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "build")
sys.path.insert(0, BUILD_TESTS)

from build_helpers import (api, context_tar, docker_build, leftovers, wait_for,  # noqa: E402
                           write_context)

PLUGINS = implementations("builder")


@pytest.mark.parametrize("plugin", PLUGINS)
def test_provides_the_contract(plugin, tmp_path):
    from pallet.core.contracts import Builder
    from pallet.core.paths import Paths

    kernel = kernel_for("builder", plugin, Paths(str(tmp_path / "d"), str(tmp_path / "r")))
    builder = kernel.provide("builder")
    assert isinstance(builder, Builder)
    assert builder.cancel("no-such-build") is False


@pytest.fixture(scope="module", params=PLUGINS)
def engine(request, busybox_tar):
    from engines import Pallet

    if os.geteuid() != 0:
        pytest.skip("needs root")
    e = Pallet(config=f'[roles]\nbuilder = "{request.param}"\n')
    try:
        e.start()
        e.docker("load", "-i", busybox_tar)
        yield e
    finally:
        e.stop()


def test_builds_through_the_configured_builder(engine, tmp_path):
    write_context(tmp_path, {"Dockerfile": "FROM busybox\nCOPY f /f\nRUN cat /f > /g\n"
                                           "CMD [\"cat\", \"/g\"]\n", "f": "contract\n"})
    r = docker_build(engine, str(tmp_path), "-t", "contract:1")
    assert r.returncode == 0, r.stderr.decode()
    out = engine.docker("run", "--rm", "--network", "none", "contract:1").stdout
    assert out == b"contract\n"


def test_a_cancelled_build_leaves_nothing(engine):
    body = context_tar({"Dockerfile": "FROM busybox\nRUN sleep 120\n"})
    done = {}

    def build():
        done["r"] = api(engine, "POST", "/v1.41/build?buildid=contract", body,
                        {"Content-Type": "application/x-tar"})
    t = threading.Thread(target=build)
    t.start()
    wait_for(lambda: engine.docker("ps", "-q").stdout.strip())
    assert api(engine, "POST", "/v1.41/build/cancel?id=contract")[0] == 200
    t.join(60)
    last = json.loads(done["r"][1].decode().strip().splitlines()[-1])
    assert "error" in last
    wait_for(lambda: not leftovers(engine), timeout=30)


def test_an_unknown_builder_is_refused(tmp_path):
    cfg = tmp_path / "pallet.toml"
    cfg.write_text('[roles]\nbuilder = "no_such_builder"\n')
    palletd = os.path.join(os.path.dirname(sys.executable), "palletd")
    r = subprocess.run([palletd, "--config", str(cfg), "--data-root", str(tmp_path / "d"),
                        "--exec-root", str(tmp_path / "r"), "-H",
                        f"unix://{tmp_path}/s.sock"], capture_output=True, timeout=60)
    assert r.returncode != 0
    assert "role builder: configured no_such_builder, which is not installed; installed " \
        f"candidates: [{', '.join(PLUGINS)}]" in r.stderr.decode()
