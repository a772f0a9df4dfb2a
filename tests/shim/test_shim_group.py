"""One pallet-shim for a group of tasks (a Kubernetes pod), as containerd's runc shim:
the tasks whose specs carry the same ``io.kubernetes.cri.sandbox-id`` are served by
the first one's shim, each with its own bundle, stdio and exit; Delete of one
leaves the others served, and Shutdown ends the shim only once none is left."""
from __future__ import annotations

import json
import os

import pytest

from pallet.core import errors
from pallet.proto.containerd.task.v2 import shim_pb2 as pb
from pallet.proto.containerd.types import mount_pb2
from pallet.proto.containerd.types.task import task_pb2
from pallet.shim import launch, main

from shimtest_util import pid_alive, read_to_eof, wait_gone
from test_shim import Shim

SANDBOX_ID = "io.kubernetes.cri.sandbox-id"


def grouped(env, busybox_rootfs, group, args, *, use_zygote=True):
    """A task of ``group`` (None: none), created in whatever shim start answers with."""
    cid = env.new_id()
    bundle = env.bundle(cid, args)
    if group is not None:
        path = os.path.join(bundle, "config.json")
        with open(path) as f:
            spec = json.load(f)
        spec["annotations"] = {SANDBOX_ID: group, "io.kubernetes.cri.container-type":
                               "container"}
        with open(path, "w") as f:
            json.dump(spec, f)
    address = launch.start_shim(env.namespace, cid, bundle, env.address, env.paths,
                                use_zygote=use_zygote)
    shim = Shim.__new__(Shim)
    shim.env, shim.id, shim.bundle, shim.address, shim.fds = env, cid, bundle, address, []
    from pallet.ttrpc import protocol as ttrpc

    shim.client = ttrpc.Client(address)
    env.clients.append(shim.client)
    shim.stdout = env.fifo(cid, "init-stdout")
    shim.out_fd = os.open(shim.stdout, os.O_RDONLY | os.O_NONBLOCK)
    shim.fds.append(shim.out_fd)
    rootfs = [mount_pb2.Mount(type="bind", source=busybox_rootfs, options=["rbind", "ro"])]
    shim.task_pid = shim.call("Create", pb.CreateTaskRequest(
        id=cid, bundle=bundle, rootfs=rootfs, stdout=shim.stdout), pb.CreateTaskResponse).pid
    shim.pid = env.shim_pid(bundle)  # every task's bundle names the shim serving it
    shim.call("Start", pb.StartRequest(id=cid), pb.StartResponse)
    return shim


def test_group_name_from_the_spec(tmp_path):
    bundle = str(tmp_path)
    assert main.shim_group(bundle, "c1") == "c1"   # no spec: a shim of its own
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump({"annotations": {SANDBOX_ID: "pod1"}}, f)
    assert main.shim_group(bundle, "c1") == "pod1"
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump({"annotations": {SANDBOX_ID: "pod1", "io.containerd.runc.v2.group": "g"}}, f)
    assert main.shim_group(bundle, "c1") == "g"
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump({"annotations": {"other": "x"}}, f)
    assert main.shim_group(bundle, "c1") == "c1"


