"""palletd's data path into pallet-containerd, as the docker CLI drives it.

``docker run --rm`` crosses the boundary a known number of times (palletd's
containerd client counts every call, by method, and logs it at debug
level): the test pins the exact calls, so that a repeated Images.Get, a
lease per create or a second Tasks.Delete cannot come back unnoticed.
Exits and OOM kills come from containerd's event stream, not from
Tasks.Wait or palletd reading cgroup files.
"""
from __future__ import annotations

import collections
import json
import os
import re
import time

import pytest

from cd_util import ok, pallet_ctr, serving
from engines import Pallet

pytestmark = pytest.mark.root

#: every call palletd makes for ``docker run --rm --network none busybox true``
#: once the image is unpacked (22 before the data path was crossed once)
RUN_RM_CALLS = {
    "/containerd.services.images.v1.Images/Get": 1,          # the image by name
    "/containerd.services.images.v1.Images/List": 1,         # its other names
    "/containerd.services.content.v1.Content/Info": 1,       # its labels (RepoDigests)
    "/containerd.services.snapshots.v1.Snapshots/Prepare": 1,  # the rootfs, on the init layer
    "/containerd.services.containers.v1.Containers/Create": 1,
    "/containerd.services.containers.v1.Containers/Update": 1,  # the spec, made at start
    "/containerd.services.tasks.v1.Tasks/Create": 1,
    "/containerd.services.tasks.v1.Tasks/Start": 1,
    "/containerd.services.tasks.v1.Tasks/Delete": 1,         # after the exit event
    "/containerd.services.containers.v1.Containers/Delete": 1,
    "/containerd.services.snapshots.v1.Snapshots/Remove": 1,
}
_RPC = re.compile(r" pallet\.containerd\.rpc: rpc (/\S+) ")


@pytest.fixture(scope="module")
def engine(busybox_tar):
    with serving(Pallet("--debug"), busybox_tar) as e:
        yield e


def _calls_since(engine, offset: int) -> collections.Counter:
    with open(engine.log.name, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return collections.Counter(_RPC.findall(text))


def _log_size(engine) -> int:
    with open(engine.log.name, "rb") as f:
        return f.seek(0, 2)


def test_docker_run_rm_makes_the_known_calls(engine):
    for _ in range(2):  # the first run unpacks the image; both warm palletd up
        engine.docker("run", "--rm", "--network", "none", "busybox", "true")
    for _ in range(2):
        start = _log_size(engine)
        # docker run --rm returns once the container is removed: every call is logged
        engine.docker("run", "--rm", "--network", "none", "busybox", "true")
        assert dict(_calls_since(engine, start)) == RUN_RM_CALLS


def test_a_missing_layer_snapshot_is_unpacked_at_create(engine):
    """When the image's top layer is no snapshot (removed here behind palletd's
    back), the create unpacks it from the manifest and config it read already,
    then prepares the rootfs again."""
    address = os.path.join(engine.exec_root, "containerd", "containerd.sock")
    top = json.loads(engine.docker("image", "inspect", "busybox").stdout)[0]["RootFS"]["Layers"][-1]
    # busybox has one layer; dockerd's init layer sits on it and goes first
    ok(pallet_ctr(address, "snapshots", "rm", f"{top}-init", namespace="moby"))
    ok(pallet_ctr(address, "snapshots", "rm", top, namespace="moby"))
    start = _log_size(engine)
    r = engine.docker("run", "--rm", "--network", "none", "busybox", "sh", "-c",
                      "echo out; exit 7", check=False)
    assert (r.returncode, r.stdout) == (7, b"out\n"), r.stderr
    calls = _calls_since(engine, start)
    # rootfs (no init layer), init layer (no parent), the layer, then again:
    # rootfs (no init layer yet), init layer, rootfs
    assert calls["/containerd.services.snapshots.v1.Snapshots/Prepare"] == 6
    assert calls["/containerd.services.diff.v1.Diff/Apply"] == 1
    assert calls["/containerd.services.images.v1.Images/Get"] == 1
    assert "/containerd.services.content.v1.Content/Read" not in calls
    assert ok(pallet_ctr(address, "snapshots", "info", top, namespace="moby"))


def test_oom_kill_comes_from_the_shims_events(engine):
    since = str(int(time.time()) - 1)
    r = engine.docker("run", "--name", "oomer", "--network", "none", "-m", "8m",
                      "--memory-swap", "8m", "busybox", "sh", "-c",
                      "x=$(head -c 60000000 /dev/zero | tr '\\0' a); echo survived",
                      check=False)
    try:
        assert r.returncode == 137, r.stderr
        state = json.loads(engine.docker("inspect", "oomer").stdout)[0]["State"]
        assert state["OOMKilled"] is True and state["ExitCode"] == 137
        events = engine.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                               "--filter", "container=oomer", "--format",
                               "{{.Action}}").stdout.decode().split()
        # dockerd's order: the oom (as containerd reports it), then the die
        assert "oom" in events and events.index("oom") < events.index("die"), events
    finally:
        engine.docker("rm", "-f", "oomer", check=False)


def test_plain_exit_is_not_an_oom(engine):
    engine.docker("run", "-d", "--name", "plain", "--network", "none", "-m", "64m", "busybox",
                  "sleep", "100")
    try:
        engine.docker("kill", "plain")
        assert engine.docker("wait", "plain").stdout.strip() == b"137"
        state = json.loads(engine.docker("inspect", "plain").stdout)[0]["State"]
        assert state["OOMKilled"] is False and state["ExitCode"] == 137
    finally:
        engine.docker("rm", "-f", "plain", check=False)
