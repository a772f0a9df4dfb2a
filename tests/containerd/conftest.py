"""Fixtures of the containerd tests: Debian's real containerd 1.6 and pallet-containerd,
each on its own short roots, stopped by pid and cleaned up even when a test fails."""
from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

from cd_util import CONTAINERD, VENV_BIN, Daemon
from engines import wait_socket


@pytest.fixture
def real_containerd():
    """Debian's containerd 1.6 with its own root, state, socket and config."""
    if os.geteuid() != 0 or not os.path.exists(CONTAINERD):
        pytest.skip("needs root and /usr/bin/containerd")
    base = tempfile.mkdtemp(prefix="pl-", dir="/tmp")
    d = Daemon(base, os.path.join(base, "c.sock"), os.path.join(base, "root"),
               os.path.join(base, "state"))
    config = os.path.join(base, "config.toml")
    with open(config, "w") as f:
        f.write(f'''version = 2
root = "{d.root}"
state = "{d.state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d.address}"
[ttrpc]
  address = "{d.address}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
''')
    try:
        with open(d.log, "w") as log:
            d.proc = subprocess.Popen([CONTAINERD, "--config", config, "--log-level", "warn"],
                                      stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        wait_socket(d.address, d.proc, d.log)
        yield d
    finally:
        d.stop()


@pytest.fixture
def pallet_containerd():
    """pallet-containerd with its own root, state and socket."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = tempfile.mkdtemp(prefix="pl-", dir="/tmp")
    d = Daemon(base, os.path.join(base, "p.sock"), os.path.join(base, "root"),
               os.path.join(base, "state"))
    try:
        with open(d.log, "w") as log:
            d.proc = subprocess.Popen(
                [os.path.join(VENV_BIN, "pallet-containerd"), "--address", d.address,
                 "--root", d.root, "--state", d.state, "--log-level", "debug"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        wait_socket(d.address, d.proc, d.log)
        yield d
    finally:
        d.stop()


@pytest.fixture(params=["real", "pallet"])
def any_containerd(request):
    """Each test runs against the real containerd and against pallet-containerd."""
    name = "real_containerd" if request.param == "real" else "pallet_containerd"
    return request.getfixturevalue(name)
