"""Fixtures for the shim tests: a busybox rootfs, bundles, and shims started for real.

Each test gets its own root under /tmp/pl-XXXX (short, for unix socket paths),
its own namespace name and container ids; everything started is stopped by
pid and every mount is undone, even when the test fails.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile

import pytest

from pallet.core.paths import Paths
from shimtest_util import pid_alive, wait_gone

BUSYBOX = "/bin/busybox"


def needs_root():
    return pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def runc_like_spec(args, *, readonly=True, env=None) -> dict:
    """A config.json as ``runc spec`` (and ``pallet-runc spec``) writes it, without a terminal."""
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                             for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": readonly},
        "hostname": "pallet",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def make_busybox_rootfs(path: str) -> None:
    """A rootfs with /bin/busybox and its applets as symlinks (``busybox --install -s``)."""
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "dev", "sys", "tmp", "etc", "root"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    subprocess.run(["chroot", path, "/bin/busybox", "--install", "-s"], check=True)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")


def _umount_below(path: str) -> None:
    """Lazily unmount everything mounted at or below ``path`` (deepest first)."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    points = [p for p in points if p == path or p.startswith(path + "/")]
    from pallet.plugins.api_grpc.shim import sysutil

    for p in sorted(points, key=len, reverse=True):
        try:
            sysutil.umount2(p, sysutil.MNT_DETACH)
        except OSError:
            pass


@pytest.fixture(scope="session")
def busybox_rootfs():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.path.exists(BUSYBOX):
        pytest.skip("needs busybox-static")
    base = tempfile.mkdtemp(prefix="pl-bb-", dir="/tmp")
    rootfs = os.path.join(base, "rootfs")
    make_busybox_rootfs(rootfs)
    yield rootfs
    _umount_below(base)
    shutil.rmtree(base, ignore_errors=True)


class Env:
    """One test's roots, paths and the things to clean up."""

    def __init__(self, root: str):
        self.root = root
        self.paths = Paths(os.path.join(root, "d"), os.path.join(root, "r"))
        self.namespace = "t" + secrets.token_hex(3)
        self.shim_pids: list[int] = []
        self.container_ids: list[str] = []
        self.clients = []

    def new_id(self, length: int = 13) -> str:
        cid = ("c" + secrets.token_hex(32))[:length]
        self.container_ids.append(cid)
        return cid

    def bundle(self, cid: str, args, **spec_kw) -> str:
        bundle = self.paths.bundle_dir(self.namespace, cid)
        os.makedirs(os.path.join(bundle, "rootfs"), exist_ok=True)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(runc_like_spec(args, **spec_kw), f)
        return bundle

    def fifo(self, cid: str, name: str) -> str:
        d = self.paths.fifo_dir(cid)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name)
        os.mkfifo(path, 0o600)
        return path

    def shim_pid(self, bundle: str) -> int:
        with open(os.path.join(bundle, "shim.pid")) as f:
            pid = int(f.read())
        if pid not in self.shim_pids:
            self.shim_pids.append(pid)
        return pid

    def cleanup(self) -> None:
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        for pid in self.shim_pids:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wait_gone(pid, 5)
        from pallet.plugins.runtime_ns.runtime import NsRuntime

        rt = NsRuntime(root=os.path.join(self.paths.runtime_root, self.namespace))
        for cid in self.container_ids:
            try:
                rt.delete(cid, force=True)
            except Exception:
                pass
        _umount_below(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _stop_zygote():
    yield
    from pallet.plugins.api_grpc.shim import launch

    launch.stop_zygote()


@pytest.fixture
def env():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = tempfile.mkdtemp(prefix="pl-", dir="/tmp")
    e = Env(root)
    try:
        yield e
    finally:
        e.cleanup()
