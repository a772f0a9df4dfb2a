"""pallet-shim end to end: started detached for real, driven over ttrpc, its events
received by a sink standing for containerd."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from pallet.core import errors
from pallet.proto.containerd.task.v2 import shim_pb2 as pb
from pallet.proto.containerd.types import mount_pb2
from pallet.proto.containerd.types.task import task_pb2
from pallet.ttrpc import protocol as ttrpc
from pallet.shim import launch
from pallet.proto import shim_task as messages
from google.protobuf import any_pb2

from shimtest_util import (EventSink, is_mounted, parent_of, pid_alive, pid_exists, read_to_eof,
                           wait_for, wait_gone)

TASK = "containerd.task.v2.Task"
PROCESS_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"


def read_until(fd: int, needle: bytes, timeout: float = 10.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not read within {timeout}s (got {out!r})")
        select.select([fd], [], [], 0.1)
        try:
            out += os.read(fd, 65536)
        except BlockingIOError:
            pass
    return out


class Shim:
    def __init__(self, env, cid, bundle, address):
        self.env, self.id, self.bundle, self.address = env, cid, bundle, address
        self.client = ttrpc.Client(address)
        env.clients.append(self.client)
        self.pid = env.shim_pid(bundle)
        self.fds = []

    def call(self, method, req, resp_cls=None, timeout=30):
        return self.client.call(TASK, method, req, resp_cls, timeout=timeout)

    def close_fds(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def launch_shim(env, cid, bundle, *, use_zygote=True):
    address = launch.start_shim(env.namespace, cid, bundle, env.address, env.paths,
                                use_zygote=use_zygote)
    assert address == "unix://" + env.paths.shim_socket(env.namespace, cid)
    return Shim(env, cid, bundle, address)


def start(env, busybox_rootfs, args, *, use_zygote=True, stdin=False, terminal=False,
          options=None, **spec_kw):
    cid = env.new_id()
    bundle = env.bundle(cid, args, terminal=terminal, **spec_kw)
    shim = launch_shim(env, cid, bundle, use_zygote=use_zygote)
    shim.stdout = env.fifo(cid, "init-stdout")
    shim.stderr = "" if terminal else env.fifo(cid, "init-stderr")
    shim.stdin = env.fifo(cid, "init-stdin") if stdin else ""
    shim.out_fd = os.open(shim.stdout, os.O_RDONLY | os.O_NONBLOCK)
    shim.fds.append(shim.out_fd)
    if shim.stderr:
        shim.err_fd = os.open(shim.stderr, os.O_RDONLY | os.O_NONBLOCK)
        shim.fds.append(shim.err_fd)
    rootfs = [mount_pb2.Mount(type="bind", source=busybox_rootfs, options=["rbind", "ro"])]
    resp = shim.call("Create", pb.CreateTaskRequest(
        id=cid, bundle=bundle, rootfs=rootfs, stdin=shim.stdin, stdout=shim.stdout,
        stderr=shim.stderr, terminal=terminal, options=options), pb.CreateTaskResponse)
    assert resp.pid > 0
    shim.task_pid = resp.pid
    return shim


def finish(shim):
    """Delete the task and shut the shim down; it must go."""
    shim.call("Delete", pb.DeleteRequest(id=shim.id), pb.DeleteResponse)
    shim.call("Shutdown", pb.ShutdownRequest(id=shim.id))
    assert wait_gone(shim.pid), "shim still running after Shutdown"
    shim.close_fds()


def process_any(args, terminal=False, **extra) -> any_pb2.Any:
    proc = {"args": args, "env": ["PATH=/bin:/usr/bin"], "cwd": "/", "terminal": terminal,
            "user": {"uid": 0, "gid": 0}}
    proc.update(extra)
    return any_pb2.Any(type_url=PROCESS_TYPE, value=json.dumps(proc).encode())


@pytest.mark.parametrize("use_zygote", [False, True], ids=["exec", "zygote"])
def test_exit_code_output_and_events(env, busybox_rootfs, use_zygote):
    shim = start(env, busybox_rootfs, ["sh", "-c", "echo hello; echo oops >&2; exit 7"],
                 use_zygote=use_zygote)
    st = shim.call("State", pb.StateRequest(id=shim.id), pb.StateResponse)
    assert st.status == task_pb2.CREATED and st.pid == shim.task_pid
    assert st.stdout == shim.stdout and st.bundle == shim.bundle
    assert is_mounted(os.path.join(shim.bundle, "rootfs"))
    conn = shim.call("Connect", pb.ConnectRequest(id=shim.id), pb.ConnectResponse)
    assert (conn.shim_pid, conn.task_pid) == (shim.pid, shim.task_pid)
    assert shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse).pid == shim.task_pid
    w = shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse)
    assert w.exit_status == 7 and w.exited_at.seconds > 0
    assert read_to_eof(shim.out_fd) == b"hello\n"
    assert read_to_eof(shim.err_fd) == b"oops\n"
    st = shim.call("State", pb.StateRequest(id=shim.id), pb.StateResponse)
    assert st.status == task_pb2.STOPPED and st.exit_status == 7
    with open(os.path.join(shim.bundle, "exit.json")) as f:
        assert json.load(f)["exit_status"] == 7
    d = shim.call("Delete", pb.DeleteRequest(id=shim.id), pb.DeleteResponse)
    assert (d.pid, d.exit_status) == (shim.task_pid, 7)
    assert not is_mounted(os.path.join(shim.bundle, "rootfs"))
    with pytest.raises(errors.NotFound):
        shim.call("State", pb.StateRequest(id=shim.id), pb.StateResponse)
    shim.call("Shutdown", pb.ShutdownRequest(id=shim.id))
    assert wait_gone(shim.pid), "shim still running after Shutdown"
    assert not os.path.exists(env.paths.shim_socket(env.namespace, shim.id))
    shim.close_fds()
    # the events containerd gets from its shim, in order
    exit_ev = env.sink.wait_topic("/tasks/exit")[0]
    assert (exit_ev.container_id, exit_ev.id, exit_ev.pid, exit_ev.exit_status) == \
        (shim.id, shim.id, shim.task_pid, 7)
    env.sink.wait_topic("/tasks/delete")
    assert env.sink.topics() == ["/tasks/create", "/tasks/start", "/tasks/exit",
                                 "/tasks/delete"]
    create = env.sink.events[0][1]
    assert (create.container_id, create.pid, create.io.stdout) == \
        (shim.id, shim.task_pid, shim.stdout)
    assert all(e.namespace == env.namespace for e in env.sink.envelopes)


def test_kill_9_gives_137_and_wait_does_not_block_other_calls(env, busybox_rootfs):
    shim = start(env, busybox_rootfs, ["sleep", "1000"])
    shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault(
        "w", shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse)))
    t.start()
    time.sleep(0.2)
    st = shim.call("State", pb.StateRequest(id=shim.id), pb.StateResponse)
    assert st.status == task_pb2.RUNNING
    pids = shim.call("Pids", pb.PidsRequest(id=shim.id), pb.PidsResponse)
    assert shim.task_pid in [p.pid for p in pids.processes]
    with pytest.raises(errors.FailedPrecondition):
        shim.call("Delete", pb.DeleteRequest(id=shim.id), pb.DeleteResponse)
    # a shim with a live task stays up after a Shutdown without `now`
    shim.call("Shutdown", pb.ShutdownRequest(id=shim.id))
    assert pid_alive(shim.pid)
    shim.call("Kill", pb.KillRequest(id=shim.id, signal=signal.SIGKILL, all=True))
    t.join(10)
    assert box["w"].exit_status == 137
    with pytest.raises(errors.NotFound):
        shim.call("Kill", pb.KillRequest(id=shim.id, signal=signal.SIGKILL))
    d = shim.call("Delete", pb.DeleteRequest(id=shim.id), pb.DeleteResponse)
    assert d.exit_status == 137
    shim.call("Shutdown", pb.ShutdownRequest(id=shim.id))
    assert wait_gone(shim.pid)
    shim.close_fds()


def test_stdin_and_close_io(env, busybox_rootfs):
    shim = start(env, busybox_rootfs, ["sh", "-c", "cat; exit 3"], stdin=True)
    shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse)
    w = os.open(shim.stdin, os.O_WRONLY)
    os.write(w, b"through stdin\n")
    os.close(w)
    # the shim keeps the fifo open: no EOF for cat until CloseIO
    time.sleep(0.3)
    assert shim.call("State", pb.StateRequest(id=shim.id), pb.StateResponse).status == \
        task_pb2.RUNNING
    shim.call("CloseIO", pb.CloseIORequest(id=shim.id, stdin=True))
    r = shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse, timeout=10)
    assert r.exit_status == 3
    assert read_to_eof(shim.out_fd) == b"through stdin\n"
    finish(shim)


def test_exec_processes(env, busybox_rootfs):
    shim = start(env, busybox_rootfs, ["sleep", "1000"], cgroup=True)
    # no exec before the task runs? containerd allows adding one to a created task
    shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse)
    out = env.fifo(shim.id, "e1-stdout")
    out_fd = os.open(out, os.O_RDONLY | os.O_NONBLOCK)
    shim.call("Exec", pb.ExecProcessRequest(
        id=shim.id, exec_id="e1", stdout=out,
        spec=process_any(["sh", "-c", "echo in-exec $(cat /proc/1/cmdline | tr '\\0' ' '); "
                                      "exit 5"])))
    with pytest.raises(errors.AlreadyExists):
        shim.call("Exec", pb.ExecProcessRequest(id=shim.id, exec_id="e1",
                                                spec=process_any(["true"])))
    st = shim.call("State", pb.StateRequest(id=shim.id, exec_id="e1"), pb.StateResponse)
    assert st.status == task_pb2.CREATED and st.exec_id == "e1"
    pid = shim.call("Start", pb.StartRequest(id=shim.id, exec_id="e1"), pb.StartResponse).pid
    assert pid > 0 and pid != shim.task_pid
    w = shim.call("Wait", pb.WaitRequest(id=shim.id, exec_id="e1"), pb.WaitResponse)
    assert w.exit_status == 5
    assert read_to_eof(out_fd) == b"in-exec sleep 1000\n"
    os.close(out_fd)
    d = shim.call("Delete", pb.DeleteRequest(id=shim.id, exec_id="e1"), pb.DeleteResponse)
    assert (d.pid, d.exit_status) == (pid, 5)
    with pytest.raises(errors.NotFound):
        shim.call("State", pb.StateRequest(id=shim.id, exec_id="e1"), pb.StateResponse)
    # a long one: listed by Pids with its exec id, killed on its own
    shim.call("Exec", pb.ExecProcessRequest(id=shim.id, exec_id="e2",
                                            spec=process_any(["sleep", "500"])))
    pid2 = shim.call("Start", pb.StartRequest(id=shim.id, exec_id="e2"), pb.StartResponse).pid
    procs = shim.call("Pids", pb.PidsRequest(id=shim.id), pb.PidsResponse).processes
    infos = {p.pid: p.info for p in procs}
    assert set(infos) == {shim.task_pid, pid2}
    assert messages.ProcessDetails.decode(infos[pid2].value).exec_id == "e2"
    with pytest.raises(errors.FailedPrecondition):
        shim.call("Delete", pb.DeleteRequest(id=shim.id, exec_id="e2"), pb.DeleteResponse)
    shim.call("Kill", pb.KillRequest(id=shim.id, exec_id="e2", signal=signal.SIGTERM))
    w = shim.call("Wait", pb.WaitRequest(id=shim.id, exec_id="e2"), pb.WaitResponse)
    assert w.exit_status == 128 + signal.SIGTERM
    assert pid_alive(shim.task_pid)
    assert [e.exec_id for e in env.sink.wait_topic("/tasks/exec-added", count=2)] == ["e1", "e2"]
    exits = [e for e in env.sink.wait_topic("/tasks/exit", count=2)]
    assert [(e.id, e.exit_status) for e in exits] == [("e1", 5), ("e2", 143)]
    # a bad spec is refused with a clear error
    with pytest.raises(errors.InvalidArgument, match="args"):
        shim.call("Exec", pb.ExecProcessRequest(id=shim.id, exec_id="e3",
                                                spec=process_any([])))
    shim.call("Kill", pb.KillRequest(id=shim.id, signal=signal.SIGKILL, all=True))
    shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse)
    with pytest.raises(errors.FailedPrecondition):
        shim.call("Exec", pb.ExecProcessRequest(id=shim.id, exec_id="e4",
                                                spec=process_any(["true"])))
    finish(shim)


def test_terminal_resize_and_exec_terminal(env, busybox_rootfs):
    shim = start(env, busybox_rootfs, ["sh"], stdin=True, terminal=True)
    shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse)
    shim.call("ResizePty", pb.ResizePtyRequest(id=shim.id, width=101, height=37))
    w = os.open(shim.stdin, os.O_WRONLY)
    os.write(w, b"tty; stty size; echo done-$((6*7))\n")
    out = read_until(shim.out_fd, b"done-42")
    assert b"/dev/pts/0" in out and b"37 101" in out
    # an exec with a terminal of its own
    eout = env.fifo(shim.id, "e-stdout")
    ein = env.fifo(shim.id, "e-stdin")
    efd = os.open(eout, os.O_RDONLY | os.O_NONBLOCK)
    shim.call("Exec", pb.ExecProcessRequest(id=shim.id, exec_id="t1", terminal=True,
                                            stdin=ein, stdout=eout,
                                            spec=process_any(["sh"], terminal=True)))
    shim.call("Start", pb.StartRequest(id=shim.id, exec_id="t1"), pb.StartResponse)
    shim.call("ResizePty", pb.ResizePtyRequest(id=shim.id, exec_id="t1", width=77, height=11))
    ew = os.open(ein, os.O_WRONLY)
    os.write(ew, b"stty size; exit 4\n")
    got = read_until(efd, b"11 77")
    assert b"11 77" in got
    r = shim.call("Wait", pb.WaitRequest(id=shim.id, exec_id="t1"), pb.WaitResponse)
    assert r.exit_status == 4
    os.close(ew)
    os.close(efd)
    # ^D through CloseIO ends the shell of the task
    shim.call("CloseIO", pb.CloseIORequest(id=shim.id, stdin=True))
    r = shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse, timeout=10)
    assert r.exit_status == 0
    os.close(w)
    finish(shim)


def test_pause_resume_stats_update(env, busybox_rootfs):
    shim = start(env, busybox_rootfs, ["sh", "-c", "while true; do echo x >/dev/null; "
                                                   "sleep 0.05; done"], cgroup=True)
    shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse)
    shim.call("Pause", pb.PauseRequest(id=shim.id))
    assert shim.call("State", pb.StateRequest(id=shim.id), pb.StateResponse).status == \
        task_pb2.PAUSED
    with pytest.raises(errors.FailedPrecondition):
        shim.call("Pause", pb.PauseRequest(id=shim.id))
    cg = env.cgroups[0]
    with open(f"/sys/fs/cgroup/freezer{cg}/freezer.state") as f:
        assert f.read().strip() == "FROZEN"
    shim.call("Resume", pb.ResumeRequest(id=shim.id))
    assert shim.call("State", pb.StateRequest(id=shim.id), pb.StateResponse).status == \
        task_pb2.RUNNING
    assert env.sink.wait_topic("/tasks/paused") and env.sink.wait_topic("/tasks/resumed")
    stats = shim.call("Stats", pb.StatsRequest(id=shim.id), pb.StatsResponse).stats
    assert stats.type_url == "io.containerd.cgroups.v1.Metrics"
    m = messages.Metrics.decode(stats.value)
    assert m.pids.current >= 1 and m.memory.usage.usage > 0 and m.cpu.usage.total > 0
    assert len(m.cpu.usage.per_cpu) == os.cpu_count()
    res = {"memory": {"limit": 64 << 20}, "cpu": {"shares": 512}, "pids": {"limit": 50}}
    shim.call("Update", pb.UpdateTaskRequest(id=shim.id, resources=any_pb2.Any(
        type_url=RESOURCES_TYPE, value=json.dumps(res).encode())))
    with open(f"/sys/fs/cgroup/memory{cg}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 64 << 20
    with open(f"/sys/fs/cgroup/cpu{cg}/cpu.shares") as f:
        assert int(f.read()) == 512
    with open(f"/sys/fs/cgroup/pids{cg}/pids.max") as f:
        assert f.read().strip() == "50"
    m = messages.Metrics.decode(shim.call("Stats", pb.StatsRequest(id=shim.id),
                                          pb.StatsResponse).stats.value)
    assert m.memory.usage.limit == 64 << 20 and m.pids.limit == 50
    with pytest.raises(errors.InvalidArgument):
        shim.call("Update", pb.UpdateTaskRequest(id=shim.id))
    shim.call("Kill", pb.KillRequest(id=shim.id, signal=signal.SIGKILL, all=True))
    shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse)
    finish(shim)
    assert not os.path.exists(f"/sys/fs/cgroup/memory{cg}")


def test_oom_event(env, busybox_rootfs):
    # a shell that doubles a string until the cgroup's 16 MiB are gone
    shim = start(env, busybox_rootfs, ["sh", "-c", "x=aaaaaaaa; while true; do x=$x$x; done"],
                 cgroup=True, memory_limit=16 << 20)
    shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse)
    r = shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse, timeout=60)
    assert r.exit_status == 137
    oom = env.sink.wait_topic("/tasks/oom")[0]
    assert oom.container_id == shim.id
    m = shim.call("State", pb.StateRequest(id=shim.id), pb.StateResponse)
    assert m.exit_status == 137
    finish(shim)


def test_unimplemented_and_wrong_ids(env, busybox_rootfs):
    shim = start(env, busybox_rootfs, ["true"])
    with pytest.raises(errors.NotImplementedYet, match="checkpoint"):
        shim.call("Checkpoint", pb.CheckpointTaskRequest(id=shim.id, path="/tmp/x"))
    with pytest.raises(errors.NotFound):
        shim.call("State", pb.StateRequest(id=shim.id, exec_id="nope"), pb.StateResponse)
    with pytest.raises(errors.NotFound):
        shim.call("State", pb.StateRequest(id="other"), pb.StateResponse)
    with pytest.raises(errors.AlreadyExists):
        shim.call("Create", pb.CreateTaskRequest(id=shim.id, bundle=shim.bundle))
    with pytest.raises(errors.FailedPrecondition):
        shim.call("Pause", pb.PauseRequest(id=shim.id))  # not running yet
    with pytest.raises(errors.NotImplementedYet):
        shim.call("Nope", pb.PauseRequest(id=shim.id))
    # deleting a created task kills its waiting process
    d = shim.call("Delete", pb.DeleteRequest(id=shim.id), pb.DeleteResponse)
    assert d.exit_status == 137
    assert wait_gone(shim.task_pid)
    shim.call("Shutdown", pb.ShutdownRequest(id=shim.id))
    assert wait_gone(shim.pid)
    shim.close_fds()


def test_checkpoint_restore_refused(env, busybox_rootfs):
    cid = env.new_id()
    bundle = env.bundle(cid, ["true"])
    shim = launch_shim(env, cid, bundle)
    with pytest.raises(errors.NotImplementedYet, match="checkpoint"):
        shim.call("Create", pb.CreateTaskRequest(id=cid, bundle=bundle, checkpoint="/tmp/cp"))
    shim.call("Shutdown", pb.ShutdownRequest(id=cid))
    assert wait_gone(shim.pid)


def test_runc_binary_from_the_runtime_options(env, busybox_rootfs):
    """BinaryName in runc's options: the shim drives that binary (Debian's runc here)."""
    runc_root = os.path.join(env.root, "runc")
    opts = messages.RuncOptions(binary_name="runc", root=runc_root)
    options = any_pb2.Any(type_url="containerd.runc.v1.Options", value=opts.encode())
    shim = start(env, busybox_rootfs, ["sh", "-c", "echo via-runc; sleep 1000"], options=options,
                 cgroup=True)
    assert os.path.exists(os.path.join(runc_root, shim.id, "state.json"))
    state = json.loads(subprocess.run(["runc", "--root", runc_root, "state", shim.id],
                                      capture_output=True, check=True).stdout)
    assert state["status"] == "created" and state["pid"] == shim.task_pid
    shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse)
    assert read_until(shim.out_fd, b"via-runc\n")
    # the container's PID 1 was runc's child: it is ours now, as a subreaper's
    assert parent_of(shim.task_pid) == shim.pid
    out = env.fifo(shim.id, "e-out")
    fd = os.open(out, os.O_RDONLY | os.O_NONBLOCK)
    shim.call("Exec", pb.ExecProcessRequest(id=shim.id, exec_id="r1", stdout=out,
                                            spec=process_any(["sh", "-c", "echo ex; exit 9"])))
    shim.call("Start", pb.StartRequest(id=shim.id, exec_id="r1"), pb.StartResponse)
    assert shim.call("Wait", pb.WaitRequest(id=shim.id, exec_id="r1"),
                     pb.WaitResponse).exit_status == 9
    assert read_to_eof(fd) == b"ex\n"
    os.close(fd)
    shim.call("Pause", pb.PauseRequest(id=shim.id))
    assert json.loads(subprocess.run(["runc", "--root", runc_root, "state", shim.id],
                                     capture_output=True).stdout)["status"] == "paused"
    shim.call("Resume", pb.ResumeRequest(id=shim.id))
    with pytest.raises(errors.PalletError, match="nope|not|invalid|unknown"):
        shim.call("Kill", pb.KillRequest(id=shim.id, signal=99999))
    # PID 1 of a PID namespace ignores what it has no handler for: SIGKILL it
    shim.call("Kill", pb.KillRequest(id=shim.id, signal=signal.SIGKILL))
    assert shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse).exit_status == 137
    finish(shim)
    assert not os.path.exists(os.path.join(runc_root, shim.id))
    with open(os.path.join(shim.bundle, "options.json")) as f:
        assert json.load(f)["binary_name"] == "runc"


def test_runc_binary_missing_is_a_clear_error(env, busybox_rootfs):
    opts = messages.RuncOptions(binary_name="/no/such/runc")
    cid = env.new_id()
    bundle = env.bundle(cid, ["true"])
    shim = launch_shim(env, cid, bundle)
    with pytest.raises(errors.NotFound, match="/no/such/runc"):
        shim.call("Create", pb.CreateTaskRequest(
            id=cid, bundle=bundle, options=any_pb2.Any(type_url="containerd.runc.v1.Options",
                                                       value=opts.encode())))
    shim.call("Shutdown", pb.ShutdownRequest(id=cid))
    assert wait_gone(shim.pid)


def test_events_wait_for_containerd_to_come_back(env, busybox_rootfs):
    """An exit while containerd's endpoint is gone is delivered once it is back."""
    shim = start(env, busybox_rootfs, ["sleep", "1000"])
    shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse)
    env.sink.wait_topic("/tasks/start")
    env.sink.close()
    shim.call("Kill", pb.KillRequest(id=shim.id, signal=signal.SIGKILL))
    assert shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse).exit_status == 137
    time.sleep(0.5)
    env.sink = EventSink(env.address + ".ttrpc")  # containerd restarted
    exit_ev = env.sink.wait_topic("/tasks/exit", timeout=15)[0]
    assert (exit_ev.container_id, exit_ev.exit_status) == (shim.id, 137)
    finish(shim)


