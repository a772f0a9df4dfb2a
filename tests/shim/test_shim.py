"""pallet-shim end to end: started detached for real, driven over ttrpc."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pallet.core import errors
from pallet.core.proto.containerd.task.v2 import shim_pb2 as pb
from pallet.core.proto.containerd.types import mount_pb2
from pallet.core.proto.containerd.types.task import task_pb2
from pallet.plugins.api_grpc import ttrpc
from pallet.plugins.api_grpc.shim import launch

from shimtest_util import is_mounted, pid_alive, wait_gone

TASK = "containerd.task.v2.Task"


def read_all(fd: int, timeout: float = 10.0) -> bytes:
    """Read a FIFO opened O_NONBLOCK until EOF (every writer gone)."""
    import select

    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([fd], [], [], 0.1)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"no EOF on the fifo after {timeout}s (got {out!r})")


class Shim:
    def __init__(self, env, cid, bundle, address):
        self.env, self.id, self.bundle, self.address = env, cid, bundle, address
        self.client = ttrpc.Client(address)
        env.clients.append(self.client)
        self.pid = env.shim_pid(bundle)

    def call(self, method, req, resp_cls=None, timeout=30):
        return self.client.call(TASK, method, req, resp_cls, timeout=timeout)


def start(env, busybox_rootfs, args, *, use_zygote=False, stdin=False):
    cid = env.new_id()
    bundle = env.bundle(cid, args)
    address = launch.start_shim(env.namespace, cid, bundle, "/tmp/pl-nonexistent.sock",
                                env.paths, use_zygote=use_zygote)
    assert address == "unix://" + env.paths.shim_socket(env.namespace, cid)
    shim = Shim(env, cid, bundle, address)
    shim.stdout = env.fifo(cid, "init-stdout")
    shim.stderr = env.fifo(cid, "init-stderr")
    shim.stdin = env.fifo(cid, "init-stdin") if stdin else ""
    shim.out_fd = os.open(shim.stdout, os.O_RDONLY | os.O_NONBLOCK)
    shim.err_fd = os.open(shim.stderr, os.O_RDONLY | os.O_NONBLOCK)
    rootfs = [mount_pb2.Mount(type="bind", source=busybox_rootfs, options=["rbind", "ro"])]
    resp = shim.call("Create", pb.CreateTaskRequest(
        id=cid, bundle=bundle, rootfs=rootfs, stdin=shim.stdin, stdout=shim.stdout,
        stderr=shim.stderr), pb.CreateTaskResponse)
    assert resp.pid > 0
    shim.task_pid = resp.pid
    return shim


@pytest.mark.parametrize("use_zygote", [False, True], ids=["exec", "zygote"])
def test_exit_code_and_output(env, busybox_rootfs, use_zygote):
    shim = start(env, busybox_rootfs, ["sh", "-c", "echo hello; echo oops >&2; exit 7"],
                 use_zygote=use_zygote)
    try:
        st = shim.call("State", pb.StateRequest(id=shim.id), pb.StateResponse)
        assert st.status == task_pb2.CREATED and st.pid == shim.task_pid
        assert is_mounted(os.path.join(shim.bundle, "rootfs"))
        conn = shim.call("Connect", pb.ConnectRequest(id=shim.id), pb.ConnectResponse)
        assert (conn.shim_pid, conn.task_pid) == (shim.pid, shim.task_pid)
        assert shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse).pid == shim.task_pid
        w = shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse)
        assert w.exit_status == 7 and w.exited_at.seconds > 0
        assert read_all(shim.out_fd) == b"hello\n"
        assert read_all(shim.err_fd) == b"oops\n"
        st = shim.call("State", pb.StateRequest(id=shim.id), pb.StateResponse)
        assert st.status == task_pb2.STOPPED and st.exit_status == 7
        d = shim.call("Delete", pb.DeleteRequest(id=shim.id), pb.DeleteResponse)
        assert (d.pid, d.exit_status) == (shim.task_pid, 7)
        assert not is_mounted(os.path.join(shim.bundle, "rootfs"))
        with pytest.raises(errors.NotFound):
            shim.call("State", pb.StateRequest(id=shim.id), pb.StateResponse)
        shim.call("Shutdown", pb.ShutdownRequest(id=shim.id))
        assert wait_gone(shim.pid), "shim still running after Shutdown"
        assert not os.path.exists(env.paths.shim_socket(env.namespace, shim.id))
    finally:
        os.close(shim.out_fd)
        os.close(shim.err_fd)


def test_kill_9_gives_137_and_wait_does_not_block_other_calls(env, busybox_rootfs):
    shim = start(env, busybox_rootfs, ["sleep", "1000"])
    shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse)
    import threading

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
    os.close(shim.out_fd)
    os.close(shim.err_fd)


def test_stdin_and_close_io(env, busybox_rootfs):
    shim = start(env, busybox_rootfs, ["sh", "-c", "cat; exit 3"], stdin=True)
    try:
        shim.call("Start", pb.StartRequest(id=shim.id), pb.StartResponse)
        w = os.open(shim.stdin, os.O_WRONLY)
        os.write(w, b"through stdin\n")
        os.close(w)
        shim.call("CloseIO", pb.CloseIORequest(id=shim.id, stdin=True))
        r = shim.call("Wait", pb.WaitRequest(id=shim.id), pb.WaitResponse, timeout=10)
        assert r.exit_status == 3
        assert read_all(shim.out_fd) == b"through stdin\n"
    finally:
        os.close(shim.out_fd)
        os.close(shim.err_fd)


def test_unimplemented_and_wrong_ids(env, busybox_rootfs):
    shim = start(env, busybox_rootfs, ["true"])
    for method, req in (("Pause", pb.PauseRequest(id=shim.id)),
                        ("Exec", pb.ExecProcessRequest(id=shim.id, exec_id="e1")),
                        ("ResizePty", pb.ResizePtyRequest(id=shim.id)),
                        ("Stats", pb.StatsRequest(id=shim.id))):
        with pytest.raises(errors.NotImplementedYet):
            shim.call(method, req)
    with pytest.raises(errors.NotFound):
        shim.call("State", pb.StateRequest(id=shim.id, exec_id="nope"), pb.StateResponse)
    with pytest.raises(errors.AlreadyExists):
        shim.call("Create", pb.CreateTaskRequest(id=shim.id, bundle=shim.bundle))
    # deleting a created task kills its waiting process
    d = shim.call("Delete", pb.DeleteRequest(id=shim.id), pb.DeleteResponse)
    assert d.exit_status == 137
    assert wait_gone(shim.task_pid)
    shim.call("Shutdown", pb.ShutdownRequest(id=shim.id))
    assert wait_gone(shim.pid)
    os.close(shim.out_fd)
    os.close(shim.err_fd)


def test_survives_its_parent_and_delete_verb(env, busybox_rootfs):
    """The shim lives on when whoever started it dies; ``delete`` cleans up after it."""
    cid = env.new_id(64)  # docker's ids are 64 hex digits
    bundle = env.bundle(cid, ["sleep", "1000"])
    # a short-lived parent (through the zygote it starts) starts the shim and is killed right after
    code = ("import sys, os\n"
            "from pallet.core.paths import Paths\n"
            "from pallet.plugins.api_grpc.shim import launch\n"
            f"a = launch.start_shim({env.namespace!r}, {cid!r}, {bundle!r}, '/tmp/pl-x.sock', "
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
    shim_cmd = launch.shim_command()
    out = subprocess.run(shim_cmd + ["-namespace", env.namespace, "-id", cid, "-address",
                                     "/tmp/pl-x.sock", "-bundle", bundle, "delete"],
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


def test_overlay_rootfs_and_create_failure(env, busybox_rootfs):
    # an overlay rootfs, as containerd's overlayfs snapshotter hands it over
    cid = env.new_id()
    bundle = env.bundle(cid, ["sh", "-c", "echo written > /made-here"], readonly=False)
    upper, work = os.path.join(env.root, "upper"), os.path.join(env.root, "work")
    os.makedirs(upper)
    os.makedirs(work)
    shim = Shim(env, cid, bundle, launch.start_shim(env.namespace, cid, bundle, "/tmp/pl-x.sock",
                                                    env.paths))
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
    shim = Shim(env, cid, bundle, launch.start_shim(env.namespace, cid, bundle, "/tmp/pl-x.sock",
                                                    env.paths))
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
