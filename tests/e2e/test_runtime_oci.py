"""The second runtime and init, end to end through the unmodified docker CLI:
docker -> palletd -> pallet-containerd -> pallet-shim -> runtime_oci -> Debian's runc,
with init_exec (tini-static bind-mounted) for --init; init_exec under
runtime_ns too; and the clear refusal of --init when the runtime cannot run
the init the configuration asks for."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from engines import DOCKER_CLI, Pallet

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed"),
              pytest.mark.skipif(not os.path.exists("/usr/bin/tini-static"),
                                 reason="tini-static not installed (apt-get install tini)")]

OCI = '[roles]\nruntime = "runtime_oci"\ninit = "init_exec"\n[plugins.runtime_oci]\nbinary = "runc"\n'


def _engine(config: str, busybox_tar: str) -> Pallet:
    engine = Pallet(config=config)
    try:
        engine.start()
        engine.docker("load", "-i", busybox_tar)
    except BaseException:
        engine.stop()
        raise
    return engine


@pytest.fixture(scope="module")
def oci(busybox_tar):
    """palletd with runtime_oci on Debian's runc and init_exec."""
    engine = _engine(OCI, busybox_tar)
    yield engine
    engine.stop()


def _runc_state(engine: Pallet, cid: str) -> dict:
    root = os.path.join(engine.exec_root, "containerd", "runtime", "moby")
    out = subprocess.run(["runc", "--root", root, "state", cid], capture_output=True, text=True)
    assert out.returncode == 0, f"runc does not know {cid}: {out.stderr}"
    return json.loads(out.stdout)


def _cgroup_file(pid: int, controller: str, name: str) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _n, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                with open(f"/sys/fs/cgroup/{controller}{path}/{name}") as g:
                    return g.read().strip()
    raise AssertionError(f"no {controller} cgroup for {pid}")


def test_run_on_runc(oci):
    assert oci.docker("run", "--rm", "busybox", "echo", "hi").stdout == b"hi\n"
    assert oci.docker("run", "--rm", "busybox", "sh", "-c", "exit 7", check=False).returncode == 7
    cid = oci.docker("run", "-d", "busybox", "sleep", "60").stdout.decode().strip()
    try:
        state = _runc_state(oci, cid)  # the container is runc's, in the namespace's root
        assert state["status"] == "running"
        assert state["pid"] == json.loads(oci.docker("inspect", cid).stdout)[0]["State"]["Pid"]
    finally:
        oci.docker("rm", "-f", cid)


def test_init_under_runc(oci):
    out = oci.docker("run", "--rm", "--init", "busybox", "sh", "-c",
                     "echo $$; tr '\\0' ' ' < /proc/1/cmdline").stdout.decode().split("\n")
    assert out[0] != "1"  # the command is not PID 1: the init is
    assert out[1].startswith("/sbin/docker-init -- sh")


def test_interactive_tty(oci):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(DOCKER_CLI, ["run", "-it", "--rm", "busybox", "sh"], env=oci.env,
                          timeout=30)
    try:
        child.expect("# ")
        child.sendline("echo $((6*7)); tty")
        child.expect("42")
        child.expect("/dev/pts/")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 3


def test_exec_pause_unpause(oci):
    pexpect = pytest.importorskip("pexpect")
    cid = oci.docker("run", "-d", "busybox", "sleep", "60").stdout.decode().strip()
    try:
        assert oci.docker("exec", cid, "sh", "-c", "echo in-$(hostname)").stdout == \
            f"in-{cid[:12]}\n".encode()
        assert oci.docker("exec", cid, "sh", "-c", "exit 4", check=False).returncode == 4
        child = pexpect.spawn(DOCKER_CLI, ["exec", "-it", cid, "sh"], env=oci.env, timeout=30)
        try:
            child.expect("# ")
            child.sendline("echo tty-$((2+3))")
            child.expect("tty-5")
            child.sendline("exit")
            child.expect(pexpect.EOF)
        finally:
            child.close()
        oci.docker("pause", cid)
        assert _runc_state(oci, cid)["status"] == "paused"
        assert json.loads(oci.docker("inspect", cid).stdout)[0]["State"]["Paused"] is True
        oci.docker("unpause", cid)
        assert _runc_state(oci, cid)["status"] == "running"
        assert oci.docker("exec", cid, "true").returncode == 0
    finally:
        oci.docker("rm", "-f", cid)


def test_resource_limits_update_and_stats(oci):
    cid = oci.docker("run", "-d", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50",
                     "busybox", "sleep", "60").stdout.decode().strip()
    try:
        pid = json.loads(oci.docker("inspect", cid).stdout)[0]["State"]["Pid"]
        assert _cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(64 << 20)
        assert _cgroup_file(pid, "cpu", "cpu.cfs_quota_us") == "50000"
        assert _cgroup_file(pid, "pids", "pids.max") == "50"
        oci.docker("update", "--pids-limit", "60", "--memory", "96m", "--memory-swap", "192m",
                   cid)  # through runc update
        assert _cgroup_file(pid, "pids", "pids.max") == "60"
        assert _cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(96 << 20)
        stats = oci.docker("stats", "--no-stream", "--format", "{{.MemUsage}} {{.PIDs}}",
                           cid).stdout.decode()
        assert "96MiB" in stats and stats.split()[-1] == "1"
    finally:
        oci.docker("rm", "-f", cid)


def test_init_exec_under_runtime_ns(busybox_tar):
    engine = _engine('[roles]\ninit = "init_exec"\n', busybox_tar)
    try:
        out = engine.docker("run", "--rm", "--init", "busybox", "sh", "-c",
                            "echo $$; tr '\\0' ' ' < /proc/1/cmdline").stdout.decode().split("\n")
        assert out[0] != "1"
        assert out[1].startswith("/sbin/docker-init -- sh")
    finally:
        engine.stop()


def test_builtin_init_under_runc_is_a_clear_error(busybox_tar):
    """runtime_oci with init_tini's builtin init: docker run --init fails and
    says how to fix it; without --init the container runs."""
    engine = _engine('[roles]\nruntime = "runtime_oci"\n', busybox_tar)
    try:
        r = engine.docker("run", "--rm", "--init", "busybox", "true", check=False)
        assert r.returncode != 0
        err = r.stderr.decode()
        assert "builtin init" in err and '[roles] init = "init_exec"' in err, err
        assert engine.docker("run", "--rm", "busybox", "echo", "ok").stdout == b"ok\n"
    finally:
        engine.stop()


def _build_and_run(engine: Pallet, tmp_path) -> str:
    """docker build (the classic builder: RUN steps are containers of this
    engine's runtime, their layers from pallet-containerd's diff service),
    then a run of the image; what the run printed."""
    (tmp_path / "f").write_text("hello\n")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nCOPY f /f\nRUN cat /f > /g && rm /bin/true\n")
    tag = "built-" + os.urandom(3).hex()
    r = subprocess.run([DOCKER_CLI, "build", "-q", "-t", tag, str(tmp_path)],
                       env=dict(engine.env, DOCKER_BUILDKIT="0"), capture_output=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    try:
        return engine.docker("run", "--rm", tag, "sh", "-c",
                             "cat /g; test -e /bin/true || echo gone").stdout.decode()
    finally:
        engine.docker("rmi", "-f", tag, check=False)


def test_build_on_runc(oci, tmp_path):
    """The builder drives the configured runtime like any container."""
    assert _build_and_run(oci, tmp_path) == "hello\ngone\n"