def test_shim_ends_itself_after_delete_without_shutdown(env, busybox_rootfs, monkeypatch):
    monkeypatch.setenv("PALLET_SHIM_EXIT_AFTER_DELETE", "0.5")
    shim = start(env, busybox_rootfs, ["true"], use_zygote=False)
    shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse)
    shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse)
    shim.call("Delete", pb.DeleteRequest(id=shim.id), pb.DeleteResponse)
    assert wait_gone(shim.pid, 10), "a shim whose task is deleted must end"
    shim.close_fds()


def test_zygote_owns_and_reaps_its_shims(env, busybox_rootfs):
    """Shims are the zygote's children; a killed shim's container comes to the
    zygote, which reaps it: no zombie is left, even under an init that does not reap."""
    a = start(env, busybox_rootfs, ["sleep", "1000"])
    b = start(env, busybox_rootfs, ["sleep", "1000"])
    for s in (a, b):
        s.call("Start", pb.StartRequest(id=s.id), pb.StartResponse)
    zygotes = env.zygote_pids()
    assert len(zygotes) == 1
    zygote = zygotes[0]
    assert parent_of(a.pid) == zygote and parent_of(b.pid) == zygote
    assert parent_of(a.task_pid) == a.pid
    os.kill(a.pid, signal.SIGKILL)
    assert wait_gone(a.pid)
    assert wait_for(lambda: not pid_exists(a.pid), 5), "the killed shim was not reaped"
    # its container lives on (as with containerd) until the delete verb runs
    assert pid_alive(a.task_pid) and parent_of(a.task_pid) == zygote
    out = subprocess.run(launch.shim_command() + [
        "-namespace", env.namespace, "-id", a.id, "-address", env.address, "-bundle", a.bundle,
        "delete"], cwd=a.bundle, capture_output=True, timeout=60,
        env=dict(os.environ, PALLET_RUNTIME_ROOT=os.path.join(env.paths.runtime_root,
                                                              env.namespace)))
    assert out.returncode == 0, out.stderr
    assert pb.DeleteResponse.FromString(out.stdout).exit_status == 137
    assert wait_for(lambda: not pid_exists(a.task_pid), 5), "the orphan was not reaped"
    assert not is_mounted(os.path.join(a.bundle, "rootfs"))
    assert pid_alive(b.task_pid)
    # the zygote lives on while it has shims, even with nobody connected
    launch.stop_zygote(env.paths)
    time.sleep(0.5)
    assert pid_alive(zygote)
    b.call("Kill", pb.KillRequest(id=b.id, signal=signal.SIGKILL))
    b.call("Wait", pb.WaitRequest(id=b.id), pb.WaitResponse)
    finish(b)
    # (it is our child, since this test started it: it may stay a zombie of ours)
    assert wait_for(lambda: not pid_alive(zygote), 10), "an idle zygote must end"
    a.close_fds()


