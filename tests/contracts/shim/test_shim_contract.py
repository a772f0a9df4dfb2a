"""The shim's contract (``pallet.core.contracts.ShimTask``): containerd's shim v2
wire protocol, against every shim binary (see conftest.py).

Each test drives a shim exactly as containerd does: the ``start`` verb in
the bundle prints the ttrpc address and the shim lives on detached;
``containerd.task.v2.Task`` calls over ttrpc; task events forwarded to
``TTRPC_ADDRESS``; the ``delete`` verb after a shim is gone.  The expected
answers are containerd's runc shim's, which pallet-shim must match.
"""
from __future__ import annotations

import os
import signal

import pytest

from pallet.core import errors
from pallet.proto import shim_task as messages
from pallet.proto.containerd.task.v2 import shim_pb2 as pb
from pallet.proto.containerd.types.task import task_pb2
from google.protobuf import any_pb2, empty_pb2

from shimtest_util import pid_alive, read_to_eof, wait_for, wait_gone

pytestmark = pytest.mark.root
TASK = "containerd.task.v2.Task"
PROCESS_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process"
METRICS_TYPE = "io.containerd.cgroups.v1.Metrics"


def call(client, method: str, request, response=empty_pb2.Empty, timeout: float = 30):
    return client.call(TASK, method, request, response, timeout=timeout)


def fifo(shims, name: str) -> tuple[str, int]:
    """A FIFO for a process's output, opened for reading (non-blocking)."""
    path = os.path.join(shims.base, name)
    os.mkfifo(path, 0o600)
    return path, os.open(path, os.O_RDONLY | os.O_NONBLOCK)


def started_task(shims, id: str, args, **bundle_kw):
    """A shim started for ``id`` and its task created: (client, bundle, pid, output fd)."""
    bundle = shims.bundle(id, args, **bundle_kw)
    address = shims.start(id, bundle)
    client = shims.connect(address)
    out, fd = fifo(shims, f"{id}.out")
    r = call(client, "Create", pb.CreateTaskRequest(
        id=id, bundle=bundle, rootfs=shims.rootfs_mounts(), stdout=out, stderr=out),
        pb.CreateTaskResponse)
    return client, bundle, r.pid, fd


def test_start_verb_create_start_wait_delete_shutdown(shims):
    id = "life"
    bundle = shims.bundle(id, ["sh", "-c", "echo out-$$; echo err >&2; exit 7"])
    address = shims.start(id, bundle)
    assert address.startswith("unix://")
    client = shims.connect(address)
    shim = shims.shim_pid(client)
    assert pid_alive(shim) and shim != os.getpid()
    # a second start verb for the same task finds the shim that serves it
    assert shims.start(id, bundle) == address
    out, fd = fifo(shims, "life.out")
    created = call(client, "Create", pb.CreateTaskRequest(
        id=id, bundle=bundle, rootfs=shims.rootfs_mounts(), stdout=out, stderr=out),
        pb.CreateTaskResponse)
    assert created.pid > 0
    st = call(client, "State", pb.StateRequest(id=id), pb.StateResponse)
    assert (st.id, st.pid, st.status, st.bundle) == (id, created.pid, task_pb2.CREATED, bundle)
    assert call(client, "Start", pb.StartRequest(id=id), pb.StartResponse).pid == created.pid
    w = call(client, "Wait", pb.WaitRequest(id=id), pb.WaitResponse)
    assert w.exit_status == 7 and w.exited_at.seconds > 0
    assert read_to_eof(fd) in (b"out-1\nerr\n", b"err\nout-1\n")
    st = call(client, "State", pb.StateRequest(id=id), pb.StateResponse)
    assert (st.status, st.exit_status) == (task_pb2.STOPPED, 7)
    d = call(client, "Delete", pb.DeleteRequest(id=id), pb.DeleteResponse)
    assert (d.pid, d.exit_status) == (created.pid, 7)
    with pytest.raises(errors.NotFound):
        call(client, "State", pb.StateRequest(id=id), pb.StateResponse)
    # the task's events went to TTRPC_ADDRESS, in order
    shims.events.wait_topic("/tasks/delete")
    topics = [t for t in shims.events.topics() if t.startswith("/tasks/")]
    assert topics == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    exit_event = shims.events.wait_topic("/tasks/exit")[0]
    assert (exit_event.container_id, exit_event.id, exit_event.pid, exit_event.exit_status) == \
        (id, id, created.pid, 7)
    assert {e.namespace for e in shims.events.envelopes} == {shims.namespace}
    # Shutdown ends the shim once its task is deleted
    try:
        call(client, "Shutdown", pb.ShutdownRequest(id=id), timeout=10)
    except errors.Unavailable:
        pass  # the shim may go before its answer arrives
    assert wait_gone(shim, 10)


def test_kill_signals_and_refusals(shims):
    id = "kill"
    client, bundle, pid, fd = started_task(shims, id, ["sleep", "1000"])
    call(client, "Start", pb.StartRequest(id=id), pb.StartResponse)
    with pytest.raises(errors.PalletError):
        call(client, "Start", pb.StartRequest(id=id), pb.StartResponse)  # started already
    # containerd's runc shim answers UNKNOWN, pallet-shim FAILED_PRECONDITION
    with pytest.raises(errors.PalletError, match="cannot delete a running process"):
        call(client, "Delete", pb.DeleteRequest(id=id), pb.DeleteResponse)
    with pytest.raises(errors.NotFound):
        call(client, "State", pb.StateRequest(id=id, exec_id="nope"), pb.StateResponse)
    call(client, "Kill", pb.KillRequest(id=id, signal=signal.SIGKILL))
    w = call(client, "Wait", pb.WaitRequest(id=id), pb.WaitResponse)
    assert w.exit_status == 137
    read_to_eof(fd)
    with pytest.raises(errors.NotFound):
        call(client, "Kill", pb.KillRequest(id=id, signal=signal.SIGKILL))  # finished
    d = call(client, "Delete", pb.DeleteRequest(id=id), pb.DeleteResponse)
    assert (d.pid, d.exit_status) == (pid, 137)
    assert not pid_alive(pid)


