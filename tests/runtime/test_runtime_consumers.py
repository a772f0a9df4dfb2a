"""Real consumers drive pallet-runc in place of runc.

* Debian's containerd 1.6 with its runc v2 shim: ``ctr run --runc-binary``;
* Debian's dockerd 20.10 with ``--add-runtime pallet=...``, driven by the
  docker CLI.

Each daemon runs on its own roots and sockets under a short /tmp/pl-* path
and is stopped by its pid; the busybox image comes from
``python -m pallet.distribution.busybox_image`` (no registry).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from rt_helpers import VENV_BIN

pytestmark = pytest.mark.root

PALLET_RUNC = os.path.join(VENV_BIN, "pallet-runc")
CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
DOCKERD = shutil.which("dockerd") or ("/usr/sbin/dockerd" if os.path.exists("/usr/sbin/dockerd") else None)
DOCKER = shutil.which("docker")
IMAGE = "docker.io/library/busybox:latest"


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("img") / "busybox.tar")
    subprocess.run([sys.executable, "-m", "pallet.distribution.busybox_image", out], check=True,
                   capture_output=True)
    return out


def _stop(pid: int, timeout: float = 20.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if got == pid:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _unmount_below(path: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(path + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _wait_for(path: str, proc, log: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(log) as f:
                raise AssertionError(f"daemon did not come up:\n{f.read()[-3000:]}")
        time.sleep(0.05)


# --- containerd -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def containerd(image_tar):
    if not (CONTAINERD and CTR):
        pytest.skip("containerd is not installed")
    top = tempfile.mkdtemp(prefix="pl-ctd-")
    sock = f"{top}/c.sock"
    cfg = f"""version = 2