def test_survives_its_parent_and_delete_verb(env, busybox_rootfs):
    """The shim lives on when whoever started it dies; ``delete`` cleans up after it."""
    cid = env.new_id(64)  # docker's ids are 64 hex digits
    bundle = env.bundle(cid, ["sleep", "1000"])
    # a short-lived parent (through the zygote it starts) starts the shim and is killed right after
    code = ("import sys, os\n"
            "from pallet.core.paths import Paths\n"
            "from pallet.shim import launch\n"
            f"a = launch.start_shim({env.namespace!r}, {cid!r}, {bundle!r}, {env.address!r}, "
            f"Paths({env.paths.data_root!r}, {env.paths.exec_root!r}))\n"
            "print(a, flush=True)\n"
            "os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    address = proc.stdout.decode().strip()
    shim = Shim(env, cid, bundle, address)
    assert pid_alive(shim.pid)
    with open(f"/proc/{shim.pid}/comm") as f:
        assert f.read().strip() == ("pallet-shim " + cid)[:15]
    with open(f"/proc/{shim.pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == f"pallet-shim {cid}".encode()
    assert os.getsid(shim.pid) == shim.pid  # its own session
    resp = shim.call("Create", pb.CreateTaskRequest(
        id=cid, bundle=bundle,
        rootfs=[mount_pb2.Mount(type="bind", source=busybox_rootfs, options=["rbind", "ro"])]),
        pb.CreateTaskResponse)
    shim.call("Start", pb.StartRequest(id=cid), pb.StartResponse)
    # the shim dies: `delete` cleans up, kills the container and reports SIGKILL
    os.kill(shim.pid, signal.SIGKILL)
    assert wait_gone(shim.pid)
    out = subprocess.run(launch.shim_command() + ["-namespace", env.namespace, "-id", cid,
                                                  "-address", env.address, "-bundle", bundle,
                                                  "delete"],
                         cwd=bundle, capture_output=True, timeout=60,
                         env=dict(os.environ, PALLET_RUNTIME_ROOT=os.path.join(
                             env.paths.runtime_root, env.namespace)))
    assert out.returncode == 0, out.stderr
    d = pb.DeleteResponse.FromString(out.stdout)
    assert d.exit_status == 137 and d.exited_at.seconds > 0
    assert wait_gone(resp.pid)
    assert not is_mounted(os.path.join(bundle, "rootfs"))


def test_start_errors_are_reported(env):
    cid = env.new_id()
    bundle = env.bundle(cid, ["true"])
    out = subprocess.run(launch.shim_command() + ["-id", cid, "start"], cwd=bundle,
                         capture_output=True, timeout=60)
    assert out.returncode == 1 and b"namespace cannot be empty" in out.stderr
    out = subprocess.run(launch.shim_command() + ["-bogus", "start"], capture_output=True,
                         timeout=60)
    assert out.returncode == 2 and b"flag provided but not defined: -bogus" in out.stderr
    out = subprocess.run(launch.shim_command() + ["zygote"], capture_output=True, timeout=60)
    assert out.returncode == 2 and b"-socket" in out.stderr
    assert b"Traceback" not in out.stderr


def test_overlay_rootfs_and_create_failure(env, busybox_rootfs):
    # an overlay rootfs, as containerd's overlayfs snapshotter hands it over
    cid = env.new_id()
    bundle = env.bundle(cid, ["sh", "-c", "echo written > /made-here"], readonly=False)
    upper, work = os.path.join(env.root, "upper"), os.path.join(env.root, "work")
    os.makedirs(upper)
    os.makedirs(work)
    shim = launch_shim(env, cid, bundle)
    overlay = mount_pb2.Mount(type="overlay", source="overlay", options=[
        "index=off", f"workdir={work}", f"upperdir={upper}", f"lowerdir={busybox_rootfs}"])
    shim.call("Create", pb.CreateTaskRequest(id=cid, bundle=bundle, rootfs=[overlay]),
              pb.CreateTaskResponse)
    shim.call("Start", pb.StartRequest(id=cid), pb.StartResponse)
    assert shim.call("Wait", pb.WaitRequest(id=cid), pb.WaitResponse).exit_status == 0
    with open(os.path.join(upper, "made-here")) as f:
        assert f.read() == "written\n"
    shim.call("Delete", pb.DeleteRequest(id=cid), pb.DeleteResponse)
    assert not is_mounted(os.path.join(bundle, "rootfs"))
    shim.call("Shutdown", pb.ShutdownRequest(id=cid))
    assert wait_gone(shim.pid)

    # a failing Create reports the runtime's error and leaves nothing mounted
    cid = env.new_id()
    bundle = env.bundle(cid, ["/no/such/program"])
    shim = launch_shim(env, cid, bundle)
    with pytest.raises(errors.PalletError) as info:
        shim.call("Create", pb.CreateTaskRequest(
            id=cid, bundle=bundle,
            rootfs=[mount_pb2.Mount(type="bind", source=busybox_rootfs, options=["rbind"])]))
    assert "/no/such/program" in str(info.value) or "no such file" in str(info.value)
    assert not is_mounted(os.path.join(bundle, "rootfs"))
    with pytest.raises(errors.NotFound):
        shim.call("State", pb.StateRequest(id=cid), pb.StateResponse)
    with pytest.raises(errors.InvalidArgument):
        shim.call("Create", pb.CreateTaskRequest(id="other", bundle=bundle))
    bad = mount_pb2.Mount(type="overlay", source="overlay", options=["lowerdir=/no/such/dir"])
    with pytest.raises(errors.PalletError, match="mount overlay on"):
        shim.call("Create", pb.CreateTaskRequest(id=cid, bundle=bundle, rootfs=[bad]))
    shim.call("Shutdown", pb.ShutdownRequest(id=cid))
    assert wait_gone(shim.pid)