def test_exec_processes(shims):
    id = "exec"
    client, bundle, pid, fd = started_task(shims, id, ["sleep", "1000"])
    call(client, "Start", pb.StartRequest(id=id), pb.StartResponse)
    out, efd = fifo(shims, "exec-e1.out")
    process = (b'{"args":["sh","-c","echo in-exec; exit 3"],"cwd":"/","user":{"uid":0,"gid":0},'
               b'"env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}')
    call(client, "Exec", pb.ExecProcessRequest(
        id=id, exec_id="e1", stdout=out, stderr=out,
        spec=any_pb2.Any(type_url=PROCESS_TYPE, value=process)))
    with pytest.raises(errors.AlreadyExists):
        call(client, "Exec", pb.ExecProcessRequest(
            id=id, exec_id="e1", spec=any_pb2.Any(type_url=PROCESS_TYPE, value=process)))
    st = call(client, "State", pb.StateRequest(id=id, exec_id="e1"), pb.StateResponse)
    assert st.status == task_pb2.CREATED
    epid = call(client, "Start", pb.StartRequest(id=id, exec_id="e1"), pb.StartResponse).pid
    assert epid > 0 and epid != pid
    w = call(client, "Wait", pb.WaitRequest(id=id, exec_id="e1"), pb.WaitResponse)
    assert w.exit_status == 3
    assert read_to_eof(efd) == b"in-exec\n"
    d = call(client, "Delete", pb.DeleteRequest(id=id, exec_id="e1"), pb.DeleteResponse)
    assert (d.pid, d.exit_status) == (epid, 3)
    with pytest.raises(errors.NotFound):
        call(client, "State", pb.StateRequest(id=id, exec_id="e1"), pb.StateResponse)
    # the task itself runs on, untouched
    st = call(client, "State", pb.StateRequest(id=id), pb.StateResponse)
    assert st.status == task_pb2.RUNNING
    exits = shims.events.wait_topic("/tasks/exit")
    assert [(e.container_id, e.id, e.pid, e.exit_status) for e in exits] == \
        [(id, "e1", epid, 3)]
    assert shims.events.wait_topic("/tasks/exec-added")[0].exec_id == "e1"
    assert shims.events.wait_topic("/tasks/exec-started")[0].pid == epid
    call(client, "Kill", pb.KillRequest(id=id, signal=signal.SIGKILL, all=True))
    assert call(client, "Wait", pb.WaitRequest(id=id), pb.WaitResponse).exit_status == 137
    call(client, "Delete", pb.DeleteRequest(id=id), pb.DeleteResponse)
    read_to_eof(fd)


def test_pids_pause_resume_stats(shims):
    id = "cg"
    client, bundle, pid, fd = started_task(shims, id, ["sleep", "1000"], cgroup=True)
    call(client, "Start", pb.StartRequest(id=id), pb.StartResponse)
    pids = call(client, "Pids", pb.PidsRequest(id=id), pb.PidsResponse)
    assert [p.pid for p in pids.processes] == [pid]
    call(client, "Pause", pb.PauseRequest(id=id))
    assert call(client, "State", pb.StateRequest(id=id), pb.StateResponse).status == \
        task_pb2.PAUSED
    shims.events.wait_topic("/tasks/paused")
    call(client, "Resume", pb.ResumeRequest(id=id))
    assert call(client, "State", pb.StateRequest(id=id), pb.StateResponse).status == \
        task_pb2.RUNNING
    shims.events.wait_topic("/tasks/resumed")
    stats = call(client, "Stats", pb.StatsRequest(id=id), pb.StatsResponse).stats
    assert stats.type_url.rsplit("/", 1)[-1] == METRICS_TYPE
    m = messages.Metrics.decode(stats.value)
    assert m.pids.current == 1 and m.memory.usage.usage > 0
    call(client, "Kill", pb.KillRequest(id=id, signal=signal.SIGKILL))
    assert call(client, "Wait", pb.WaitRequest(id=id), pb.WaitResponse).exit_status == 137
    call(client, "Delete", pb.DeleteRequest(id=id), pb.DeleteResponse)
    read_to_eof(fd)


def test_delete_verb_after_the_shim_died(shims):
    """containerd runs the delete verb when a shim is gone: the container goes
    too, and the answer is a DeleteResponse."""
    id = "dead"
    client, bundle, pid, fd = started_task(shims, id, ["sleep", "1000"])
    call(client, "Start", pb.StartRequest(id=id), pb.StartResponse)
    shim = shims.shim_pid(client)
    os.kill(shim, signal.SIGKILL)
    assert wait_gone(shim, 10)
    r = shims.delete_verb(id, bundle)
    assert r.returncode == 0, r.stderr
    resp = pb.DeleteResponse.FromString(r.stdout)
    assert resp.exit_status == 137 and resp.exited_at.seconds > 0
    assert wait_for(lambda: not pid_alive(pid))
    with open("/proc/self/mountinfo") as f:
        assert os.path.join(bundle, "rootfs") not in f.read()
