"""init_tini: the builtin init as PID 1 of a busybox container (no Python, no
init binary in the image), standalone as a subreaper, and the external
init binary path of its spec hook."""
from __future__ import annotations

import os
import signal
import time

import pytest

from pallet.plugins.init_tini.init import TiniInit, run
from pallet.plugins.init_tini.spec import ANNOTATION, add_init
from rt_helpers import new_id, run_container, wait_status

pytestmark = pytest.mark.root


def with_init(bundle):
    add_init(bundle.spec, None)
    assert bundle.spec["annotations"][ANNOTATION] == "builtin"


def test_init_is_pid_1_and_runs_the_program(runtime, bundle, output):
    with_init(bundle)
    assert not os.path.exists(os.path.join(bundle.rootfs, "usr/bin/python3"))
    bundle.write(["sh", "-c", "echo $$; cat /proc/1/status | grep ^PPid; echo $0 ran"])
    assert run_container(runtime, bundle.path, output) == 0
    pid, ppid, ran = output.read().strip().split("\n")
    assert pid != "1"                 # the program is the init's child
    assert ppid.split()[-1] == "0"    # PID 1 is the namespace's init
    assert ran == "sh ran"


def test_init_exit_status_and_signals(runtime, bundle, output):
    with_init(bundle)
    bundle.write(["sh", "-c", "exit 7"])
    assert run_container(runtime, bundle.path, output) == 7
    bundle.write(["sh", "-c", "kill -KILL $$"])
    assert run_container(runtime, bundle.path, output) == 128 + 9


def _zombies_in(pid_ns: str) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != pid_ns:
                continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    count += 1
        except OSError:
            continue
    return count


@pytest.mark.parametrize("init", [True, False], ids=["init", "no-init"])
def test_init_reaps_orphans(runtime, bundle, output, init):
    """``sh -c "sleep 0.1 &"`` leaves an orphan that goes to PID 1; then the
    program execs a sleep that never waits.  With the init the orphan is
    reaped once it exits; without it (PID 1 = sleep) it stays a zombie, which
    shows the check can fail."""
    if init:
        with_init(bundle)
    bundle.write(["sh", "-c", 'sh -c "sleep 0.1 &"; exec sleep 2'])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    ns = os.readlink(f"/proc/{pid}/ns/pid")
    time.sleep(0.6)
    zombies = _zombies_in(ns)
    runtime.kill(cid, signal.SIGKILL)
    wait_status(pid)
    runtime.delete(cid)
    assert zombies == (0 if init else 1)


def test_init_forwards_signals(runtime, bundle, output):
    with_init(bundle)
    bundle.write(["sh", "-c", 'trap "echo got-term; exit 3" TERM; echo ready; '
                              'while :; do sleep 0.05; done'])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    deadline = time.monotonic() + 10
    while "ready" not in output.read() and time.monotonic() < deadline:
        time.sleep(0.01)
    runtime.kill(cid, signal.SIGTERM)
    assert wait_status(pid) == 3
    assert output.read() == "ready\ngot-term\n"
    runtime.delete(cid)


def test_init_unknown_program(runtime, bundle, output):
    """The runtime still checks the executable at create, init or not."""
    with_init(bundle)
    bundle.write(["nope"])
    with pytest.raises(Exception, match=r'exec: "nope": executable file not found in \$PATH'):
        runtime.create(new_id(), bundle.path)


def _fork_init(argv, kill_group=False, env=None):
    pid = os.fork()
    if pid == 0:
        try:
            run(argv, env or {"PATH": "/bin:/usr/bin"}, kill_group=kill_group)
        finally:
            os._exit(99)
    return pid


def test_standalone_init_exit_codes():
    assert wait_status(_fork_init(["sh", "-c", "exit 5"])) == 5
    assert wait_status(_fork_init(["sh", "-c", "kill -TERM $$"])) == 128 + 15
    assert wait_status(_fork_init(["/no/such/program"])) == 127


def test_standalone_init_kills_the_group(tmp_path):
    pidfile = tmp_path / "sleep.pid"
    pid = _fork_init(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], kill_group=True)
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.01)
    sleeper = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    assert wait_status(pid) == 128 + 15
    # the sleep got the signal too (the group).  The init exits as soon as its
    # child is gone, like tini; a sleep dying just after may be left to the
    # next subreaper up (this test process) as a zombie: reap it here
    deadline = time.monotonic() + 5
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(sleeper)
    try:
        os.waitpid(sleeper, os.WNOHANG)
    except ChildProcessError:
        pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_tini_init_object():
    assert TiniInit(kill_group=True).kill_group


@pytest.mark.skipif(not os.path.exists("/usr/bin/tini-static"), reason="tini-static not installed")
def test_external_init_binary(runtime, bundle, output):
    """init_path: the binary is bind-mounted at /sbin/docker-init and runs first."""
    bundle.spec["process"]["args"] = ["sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '"]
    add_init(bundle.spec, "/usr/bin/tini-static")
    add_init(bundle.spec, "/usr/bin/tini-static")  # a second call changes nothing
    assert ANNOTATION not in (bundle.spec.get("annotations") or {})
    assert [m["destination"] for m in bundle.spec["mounts"]].count("/sbin/docker-init") == 1
    assert bundle.spec["process"]["args"][:3] == ["/sbin/docker-init", "--", "sh"]
    bundle.write()
    assert run_container(runtime, bundle.path, output) == 0
    pid, cmdline = output.read().strip().split("\n")
    assert pid != "1"
    assert cmdline.startswith("/sbin/docker-init -- sh")
