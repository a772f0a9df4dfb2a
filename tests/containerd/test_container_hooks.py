"""The container event hooks fire for every container, whoever made it.

A real third-party plugin (``examples/hello_plugin``, installed into the
venv for this module and removed after, unless it was there already)
records each ``pallet_on_container_*`` call; pallet-containerd calls them
from its events, so containers made through the docker CLI -> palletd and
through pallet-ctr (in another namespace, run by Debian's runc shim) show
up alike.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cd_util import pallet_ctr, serving, wait_for
from engines import Pallet

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(REPO, "examples", "hello_plugin")
IMAGE = "docker.io/library/busybox:latest"


def _installed() -> bool:
    r = subprocess.run([sys.executable, "-c", "import pallet_hello.plugin"],
                       capture_output=True)
    return r.returncode == 0


@pytest.fixture(scope="module")
def hello_plugin():
    """The example plugin, pip-installed as a user would (entry point ``hello``)."""
    if _installed():
        yield
        return
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", PLUGIN], check=True,
                   capture_output=True)
    try:
        yield
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "pallet-hello"],
                       capture_output=True)


@pytest.fixture(scope="module")
def engine(hello_plugin, busybox_tar, tmp_path_factory):
    record = str(tmp_path_factory.mktemp("hooks") / "hello.log")
    e = Pallet(config=f'\n[plugins.hello]\npath = "{record}"\n')
    e.record = record
    with serving(e, busybox_tar):
        yield e


def _calls(engine, cid: str) -> list[tuple[str, dict]]:
    try:
        with open(engine.record) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        _, event, data = line.split(" ", 2)
        info = json.loads(data)
        if info["id"] == cid:
            out.append((event, info))
    return out


def _all_four(engine, cid):
    calls = _calls(engine, cid)
    return calls if [e for e, _ in calls][-1:] == ["removed"] else None


def test_hooks_for_a_container_of_palletd(engine):
    r = engine.docker("run", "--name", "hooked", "--network", "none", "busybox",
                      "sh", "-c", "exit 3", check=False)
    assert r.returncode == 3
    cid = engine.docker("inspect", "-f", "{{.Id}}", "hooked").stdout.decode().strip()
    engine.docker("rm", "hooked")
    calls = wait_for(lambda: _all_four(engine, cid))
    assert [e for e, _ in calls] == ["created", "started", "exited", "removed"], calls
    info = dict(calls)
    assert info["created"]["namespace"] == "moby"
    assert info["created"]["image"] == IMAGE
    assert info["created"]["runtime"] == "io.containerd.pallet.v2"
    assert info["started"]["pid"] > 0
    assert info["exited"]["exit_code"] == 3 and info["exited"]["pid"] == info["started"]["pid"]
    assert info["exited"]["exited_at"] > 0
    assert info["removed"]["exit_code"] == 3


def test_hooks_for_a_container_of_pallet_ctr(engine, busybox_tar):
    address = os.path.join(engine.exec_root, "containerd", "containerd.sock")
    r = pallet_ctr(address, "images", "import", busybox_tar)
    assert r.returncode == 0, r.stderr
    # ctr's default runtime, io.containerd.runc.v2: Debian's runc shim's events count too
    r = pallet_ctr(address, "run", "--rm", IMAGE, "hooked-ctr", "sh", "-c", "exit 4")
    assert r.returncode == 4, r.stderr
    calls = wait_for(lambda: _all_four(engine, "hooked-ctr"))
    assert [e for e, _ in calls] == ["created", "started", "exited", "removed"], calls
    info = dict(calls)
    assert {i["namespace"] for i in info.values()} == {"default"}
    assert info["created"]["runtime"] == "io.containerd.runc.v2"
    assert info["exited"]["exit_code"] == 4 and info["started"]["pid"] > 0
    # an exec's exit is not the container's
    r = pallet_ctr(address, "run", "-d", IMAGE, "hooked-exec", "sleep", "100")
    assert r.returncode == 0, r.stderr
    try:
        r = pallet_ctr(address, "tasks", "exec", "--exec-id", "x1", "hooked-exec", "sh", "-c",
                       "exit 9")
        assert r.returncode == 9
        assert wait_for(lambda: [e for e, _ in _calls(engine, "hooked-exec")] ==
                        ["created", "started"])
    finally:
        pallet_ctr(address, "tasks", "kill", "-s", "SIGKILL", "hooked-exec")
        wait_for(lambda: "exited" in [e for e, _ in _calls(engine, "hooked-exec")])
        pallet_ctr(address, "tasks", "delete", "hooked-exec")
        pallet_ctr(address, "containers", "delete", "hooked-exec")
    calls = wait_for(lambda: _all_four(engine, "hooked-exec"))
    assert [e for e, _ in calls] == ["created", "started", "exited", "removed"]
    assert dict(calls)["exited"]["exit_code"] == 137
