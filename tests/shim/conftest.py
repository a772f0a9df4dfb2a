"""Fixtures for the shim tests: a busybox rootfs, bundles, and shims started for real.

Each test gets its own root under /tmp/pl-XXXX (short, for unix socket paths),
its own namespace name and container ids, an event sink standing for
containerd's ttrpc endpoint, and its own zygote; everything started is
stopped by pid and every mount is undone, even when the test fails.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import tempfile

import pytest

from pallet.core.paths import Paths
from shimtest_util import (EventSink, make_busybox_rootfs, pid_alive, pids_with_cmdline,
                           remove_cgroups, runc_like_spec, umount_below, wait_gone)

BUSYBOX = "/bin/busybox"


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
    umount_below(base)
    shutil.rmtree(base, ignore_errors=True)


class Env:
    """One test's roots, paths, event sink and the things to clean up."""

    def __init__(self, root: str):
        self.root = root
        self.paths = Paths(os.path.join(root, "d"), os.path.join(root, "r"))
        self.namespace = "t" + secrets.token_hex(3)
        # what the shims are told containerd's address is: its ".ttrpc" is our sink
        self.address = os.path.join(root, "c.sock")
        self.sink = EventSink(self.address + ".ttrpc")
        self.shim_pids: list[int] = []
        self.container_ids: list[str] = []
        self.clients = []
        self.cgroups: list[str] = []

    def new_id(self, length: int = 13) -> str:
        cid = ("c" + secrets.token_hex(32))[:length]
        self.container_ids.append(cid)
        return cid

    def bundle(self, cid: str, args, **spec_kw) -> str:
        bundle = self.paths.bundle_dir(self.namespace, cid)
        os.makedirs(os.path.join(bundle, "rootfs"), exist_ok=True)
        if spec_kw.get("cgroup") is True:
            spec_kw["cgroup"] = f"/pallet-test-{self.namespace}/{cid}"
        if spec_kw.get("cgroup"):
            self.cgroups.append(spec_kw["cgroup"])
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

    def zygote_pids(self) -> list[int]:
        from pallet.shim import launch

        return pids_with_cmdline(b"pallet-shim zygote " + launch.zygote_socket(
            self.paths).encode())

    def cleanup(self) -> None:
        from pallet.shim import launch

        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        launch.stop_zygote(self.paths)
        for pid in self.shim_pids + self.zygote_pids():
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
            import subprocess

            subprocess.run(["runc", "--root", os.path.join(self.paths.runtime_root,
                                                          self.namespace),
                            "delete", "--force", cid], capture_output=True)
        self.sink.close()
        umount_below(self.root)
        remove_cgroups(self.cgroups)
        shutil.rmtree(self.root, ignore_errors=True)


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