root = "{top}/root"
state = "{top}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{top}/d.sock"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{top}/opt"
"""
    with open(f"{top}/config.toml", "w") as f:
        f.write(cfg)
    log = f"{top}/containerd.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([CONTAINERD, "--config", f"{top}/config.toml"], stdout=out,
                                stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(sock, proc, log)
        ctr = Ctr(sock, f"{top}/runc", proc.pid)
        ctr("images", "import", image_tar, check=True)
        yield ctr
    finally:
        for task in Ctr(sock, f"{top}/runc", proc.pid)("task", "ls", "-q").stdout.split():
            Ctr(sock, f"{top}/runc", proc.pid)("task", "kill", "-s", "SIGKILL", task)
        _stop(proc.pid)
        _unmount_below(top)
        shutil.rmtree(top, ignore_errors=True)


class Ctr:
    def __init__(self, sock: str, runc_root: str, pid: int):
        self.sock = sock
        self.runc_root = runc_root
        self.pid = pid

    def __call__(self, *args, check=False, timeout=60, **kw):
        done = subprocess.run([CTR, "-a", self.sock, *args], capture_output=True, text=True,
                              timeout=timeout, **kw)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def run(self, name, *cmd, detach=False):
        flags = ["-d"] if detach else ["--rm"]
        return self("run", *flags, "--runc-binary", PALLET_RUNC, "--runc-root", self.runc_root,
                    IMAGE, name, *cmd)


def _name(prefix="pl"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_ctr_run_output_and_exit_code(containerd):
    done = containerd.run(_name(), "sh", "-c", "echo hello from ctr; echo $$; exit 7")
    assert done.returncode == 7, done.stderr
    assert done.stdout.split() == ["hello", "from", "ctr", "1"]


def test_ctr_task_exec_kill_pause_resume_ps(containerd):
    name = _name()
    done = containerd.run(name, "sh", "-c", "sleep 60 & wait", detach=True)
    assert done.returncode == 0, done.stderr
    try:
        state = json.loads(subprocess.run([PALLET_RUNC, "--root", f"{containerd.runc_root}/default",
                                           "state", name], capture_output=True, text=True).stdout)
        assert state["status"] == "running"
        ex = containerd("task", "exec", "--exec-id", "e1", name, "sh", "-c", "echo in-exec; exit 4")
        assert ex.returncode == 4 and ex.stdout == "in-exec\n", ex.stderr
        ps = containerd("task", "ps", name)
        pids = [line.split()[0] for line in ps.stdout.splitlines()[1:]]
        assert str(state["pid"]) in pids and len(pids) == 2, ps.stdout
        assert containerd("task", "pause", name).returncode == 0
        assert "PAUSED" in containerd("task", "ls").stdout
        assert containerd("task", "resume", name).returncode == 0
        assert "RUNNING" in containerd("task", "ls").stdout
        assert containerd("task", "kill", "-s", "SIGKILL", name).returncode == 0
        deadline = time.monotonic() + 10
        while "STOPPED" not in containerd("task", "ls").stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "STOPPED" in containerd("task", "ls").stdout
    finally:
        containerd("task", "kill", "-s", "SIGKILL", name)
        containerd("task", "rm", "-f", name)
        containerd("containers", "rm", name)
    # pallet-runc's state is gone with the task
    assert not os.path.exists(f"{containerd.runc_root}/default/{name}")


# --- dockerd ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dockerd(image_tar):
    if not (DOCKERD and DOCKER):
        pytest.skip("dockerd or the docker CLI is not installed")
    top = tempfile.mkdtemp(prefix="pl-dk-")
    sock = f"{top}/d.sock"
    log = f"{top}/dockerd.log"
    # containerd's namespace names take letters and digits between separators
    name = "pldk" + "".join(c for c in os.path.basename(top)[6:] if c.isalnum())
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [DOCKERD, "--data-root", f"{top}/data", "--exec-root", f"{top}/e",
             "--pidfile", f"{top}/d.pid", "-H", f"unix://{sock}", "--bridge=none",
             "--iptables=false", "--ip6tables=false", "--ip-masq=false",
             "--containerd-namespace", name, "--containerd-plugins-namespace", name + "p",
             "--add-runtime", f"pallet={PALLET_RUNC}", "--default-runtime", "runc"],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(sock, proc, log)
        docker = Docker(sock)
        deadline = time.monotonic() + 30
        while docker("version").returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        docker("load", "-i", image_tar, check=True)
        yield docker
    finally:
        ids = Docker(sock)("ps", "-aq").stdout.split()
        if ids:
            Docker(sock)("rm", "-f", *ids)
        _stop(proc.pid, timeout=30)
        _unmount_below(top)
        shutil.rmtree(top, ignore_errors=True)


class Docker:
    def __init__(self, sock: str):
        self.host = f"unix://{sock}"

    def __call__(self, *args, check=False, timeout=60, **kw):
        done = subprocess.run([DOCKER, "-H", self.host, *args], capture_output=True, text=True,
                              timeout=timeout, **kw)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def run(self, *args):
        return self("run", "--runtime", "pallet", "--rm", *args)


def test_docker_run(dockerd):
    done = dockerd.run("busybox", "sh", "-c", "echo hello docker; hostname | wc -c; exit 5")
    assert done.returncode == 5, done.stderr
    assert done.stdout.split()[:2] == ["hello", "docker"]


def test_docker_run_options(dockerd):
    done = dockerd.run("--init", "--memory", "64m", "--pids-limit", "17", "--cap-drop", "ALL",
                       "--read-only", "--user", "1000:1000", "busybox", "sh", "-c",
                       "cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                       "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                       "/sys/fs/cgroup/pids/pids.max; "
                       "grep -E '^(CapEff|Seccomp):' /proc/self/status; id -u; id -g; "
                       "touch /x 2>/dev/null && echo rw || echo ro")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("/sbin/docker-init -- sh")
    assert lines[1:3] == [str(64 << 20), "17"]
    assert lines[3] == "CapEff:\t0000000000000000"
    assert lines[4] == "Seccomp:\t2"          # docker's default profile, through pallet-runc
    assert lines[5:8] == ["1000", "1000", "ro"]


def test_docker_seccomp_default_profile_blocks_unshare(dockerd):
    done = dockerd.run("--cap-add", "SYS_ADMIN", "--security-opt", "apparmor=unconfined",
                       "busybox", "sh", "-c", "unshare -U true; echo unshare=$?")
    # with CAP_SYS_ADMIN docker's profile lets unshare through: compare with the default
    plain = dockerd.run("busybox", "sh", "-c", "unshare -n true 2>&1; echo unshare=$?")
    assert "unshare=1" in plain.stdout and "Operation not permitted" in plain.stdout
    assert done.returncode == 0


def test_docker_exec_and_interactive(dockerd):
    import pexpect

    name = _name("pl-dk")
    assert dockerd("run", "--runtime", "pallet", "-d", "--name", name, "busybox",
                   "sleep", "60").returncode == 0
    try:
        ex = dockerd("exec", name, "sh", "-c", "echo in-exec; cat /proc/1/cmdline; exit 3")
        assert ex.returncode == 3 and ex.stdout.startswith("in-exec\nsleep"), ex.stderr
        child = pexpect.spawn(DOCKER, ["-H", dockerd.host, "exec", "-it", name, "sh"], timeout=30)
        child.expect(r"[#$] ")
        child.sendline("tty; exit 6")
        child.expect(r"/dev/pts/\d+")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 6
    finally:
        dockerd("rm", "-f", name)
    child = pexpect.spawn(DOCKER, ["-H", dockerd.host, "run", "--runtime", "pallet", "--rm", "-it",
                                   "busybox", "sh"], timeout=30)
    try:
        child.expect(r"[#$] ")
        child.sendline("echo typed-$((6*7)); exit 4")
        child.expect("typed-42")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 4
