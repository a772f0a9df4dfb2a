"""The ``runtime`` role's contract (``pallet.core.contracts.Runtime``) against
every installed runtime: runtime_ns, and runtime_oci on each runc-compatible
binary found (Debian's runc, crun, pallet-runc).

Real bundles on a busybox-static rootfs; each method's behaviour and its
errors as core error classes, as the shim and pallet-runc rely on them."""
from __future__ import annotations

import os
import pickle
import signal
import time

import pytest

from contract_helpers import create_to_pipe, read_to_eof, read_until, wait_exit
from pallet.core import contracts, errors

pytestmark = pytest.mark.root

SLEEP = ["sleep", "1000"]


def _created(setup, args=SLEEP, **bundle_kw):
    """A created container (output to a pipe); (id, pid, read end of its output)."""
    cid = setup.new_id()
    pid, r = create_to_pipe(setup.runtime, cid, setup.bundle(args, **bundle_kw))
    return cid, pid, r


def _running(setup, args=SLEEP, **bundle_kw):
    cid, pid, r = _created(setup, args, **bundle_kw)
    setup.runtime.start(cid)
    return cid, pid, r


def _exec_process(args, **extra) -> dict:
    process = {"args": list(args), "env": ["PATH=/bin"], "cwd": "/",
               "user": {"uid": 0, "gid": 0}}
    process.update(extra)
    return process