@pytest.mark.parametrize("use_zygote", [False, True], ids=["exec", "zygote"])
def test_tasks_of_a_group_share_one_shim(env, busybox_rootfs, use_zygote):
    pod = "pod" + env.namespace
    a = grouped(env, busybox_rootfs, pod, ["sh", "-c", "echo a; exec sleep 100"],
                use_zygote=use_zygote)
    b = grouped(env, busybox_rootfs, pod, ["sh", "-c", "echo b; exit 7"], use_zygote=use_zygote)
    c = grouped(env, busybox_rootfs, pod, ["sh", "-c", "echo c; exec sleep 100"],
                use_zygote=use_zygote)
    alone = grouped(env, busybox_rootfs, None, ["sleep", "100"], use_zygote=use_zygote)
    assert a.address == b.address == c.address
    assert a.address == "unix://" + env.paths.shim_socket(env.namespace, pod)
    assert a.pid == b.pid == c.pid and pid_alive(a.pid)
    assert alone.pid != a.pid and alone.address != a.address
    with open(os.path.join(b.bundle, "address")) as f:
        assert f.read() == a.address
    # each task its own process, stdio, state and exit, through any connection
    assert len({a.task_pid, b.task_pid, c.task_pid}) == 3
    assert read_to_eof(b.out_fd) == b"b\n"
    assert a.call("Wait", pb.WaitRequest(id=b.id), pb.WaitResponse).exit_status == 7
    st = {s.id: a.call("State", pb.StateRequest(id=s.id), pb.StateResponse) for s in (a, b, c)}
    assert [st[s.id].status for s in (a, b, c)] == [task_pb2.RUNNING, task_pb2.STOPPED,
                                                     task_pb2.RUNNING]
    assert (st[b.id].bundle, st[b.id].exit_status) == (b.bundle, 7)
    conn = c.call("Connect", pb.ConnectRequest(id=c.id), pb.ConnectResponse)
    assert (conn.shim_pid, conn.task_pid) == (a.pid, c.task_pid)
    with open(os.path.join(b.bundle, "exit.json")) as f:
        assert json.load(f)["exit_status"] == 7
    # the exit event names its task
    ev = [e for e in env.sink.wait_topic("/tasks/exit") if e.container_id == b.id]
    assert [(e.id, e.exit_status) for e in ev] == [(b.id, 7)]
    # deleting one task and asking the shim to shut down leaves the others served
    assert b.call("Delete", pb.DeleteRequest(id=b.id), pb.DeleteResponse).exit_status == 7
    b.call("Shutdown", pb.ShutdownRequest(id=b.id))
    with pytest.raises(errors.NotFound):
        a.call("State", pb.StateRequest(id=b.id), pb.StateResponse)
    assert pid_alive(a.pid)
    assert a.call("State", pb.StateRequest(id=a.id), pb.StateResponse).status == \
        task_pb2.RUNNING
    # a task of the group started later joins the same shim
    d = grouped(env, busybox_rootfs, pod, ["sleep", "100"], use_zygote=use_zygote)
    assert d.pid == a.pid
    for s in (a, c, d):
        s.call("Kill", pb.KillRequest(id=s.id, signal=9))
        assert a.call("Wait", pb.WaitRequest(id=s.id), pb.WaitResponse).exit_status == 137
        s.call("Delete", pb.DeleteRequest(id=s.id), pb.DeleteResponse)
        s.call("Shutdown", pb.ShutdownRequest(id=s.id))
        if s is not d:
            assert pid_alive(a.pid)
    assert wait_gone(a.pid), "the group's shim still runs after its last task went"
    assert not os.path.exists(env.paths.shim_socket(env.namespace, pod))
    assert pid_alive(alone.pid)   # the shim of its own serves on
    alone.call("Kill", pb.KillRequest(id=alone.id, signal=9))
    alone.call("Wait", pb.WaitRequest(id=alone.id), pb.WaitResponse)
    alone.call("Delete", pb.DeleteRequest(id=alone.id), pb.DeleteResponse)
    alone.call("Shutdown", pb.ShutdownRequest(id=alone.id))
    assert wait_gone(alone.pid)
    for s in (a, b, c, d, alone):
        s.close_fds()


def test_delete_verb_of_a_dead_group_shim(env, busybox_rootfs):
    """After a kill -9 of a shared shim, each task's delete verb kills its container and
    reports how it ended (137), as for a shim of one task."""
    import signal
    import subprocess

    pod = "pod" + env.namespace
    a = grouped(env, busybox_rootfs, pod, ["sleep", "100"])
    b = grouped(env, busybox_rootfs, pod, ["sleep", "100"])
    os.kill(a.pid, signal.SIGKILL)
    assert wait_gone(a.pid)
    for s in (a, b):
        proc = subprocess.run(launch.shim_command() + [
            "-namespace", env.namespace, "-id", s.id, "-address", env.address, "-bundle",
            s.bundle, "delete"], cwd=s.bundle, capture_output=True,
            env=launch._shim_env(env.namespace, s.id, env.address, env.paths, s.bundle))
        assert proc.returncode == 0, proc.stderr
        assert pb.DeleteResponse.FromString(proc.stdout).exit_status == 137
        assert wait_gone(s.task_pid)
        s.close_fds()
    assert not os.path.exists(env.paths.shim_socket(env.namespace, pod))
