"""Fixtures of the runtime contract tests: every installed runtime (runtime_oci
once per runc-compatible binary) on a state root of its own, busybox bundles,
and cleanup of containers, cgroups and children even when a test fails.

The test process plays the shim: a child subreaper that reaps the
containers' processes."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid

import pytest

from contract_helpers import (bundle_spec, delete_all, kernel_for, read_to_eof, runtime_variants,
                              wait_exit, write_bundle)

VARIANTS = runtime_variants()


class Setup:
    """A runtime under test and what its tests make: bundles, cgroups, sockets."""

    def __init__(self, runtime, rootfs: str, base: str):
        self.runtime = runtime
        self.rootfs = rootfs
        self.base = base
        self.cgroups: list[str] = []

    def new_id(self) -> str:
        return f"c-{uuid.uuid4().hex[:12]}"

    def bundle(self, args, *, cgroup: bool = False, **spec_kw) -> str:
        """A bundle running ``args`` (with a cgroup of its own when asked)."""
        path = os.path.join(self.base, "bundles", uuid.uuid4().hex[:8])
        cgroups_path = None
        if cgroup:
            cgroups_path = f"/pallet-contract-{uuid.uuid4().hex[:10]}"
            self.cgroups.append(cgroups_path)
        return write_bundle(path, bundle_spec(self.rootfs, args, cgroups_path=cgroups_path,
                                              **spec_kw))

    def run(self, args, *, stdin=None, **bundle_kw) -> tuple[int, bytes]:
        """Create, start, wait and delete a container; (exit code, output)."""
        cid = self.new_id()
        r, w = os.pipe()
        try:
            pid = self.runtime.create(cid, self.bundle(args, **bundle_kw), stdin=stdin,
                                      stdout=w, stderr=w)
            os.close(w)
            w = -1
            self.runtime.start(cid)
            code = wait_exit(pid)
            out = read_to_eof(r)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        self.runtime.delete(cid)
        return code, out

    def console_socket(self) -> "ConsoleSocket":
        return ConsoleSocket(self.base)

    def cleanup(self) -> None:
        delete_all(self.runtime)
        for path in self.cgroups:
            for controller in os.listdir("/sys/fs/cgroup"):
                try:
                    os.rmdir(f"/sys/fs/cgroup/{controller}{path}")
                except OSError:
                    pass


class ConsoleSocket:
    """runc's --console-socket: receives the pty master the runtime sends."""

    def __init__(self, base: str):
        self.dir = tempfile.mkdtemp(prefix="cs-", dir="/tmp")  # short: sun_path limit
        self.path = os.path.join(self.dir, "s")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(20)

    def master(self) -> int:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(20)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        assert fds, "no pty master came over the console socket"
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_PROBED: dict[str, str] = {}


def _probe(setup: Setup, test_id: str) -> None:
    """Skip a binary that cannot run a container on this machine at all (crun
    under cgroups v1 in hybrid mode), with its own message."""
    if test_id not in _PROBED:
        try:
            setup.run(["true"], cgroup=True)
            _PROBED[test_id] = ""
        except Exception as e:  # noqa: BLE001 - the reason is the skip message
            _PROBED[test_id] = f"{test_id} cannot run a container here: {e}"
    if _PROBED[test_id]:
        pytest.skip(_PROBED[test_id])


@pytest.fixture(params=VARIANTS, ids=[v[0] for v in VARIANTS])
def setup(request, busybox_root):
    """A runtime from the kernel (role ``runtime`` filled by the plugin under
    test, ``init`` by the default) on a root of its own."""
    from pallet.core.paths import Paths

    test_id, plugin, section = request.param
    base = tempfile.mkdtemp(prefix="rtc-", dir="/tmp")
    paths = Paths(os.path.join(base, "data"), os.path.join(base, "exec"))
    kernel = kernel_for("runtime", plugin, paths, section, roles=("runtime", "init"))
    runtime = kernel.provide("runtime").with_root(os.path.join(base, "state"))
    s = Setup(runtime, busybox_root, base)
    try:
        _probe(s, test_id)
        yield s
    finally:
        s.cleanup()
        shutil.rmtree(base, ignore_errors=True)
