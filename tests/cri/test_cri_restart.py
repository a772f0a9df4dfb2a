"""kill -9 of pallet-containerd: pods and containers keep running, and once
it is back ``crictl pods``/``ps`` show their true states (a container that
exited meanwhile with its exit code, its output of meanwhile in its log),
and the network of a pod whose record went away meanwhile is deleted
through CNI from the cached result."""
from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest

from cri_helpers import CriDaemon, needs_crictl, needs_root

pytestmark = needs_root + [needs_crictl]


@pytest.fixture
def daemon(busybox_tar):
    d = CriDaemon()
    try:
        d.start()
        d.import_image(busybox_tar)
        yield d
    finally:
        d.stop()


def _leases(d) -> list[str]:
    folder = os.path.join(d.net.ipam_dir, d.net.name)
    return sorted(n for n in os.listdir(folder) if n[0].isdigit()) if os.path.isdir(folder) \
        else []


def test_kill9_keeps_pods_and_reports_true_states(daemon):
    d = daemon
    pod = d.run_pod("survivor")
    runner = d.run_container(pod, "survivor", "runner", ["sh", "-c", "i=0; while true; do "
                                                                     "echo n$i; i=$((i+1)); "
                                                                     "sleep 0.2; done"])
    quitter = d.run_container(pod, "survivor", "quitter", ["sh", "-c", "sleep 2; exit 7"])
    shim_pids = set(d.crictl("inspect", runner).stdout and [
        json.loads(d.crictl("inspect", runner).stdout)["info"]["pid"]])
    d.kill9()
    time.sleep(3)                       # the quitter exits while pallet-containerd is down
    for pid in shim_pids:
        assert os.path.exists(f"/proc/{pid}")   # the container's process lives on
    d.restart()
    pods = json.loads(d.crictl("pods", "-o", "json").stdout)["items"]
    assert [(p["id"], p["state"]) for p in pods] == [(pod, "SANDBOX_READY")]
    st = d.inspect(quitter)["status"]
    assert (st["state"], st["exitCode"], st["reason"]) == ("CONTAINER_EXITED", 7, "Error")
    assert d.inspect(runner)["status"]["state"] == "CONTAINER_RUNNING"
    # output written while pallet-containerd was down reached the log
    time.sleep(0.5)
    lines = d.crictl("logs", runner).stdout.split()
    assert len(lines) >= 20 and lines[:3] == ["n0", "n1", "n2"]
    assert d.crictl("exec", "-s", runner, "echo", "still-here").stdout.startswith("still-here")
    # the pod's shared PID namespace is still held: a new container joins it
    late = d.run_container(pod, "survivor", "late", ["sleep", "100"])
    c = d.client()
    try:
        r = c.runtime.ExecSync(c.pb.ExecSyncRequest(container_id=late, cmd=["ps", "-o", "args"]))
        assert b"echo n" in r.stdout or b"while true" in r.stdout
    finally:
        c.close()
    d.crictl("stop", "-t", "0", runner)
    assert d.inspect(runner)["status"]["state"] == "CONTAINER_EXITED"
    d.crictl("rmp", "-f", pod)
    assert _leases(d) == []


def test_network_of_a_pod_removed_meanwhile_is_released(daemon):
    d = daemon
    pod = d.run_pod("gone")
    assert len(_leases(d)) == 1
    d.kill9()
    # the pod's record went away with pallet-containerd down (a removal that had
    # deleted the record, but not yet the network, when it was killed)
    db = os.path.join(d.root, "io.containerd.metadata.v1.pallet", "meta.db")
    with sqlite3.connect(db) as conn:
        assert conn.execute("DELETE FROM containers WHERE namespace='k8s.io' AND id=?",
                            (pod,)).rowcount == 1
    d.restart()
    assert json.loads(d.crictl("pods", "-o", "json").stdout)["items"] == []
    assert _leases(d) == []
    cache = os.path.join(d.root, "io.containerd.grpc.v1.cri", "cni", "results")
    assert not [n for n in os.listdir(cache) if pod in n]
    ns_dir = os.path.join(d.state, "io.containerd.grpc.v1.cri", "ns")
    assert not [n for n in os.listdir(ns_dir) if n.startswith(pod)]
