"""pallet-shim driven by Debian's real containerd 1.6 (``ctr run --runtime io.containerd.pallet.v2``).

containerd finds ``containerd-shim-pallet-v2`` on its PATH, runs its ``start``
verb in the bundle, talks ttrpc to it, receives its events on
``<socket>.ttrpc`` and runs its ``delete`` verb after it exits.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from shimtest_util import pid_alive, wait_gone

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
IMAGE = "docker.io/library/busybox:latest"
RUNTIME = "io.containerd.pallet.v2"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not CONTAINERD or not CTR
    or not os.path.exists(os.path.join(VENV_BIN, "containerd-shim-pallet-v2")),
    reason="needs root, containerd, ctr and the installed containerd-shim-pallet-v2")


def _busybox_tarball(path: str) -> None:
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cli",
                        "busybox_image.py")
    spec = importlib.util.spec_from_file_location("pallet_test_busybox_image", here)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.save_tarball(path)


class Containerd:
    def __init__(self, root: str):
        self.root = root
        self.sock = os.path.join(root, "c.sock")
        self.state = os.path.join(root, "state")
        config = os.path.join(root, "config.toml")
        with open(config, "w") as f:
            f.write(f'version = 2\nroot = "{root}/root"\nstate = "{self.state}"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n[debug]\n  level = "debug"\n')
        self.log = open(os.path.join(root, "containerd.log"), "wb")
        env = dict(os.environ, PATH=VENV_BIN + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
        self.proc = subprocess.Popen([CONTAINERD, "--config", config], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("containerd did not start: " + self.logs()[-2000:])
            time.sleep(0.05)

    def ctr(self, *args, check=True, timeout=60):
        proc = subprocess.run([CTR, "-a", self.sock, *args], capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {proc.returncode} "
                                 f"{proc.stderr.decode()}\n{self.logs()[-3000:]}")
        return proc

    def logs(self) -> str:
        with open(os.path.join(self.root, "containerd.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def shim_pids(self, cid: str = "*") -> list[int]:
        pids = []
        for path in glob.glob(os.path.join(self.state, "io.containerd.runtime.v2.task", "*", cid,
                                           "shim.pid")):
            try:
                with open(path) as f:
                    pids.append(int(f.read()))
            except (OSError, ValueError):
                pass
        return pids

    def stop(self) -> None:
        shims = self.shim_pids()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        for pid in shims:  # shims started for this test only (its own state dir)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 5)


@pytest.fixture(scope="module")
def containerd():
    root = tempfile.mkdtemp(prefix="pl-rc", dir="/tmp")
    cd = None
    try:
        cd = Containerd(root)
        tarball = os.path.join(root, "busybox.tar")
        _busybox_tarball(tarball)
        cd.ctr("images", "import", tarball)
        yield cd
    finally:
        if cd is not None:
            cd.stop()
        from shimtest_util import umount_below

        umount_below(root)
        shutil.rmtree(root, ignore_errors=True)


def test_ctr_run_output_and_exit_code(containerd):
    proc = containerd.ctr("run", "--rm", "--runtime", RUNTIME, IMAGE, "plr-a",
                          "sh", "-c", "echo hello from pallet; exit 7", check=False)
    assert proc.returncode == 7, proc.stderr.decode() + containerd.logs()[-3000:]
    assert proc.stdout == b"hello from pallet\n"
    logs = containerd.logs()
    for topic in ("/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"):
        assert f"topic={topic}" in logs  # events forwarded by the shim
    assert containerd.ctr("containers", "ls", "-q").stdout.strip() == b""


def test_ctr_detached_kill_and_delete(containerd):
    containerd.ctr("run", "-d", "--runtime", RUNTIME, IMAGE, "plr-b", "sleep", "1000")
    try:
        ls = containerd.ctr("task", "ls").stdout.decode()
        assert "plr-b" in ls and "RUNNING" in ls
        shim = [p for p in containerd.shim_pids("plr-b") if pid_alive(p)]
        assert len(shim) == 1
        with open(f"/proc/{shim[0]}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0] == b"pallet-shim plr-b"
        containerd.ctr("task", "kill", "-s", "SIGKILL", "plr-b")
        deadline = time.monotonic() + 10
        while "STOPPED" not in containerd.ctr("task", "ls").stdout.decode():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        out = containerd.ctr("task", "delete", "plr-b")
        assert b"137" in out.stderr or out.returncode == 0
        assert wait_gone(shim[0]), "shim still running after task delete"
    finally:
        containerd.ctr("task", "delete", "-f", "plr-b", check=False)
        containerd.ctr("containers", "rm", "plr-b", check=False)


def test_ctr_exec_ps_pause_metrics(containerd):
    """What ctr does with a running task, through pallet-shim."""
    containerd.ctr("run", "-d", "--runtime", RUNTIME, IMAGE, "plr-c", "sleep", "1000")
    try:
        out = containerd.ctr("task", "exec", "--exec-id", "e1", "plr-c", "sh", "-c",
                             "echo exec-out; exit 3", check=False)
        assert out.returncode == 3 and out.stdout == b"exec-out\n"
        ps = containerd.ctr("task", "ps", "plr-c").stdout.decode()
        assert len(ps.splitlines()) == 2  # header and PID 1
        containerd.ctr("task", "pause", "plr-c")
        assert "PAUSED" in containerd.ctr("task", "ls").stdout.decode()
        containerd.ctr("task", "resume", "plr-c")
        metrics = containerd.ctr("task", "metrics", "plr-c").stdout.decode()
        assert "memory.usage_in_bytes" in metrics and "pids.current" in metrics
    finally:
        containerd.ctr("task", "kill", "-s", "SIGKILL", "plr-c", check=False)
        time.sleep(0.5)
        containerd.ctr("task", "delete", "-f", "plr-c", check=False)
        containerd.ctr("containers", "rm", "plr-c", check=False)


def test_ctr_run_with_a_terminal(containerd):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(CTR, ["-a", containerd.sock, "run", "-t", "--rm", "--runtime", RUNTIME,
                                IMAGE, "plr-t", "sh"], timeout=30)
    try:
        child.expect(rb"# ")
        # the new size travels ctr -> containerd -> shim: ask until it has arrived.
        # ctr starts to follow SIGWINCH only after the task has started, so the
        # size is changed (and the signal sent) again on each try
        for i in range(50):
            child.setwinsize(30 + i % 2, 90)
            child.setwinsize(30, 90)
            child.sendline(b"stty size")
            if child.expect([rb"30 90", rb"\d+ \d+"]) == 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the terminal was never resized")
        child.sendline(b"tty")
        child.expect(rb"/dev/pts/0")
        child.sendline(b"exit 5")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        if child.exitstatus != 5:  # what a failed run leaves behind
            containerd.ctr("task", "kill", "-s", "SIGKILL", "plr-t", check=False)
            time.sleep(0.5)
            containerd.ctr("task", "delete", "-f", "plr-t", check=False)
            containerd.ctr("containers", "rm", "plr-t", check=False)
    assert child.exitstatus == 5


def test_killed_shim_is_cleaned_up_by_containerd(containerd):
    containerd.ctr("run", "-d", "--runtime", RUNTIME, IMAGE, "plr-k", "sleep", "1000")
    try:
        shim = [p for p in containerd.shim_pids("plr-k") if pid_alive(p)]
        assert len(shim) == 1
        task_pid = int(containerd.ctr("task", "ls").stdout.decode().split("\n")[1].split()[1])
        os.kill(shim[0], signal.SIGKILL)
        # containerd runs our delete verb: the container is killed, its rootfs unmounted
        assert wait_gone(task_pid, 20)
        deadline = time.monotonic() + 20
        while "plr-k" in containerd.ctr("task", "ls").stdout.decode():
            assert time.monotonic() < deadline, containerd.logs()[-2000:]
            time.sleep(0.1)
        with open("/proc/self/mountinfo") as f:
            assert "/plr-k/rootfs" not in f.read()
    finally:
        containerd.ctr("task", "delete", "-f", "plr-k", check=False)
        containerd.ctr("containers", "rm", "plr-k", check=False)
