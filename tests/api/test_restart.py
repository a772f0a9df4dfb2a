"""palletd keeps every container across its own restart."""
from __future__ import annotations

import json

import pytest

from api_harness import Palletd

pytestmark = pytest.mark.root


def test_restart_keeps_containers(fresh_palletd: Palletd):
    """With live-restore, a SIGTERM'd palletd leaves its containers running."""
    d = fresh_palletd
    d.extra_args.append("--live-restore")
    d.stop_daemon()
    d.start()
    done = d.docker("run", "-d", "--name", "pa-done", "busybox", "sh", "-c", "echo bye; exit 4")
    done_id = done.stdout.decode().strip()
    d.docker("wait", done_id)
    live = d.docker("run", "-d", "busybox", "sh", "-c",
                    "echo before; sleep 1.5; echo after; sleep 300").stdout.decode().strip()
    d.stop_daemon()
    d.start()
    info = json.loads(d.docker("inspect", "pa-done").stdout)[0]
    assert info["State"]["ExitCode"] == 4
    assert d.docker("logs", "pa-done").stdout == b"bye\n"
    assert json.loads(d.docker("inspect", live).stdout)[0]["State"]["Running"] is True
    # output written while palletd was away, and after, reaches the log
    import time
    deadline = time.monotonic() + 10
    while b"after" not in d.docker("logs", live).stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert d.docker("logs", live).stdout == b"before\nafter\n"
    d.docker("kill", live)
    assert d.docker("wait", live).stdout.strip() == b"137"
    d.docker("rm", live, "pa-done")


def test_containerd_restart_keeps_waiting(fresh_palletd: Palletd):
    """The wait stream breaks when containerd dies; palletd waits again and the
    container keeps its state and its exit."""
    d = fresh_palletd
    cid = d.docker("run", "-d", "busybox", "sh", "-c", "sleep 2; exit 5").stdout.decode().strip()
    d.restart_containerd()
    assert json.loads(d.docker("inspect", cid).stdout)[0]["State"]["Running"] is True
    assert d.docker("wait", cid, timeout=60).stdout.strip() == b"5"
    state = json.loads(d.docker("inspect", cid).stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 5
    d.docker("rm", cid)
    # and new containers still run
    assert d.docker("run", "--rm", "busybox", "echo", "again").stdout == b"again\n"
