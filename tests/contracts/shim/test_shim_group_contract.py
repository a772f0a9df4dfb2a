"""The shim's contract for a group of tasks (a Kubernetes pod), against every shim
binary (see conftest.py): containerd's runc shim serves the tasks whose specs
carry the same ``io.kubernetes.cri.sandbox-id`` in one process, its ``start``
verb answering with the running shim's address; each task keeps its own state
and events; Shutdown ends the shim only once its last task is deleted."""
from __future__ import annotations

import json
import os

import pytest

from pallet.core import errors
from pallet.proto.containerd.task.v2 import shim_pb2 as pb
from pallet.proto.containerd.types.task import task_pb2

from shimtest_util import pid_alive, wait_gone
from test_shim_contract import call, fifo

pytestmark = pytest.mark.root
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"


def grouped(shims, id: str, pod: str | None, args):
    """Start verb and Create for ``id`` of ``pod``: (client, address, shim pid, task pid)."""
    bundle = shims.bundle(id, args)
    if pod is not None:
        path = os.path.join(bundle, "config.json")
        with open(path) as f:
            spec = json.load(f)
        spec["annotations"] = {SANDBOX_ID: pod, "io.kubernetes.cri.container-type": "container"}
        with open(path, "w") as f:
            json.dump(spec, f)
    address = shims.start(id, bundle)
    with open(os.path.join(bundle, "address")) as f:
        assert f.read().strip() == address   # what containerd reads after a restart
    client = shims.connect(address)
    out, _fd = fifo(shims, f"{id}.out")
    r = call(client, "Create", pb.CreateTaskRequest(
        id=id, bundle=bundle, rootfs=shims.rootfs_mounts(), stdout=out, stderr=out),
        pb.CreateTaskResponse)
    call(client, "Start", pb.StartRequest(id=id), pb.StartResponse)
    return client, address, shims.shim_pid(client), r.pid


def _shutdown(client, id: str) -> None:
    try:
        call(client, "Shutdown", pb.ShutdownRequest(id=id), timeout=10)
    except errors.Unavailable:
        pass  # the shim may go before its answer arrives


def test_tasks_of_a_pod_share_one_shim(shims):
    pod = "pod-" + shims.namespace
    a, address, shim, a_pid = grouped(shims, "a", pod, ["sleep", "1000"])
    b, b_address, b_shim, b_pid = grouped(shims, "b", pod, ["sh", "-c", "exit 7"])
    assert (b_address, b_shim) == (address, shim) and b_pid != a_pid
    lone, lone_address, lone_shim, _ = grouped(shims, "lone", None, ["sleep", "1000"])
    assert lone_address != address and lone_shim != shim
    # each task answers for itself, on any connection to the shim
    assert call(a, "Wait", pb.WaitRequest(id="b"), pb.WaitResponse).exit_status == 7
    st = call(b, "State", pb.StateRequest(id="a"), pb.StateResponse)
    assert (st.id, st.pid, st.status) == ("a", a_pid, task_pb2.RUNNING)
    conn = call(a, "Connect", pb.ConnectRequest(id="b"), pb.ConnectResponse)
    assert (conn.shim_pid, conn.task_pid) == (shim, b_pid)
    ev = [e for e in shims.events.wait_topic("/tasks/exit") if e.container_id == "b"]
    assert [(e.id, e.pid, e.exit_status) for e in ev] == [("b", b_pid, 7)]
    # Delete of one task and a Shutdown leave the shim serving the other
    assert call(b, "Delete", pb.DeleteRequest(id="b"), pb.DeleteResponse).exit_status == 7
    _shutdown(b, "b")
    assert pid_alive(shim)
    with pytest.raises(errors.NotFound):
        call(a, "State", pb.StateRequest(id="b"), pb.StateResponse)
    assert call(a, "State", pb.StateRequest(id="a"), pb.StateResponse).status == \
        task_pb2.RUNNING
    # the last task's Delete and Shutdown end it
    call(a, "Kill", pb.KillRequest(id="a", signal=9))
    assert call(a, "Wait", pb.WaitRequest(id="a"), pb.WaitResponse).exit_status == 137
    call(a, "Delete", pb.DeleteRequest(id="a"), pb.DeleteResponse)
    _shutdown(a, "a")
    assert wait_gone(shim, 10)
    assert pid_alive(lone_shim)
    call(lone, "Kill", pb.KillRequest(id="lone", signal=9))
    call(lone, "Wait", pb.WaitRequest(id="lone"), pb.WaitResponse)
    call(lone, "Delete", pb.DeleteRequest(id="lone"), pb.DeleteResponse)
    _shutdown(lone, "lone")
    assert wait_gone(lone_shim, 10)