def _cgroup_dir(pid: int, controller: str = "pids") -> str:
    """The host directory of a process's cgroup (v1 controller, or v2)."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _n, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return f"/sys/fs/cgroup/{controller}{path}"
            if controllers == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                return f"/sys/fs/cgroup{path}"
    raise AssertionError(f"process {pid} has no {controller} cgroup")


# --- the object ------------------------------------------------------------------------------

def test_fills_the_contract_and_pickles(setup):
    rt = setup.runtime
    assert isinstance(rt, contracts.Runtime)
    assert isinstance(rt.name, str) and rt.name
    copy = pickle.loads(pickle.dumps(rt))  # how pallet-shim receives it
    assert copy.list() == []
    cid, pid, r = _running(setup, ["echo", "through-a-copy"])
    assert copy.state(cid)["id"] == cid
    assert wait_exit(pid) == 0
    assert read_to_eof(r) == b"through-a-copy\n"
    os.close(r)
    copy.delete(cid)


def test_with_root_gives_a_runtime_on_another_root(setup):
    cid, pid, r = _created(setup)
    os.close(r)
    other = setup.runtime.with_root(os.path.join(setup.base, "other-root"))
    assert isinstance(other, contracts.Runtime)
    assert other.list() == []
    with pytest.raises(errors.NotFound):
        other.state(cid)
    assert [s["id"] for s in setup.runtime.list()] == [cid]
    setup.runtime.delete(cid, force=True)
    wait_exit(pid)


# --- create, start, state, list, delete ------------------------------------------------------

def test_lifecycle(setup):
    rt = setup.runtime
    cid = setup.new_id()
    bundle = setup.bundle(["sh", "-c", "echo out; echo err >&2; exit 3"])
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    pid = rt.create(cid, bundle, stdout=w_out, stderr=w_err)
    os.close(w_out)
    os.close(w_err)
    assert isinstance(pid, int) and pid > 0
    state = rt.state(cid)
    assert (state["id"], state["pid"], state["status"]) == (cid, pid, "created")
    assert os.path.realpath(state["bundle"]) == os.path.realpath(bundle)
    assert [(s["id"], s["status"]) for s in rt.list()] == [(cid, "created")]
    rt.start(cid)
    assert wait_exit(pid) == 3
    assert read_to_eof(r_out) == b"out\n"
    assert read_to_eof(r_err) == b"err\n"
    os.close(r_out)
    os.close(r_err)
    assert rt.state(cid)["status"] == "stopped"
    rt.delete(cid)
    with pytest.raises(errors.NotFound):
        rt.state(cid)
    assert rt.list() == []


def test_stdin_and_dev_null(setup):
    r_in, w_in = os.pipe()
    os.write(w_in, b"abc\n")
    os.close(w_in)
    code, out = setup.run(["sh", "-c", "read x; echo got $x"], stdin=r_in)
    os.close(r_in)
    assert (code, out) == (0, b"got abc\n")
    # no stdin given: /dev/null, read sees EOF at once
    code, out = setup.run(["sh", "-c", "read x; echo rc=$?"])
    assert out == b"rc=1\n"


def test_pid_file_and_no_pivot(setup):
    cid = setup.new_id()
    pid_file = os.path.join(setup.base, "init.pid")
    r, w = os.pipe()
    pid = setup.runtime.create(cid, setup.bundle(["echo", "no-pivot"]), stdout=w,
                               pid_file=pid_file, no_pivot=True)
    os.close(w)
    with open(pid_file) as f:
        assert int(f.read()) == pid
    setup.runtime.start(cid)
    assert wait_exit(pid) == 0
    assert read_to_eof(r) == b"no-pivot\n"
    os.close(r)
    setup.runtime.delete(cid)


def test_preserve_fds_passes_the_callers_fd_3(setup):
    """fd 3 of the caller becomes fd 3 of the container (runc's --preserve-fds);
    the caller is a forked child here, so that fd 3 is its own to arrange."""
    cid = setup.new_id()
    bundle = setup.bundle(["sh", "-c", "echo via-fd-3 >&3"])
    r, w = os.pipe()
    report_r, report_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.dup2(w, 3)
            pid = setup.runtime.create(cid, bundle, preserve_fds=1)
            os.write(report_w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.close(report_w)
    os.waitpid(child, 0)
    # (not to EOF: runtime_ns's waiting container process holds the write end until it execs)
    report = os.read(report_r, 64)
    os.close(report_r)
    assert report, "create with preserve_fds failed in the child"
    setup.runtime.start(cid)
    assert wait_exit(int(report)) == 0
    assert read_to_eof(r) == b"via-fd-3\n"
    os.close(r)
    setup.runtime.delete(cid)


def test_terminal_through_the_console_socket(setup):
    console = setup.console_socket()
    cid = setup.new_id()
    try:
        bundle = setup.bundle(["sh", "-c", "test -t 0 && test -t 1 && echo tty-ok; read x; "
                                           "echo got-$x"], terminal=True)
        pid = setup.runtime.create(cid, bundle, terminal_socket=console.path)
        master = console.master()
    finally:
        console.close()
    try:
        setup.runtime.start(cid)
        assert b"tty-ok" in read_until(master, b"tty-ok")
        os.write(master, b"typed\n")
        assert b"got-typed" in read_until(master, b"got-typed")
        assert wait_exit(pid) == 0
    finally:
        os.close(master)
    setup.runtime.delete(cid)


def test_create_errors(setup):
    rt = setup.runtime
    cid, pid, r = _created(setup)
    os.close(r)
    with pytest.raises(errors.AlreadyExists):
        rt.create(cid, setup.bundle(["true"]))
    with pytest.raises(errors.InvalidArgument):
        rt.create("bad/id", setup.bundle(["true"]))
    empty = os.path.join(setup.base, "no-config")
    os.makedirs(empty)
    with pytest.raises(errors.InvalidArgument, match="config.json"):
        rt.create(setup.new_id(), empty)
    assert [s["id"] for s in rt.list()] == [cid]  # failed creates leave nothing behind
    rt.delete(cid, force=True)
    wait_exit(pid)


@pytest.mark.parametrize("call", [
    lambda rt: rt.start("nosuch"), lambda rt: rt.kill("nosuch", signal.SIGTERM),
    lambda rt: rt.delete("nosuch"), lambda rt: rt.state("nosuch"),
    lambda rt: rt.pause("nosuch"), lambda rt: rt.resume("nosuch"), lambda rt: rt.pids("nosuch"),
    lambda rt: rt.update("nosuch", {"pids": {"limit": 10}}), lambda rt: rt.stats("nosuch"),
    lambda rt: rt.exec("nosuch", _exec_process(["true"])),
], ids=["start", "kill", "delete", "state", "pause", "resume", "pids", "update", "stats", "exec"])
def test_a_missing_container_is_not_found(setup, call):
    with pytest.raises(errors.NotFound):
        call(setup.runtime)


def test_forced_delete_of_a_missing_container(setup):
    """runc's ``delete --force`` of a missing container succeeds; runtime_ns
    says NotFound: both are allowed, nothing else."""
    try:
        setup.runtime.delete("nosuch", force=True)
    except errors.NotFound:
        pass


# --- state errors ------------------------------------------------------------------------------

def test_wrong_states_are_failed_preconditions(setup):
    rt = setup.runtime
    cid, pid, r = _running(setup, cgroup=True)
    os.close(r)
    with pytest.raises(errors.FailedPrecondition):
        rt.start(cid)
    with pytest.raises(errors.FailedPrecondition):
        rt.delete(cid)
    with pytest.raises(errors.FailedPrecondition):
        rt.resume(cid)
    rt.pause(cid)
    with pytest.raises(errors.FailedPrecondition):
        rt.pause(cid)
    with pytest.raises(errors.FailedPrecondition):
        rt.exec(cid, _exec_process(["true"]))
    rt.resume(cid)
    with pytest.raises(errors.InvalidArgument):
        rt.exec(cid, _exec_process([]))
    rt.kill(cid, signal.SIGKILL)
    assert wait_exit(pid) == 128 + signal.SIGKILL
    assert rt.state(cid)["status"] == "stopped"
    for call in (lambda: rt.start(cid), lambda: rt.kill(cid, signal.SIGTERM),
                 lambda: rt.pause(cid), lambda: rt.exec(cid, _exec_process(["true"])),
                 lambda: rt.update(cid, {"pids": {"limit": 10}}), lambda: rt.stats(cid)):
        with pytest.raises(errors.FailedPrecondition):
            call()
    assert rt.pids(cid) == []
    rt.delete(cid)


def test_error_messages_are_the_runtimes_own_lower_case_lines(setup):
    with pytest.raises(errors.PalletError) as info:
        setup.runtime.state("nosuch")
    message = info.value.message
    assert message and "\n" not in message and "Traceback" not in message
    assert message[0] == message[0].lower()


# --- kill, delete --------------------------------------------------------------------------------

def test_kill_signals_pid_1(setup):
    cid, pid, r = _running(setup, ["sh", "-c", "trap 'echo term; exit 7' TERM; echo ready; "
                                               "while :; do sleep 0.05; done"])
    assert b"ready" in read_until(r, b"ready")
    setup.runtime.kill(cid, signal.SIGTERM)
    assert wait_exit(pid) == 7
    assert read_to_eof(r) == b"term\n"
    os.close(r)
    setup.runtime.delete(cid)


def test_kill_all_reaches_every_process(setup):
    rt = setup.runtime
    cid, pid, r = _running(setup, cgroup=True)
    os.close(r)
    other = rt.exec(cid, _exec_process(SLEEP))
    assert set(rt.pids(cid)) >= {pid, other}
    rt.kill(cid, signal.SIGKILL, all=True)
    assert wait_exit(pid) == 128 + signal.SIGKILL
    assert wait_exit(other) == 128 + signal.SIGKILL
    rt.delete(cid)


def test_forced_delete_kills_and_removes_everything(setup):
    rt = setup.runtime
    cid, pid, r = _running(setup, cgroup=True)
    os.close(r)
    cgroup = _cgroup_dir(pid)
    assert os.path.isdir(cgroup)
    rt.delete(cid, force=True)
    assert wait_exit(pid) == 128 + signal.SIGKILL
    with pytest.raises(errors.NotFound):
        rt.state(cid)
    assert not os.path.exists(cgroup)
    # and a created container, never started, goes the same way
    cid, pid, r = _created(setup, cgroup=True)
    os.close(r)
    rt.delete(cid, force=True)
    wait_exit(pid)
    assert rt.list() == []


# --- exec ---------------------------------------------------------------------------------------

def test_exec_runs_in_the_container(setup):
    rt = setup.runtime
    cid, pid, r = _running(setup)
    os.close(r)
    out_r, out_w = os.pipe()
    epid = rt.exec(cid, _exec_process(["sh", "-c", "echo $X in $(hostname) at $(pwd); exit 4"],
                                      env=["PATH=/bin", "X=hello"], cwd="/tmp"),
                   stdout=out_w, stderr=out_w)
    os.close(out_w)
    assert wait_exit(epid) == 4
    assert read_to_eof(out_r) == b"hello in contract at /tmp\n"
    os.close(out_r)
    pid_file = os.path.join(setup.base, "exec.pid")
    epid = rt.exec(cid, _exec_process(["true"]), pid_file=pid_file)
    with open(pid_file) as f:
        assert int(f.read()) == epid
    assert wait_exit(epid) == 0
    rt.delete(cid, force=True)
    wait_exit(pid)


def test_exec_with_a_terminal(setup):
    rt = setup.runtime
    cid, pid, r = _running(setup)
    os.close(r)
    console = setup.console_socket()
    try:
        epid = rt.exec(cid, _exec_process(["sh", "-c", "test -t 0 && echo exec-tty"],
                                          terminal=True), terminal_socket=console.path)
        master = console.master()
    finally:
        console.close()
    try:
        assert b"exec-tty" in read_until(master, b"exec-tty")
        assert wait_exit(epid) == 0
    finally:
        os.close(master)
    rt.delete(cid, force=True)
    wait_exit(pid)


# --- pause, resume, pids, update, stats, features ------------------------------------------------

def test_pause_and_resume(setup):
    rt = setup.runtime
    cid, pid, r = _running(setup, ["sh", "-c", "while :; do echo tick; sleep 0.02; done"],
                           cgroup=True)
    assert b"tick" in read_until(r, b"tick")
    rt.pause(cid)
    assert rt.state(cid)["status"] == "paused"
    time.sleep(0.1)
    os.set_blocking(r, False)
    try:  # what was written before the freeze
        while os.read(r, 65536):
            pass
    except BlockingIOError:
        pass
    time.sleep(0.2)
    with pytest.raises(BlockingIOError):  # frozen: nothing new
        os.read(r, 65536)
    rt.resume(cid)
    assert rt.state(cid)["status"] == "running"
    os.set_blocking(r, True)
    assert b"tick" in read_until(r, b"tick")
    os.close(r)
    rt.delete(cid, force=True)
    wait_exit(pid)


def test_pids_lists_the_containers_processes(setup):
    rt = setup.runtime
    cid, pid, r = _running(setup, cgroup=True)
    os.close(r)
    assert rt.pids(cid) == [pid]
    epid = rt.exec(cid, _exec_process(SLEEP))
    assert sorted(rt.pids(cid)) == sorted([pid, epid])
    rt.kill(cid, signal.SIGKILL, all=True)
    wait_exit(pid)
    wait_exit(epid)
    assert rt.pids(cid) == []
    rt.delete(cid)


def test_update_and_stats(setup):
    rt = setup.runtime
    cid, pid, r = _running(setup, cgroup=True)
    os.close(r)
    rt.update(cid, {"pids": {"limit": 42}, "memory": {"limit": 64 << 20}})
    with open(os.path.join(_cgroup_dir(pid, "pids"), "pids.max")) as f:
        assert f.read().strip() == "42"
    stats = rt.stats(cid)
    assert isinstance(stats, dict)
    assert stats["pids"]["current"] >= 1 and stats["pids"]["limit"] == 42
    assert stats["memory"]["usage"]["limit"] == 64 << 20
    assert stats["cpu"]["usage"]["total"] > 0
    rt.delete(cid, force=True)
    wait_exit(pid)


def test_features(setup):
    try:
        features = setup.runtime.features()
    except errors.NotImplementedYet as e:  # crun before 1.9 has no features command
        pytest.skip(f"the binary has no features: {e}")
    assert isinstance(features, dict)
    assert features["ociVersionMin"] and features["ociVersionMax"]


# --- --init: run under an init, or refuse; never silently without -----------------------------

def test_builtin_init_runs_or_is_refused_with_the_fix(setup):
    """A spec asking for init_tini's builtin init (org.pallet.init: builtin)
    runs with an init as PID 1, or create refuses it naming the fix."""
    try:
        code, out = setup.run(["sh", "-c", "echo $$"],
                              annotations={"org.pallet.init": "builtin"})
    except errors.PalletError as e:
        assert isinstance(e, errors.InvalidArgument), e
        assert "init_exec" in e.message and "builtin" in e.message
        assert setup.runtime.list() == []
        return
    assert code == 0 and out.strip() != b"1", "the container ran without the init it asked for"
