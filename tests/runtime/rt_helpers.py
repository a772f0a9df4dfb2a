"""Helpers of the runtime tests (busybox bundles, waiting, the CLI)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

BUSYBOX = "/bin/busybox"
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))


def make_rootfs(path: str, applets) -> str:
    """A busybox root filesystem: /bin/busybox, one symlink per applet, /etc files."""
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/user"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy(BUSYBOX, os.path.join(path, "bin", "busybox"))
    for name in applets:
        link = os.path.join(path, "bin", name)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nuser:x:1000:\nextra:x:2000:\nnogroup:x:65534:\n")
    return path


class Bundle:
    """A bundle directory whose config.json tests adjust before create."""

    def __init__(self, path: str, applets):
        from pallet.oci.spec import default_spec

        self.path = path
        self.rootfs = make_rootfs(os.path.join(path, "rootfs"), applets)
        self.spec = default_spec()
        self.spec["process"]["terminal"] = False
        self.spec["root"]["readonly"] = False

    def write(self, args=None, **process) -> str:
        if args is not None:
            self.spec["process"]["args"] = list(args)
        self.spec["process"].update(process)
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.spec, f)
        return self.path


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def reap_all() -> None:
    """Collect the exit of anything a failed test left to us (we are the subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Output:
    """A file the container writes its stdout/stderr to."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def read(self) -> str:
        with open(self.path) as f:
            return f.read()

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def wait_status(pid: int, timeout: float = 20.0) -> int:
    """waitpid with a timeout: exit code, or 128+N for a signal."""
    deadline = time.monotonic() + timeout
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"container process {pid} did not exit within {timeout}s")
        time.sleep(0.005)


def run_container(runtime, bundle_path: str, out: Output, cid: str | None = None,
                  timeout: float = 20.0) -> int:
    cid = cid or new_id()
    pid = runtime.create(cid, bundle_path, stdout=out.fd, stderr=out.fd)
    runtime.start(cid)
    code = wait_status(pid, timeout)
    runtime.delete(cid)
    return code


def pallet_runc(*args, root: str, check: bool = False, timeout: float = 30, **kw):
    """Run the pallet-runc command line (the installed script, else -m)."""
    script = os.path.join(VENV_BIN, "pallet-runc")
    cmd = [script] if os.path.exists(script) else [sys.executable, "-m", "pallet.commands.runc"]
    return subprocess.run(cmd + ["--root", root, *args], capture_output=True, text=True,
                          timeout=timeout, check=check, **kw)


def wait_reaping(pid: int, timeout: float = 20.0) -> int:
    """Like wait_status, but reaps every other child meanwhile: the PID 1 of a
    dying PID namespace waits until the namespace's other processes -- exec'd
    ones that are our children since their runtime exited -- are reaped."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            raise AssertionError(f"{pid} is not our child") from None
        if got == pid:
            return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if got == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"process {pid} did not exit within {timeout}s")
            time.sleep(0.005)
