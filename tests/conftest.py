"""Fixtures shared by every test directory.

Each test owns its roots (short paths under /tmp, since unix socket paths are
limited to 108 bytes) and cleans up what it made even when it fails.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (namespaces, mounts, cgroups)")


@pytest.fixture(scope="session", autouse=True)
def host_ksm_put_back():
    """pallet-containerd starts the kernel's same-page merging for its shims
    (``[containerd] shim-memory-merge``): the run leaves the host's switch
    as it found it."""
    from engines import HostKsm

    ksm = HostKsm()
    yield
    ksm.restore()


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory) -> str:
    """The built-in busybox image as a docker-save tarball (built once per run)."""
    built = os.path.join(REPO, "build", "busybox.tar")
    if os.path.exists(built):
        return built
    out = str(tmp_path_factory.mktemp("image") / "busybox.tar")
    subprocess.run([sys.executable, "-m", "pallet.distribution.busybox_image", out], check=True)
    return out


@pytest.fixture
def pallet_engine(busybox_tar):
    """A palletd (with its pallet-containerd) on its own roots, busybox loaded."""
    from engines import Pallet

    engine = Pallet()
    try:
        engine.start()
        engine.docker("load", "-i", busybox_tar)
        yield engine
    finally:
        engine.stop()


def _cgroup_dirs() -> set[str]:
    """Cgroup directories below the controllers, except the machine agent's own."""
    out = set()
    for dirpath, dirs, _files in os.walk("/sys/fs/cgroup"):
        dirs[:] = [d for d in dirs if d != "process_api"]
        if dirpath.count("/") > 4:
            out.add(dirpath)
    return out


def _default_network_leftovers() -> tuple[bool, bool]:
    bridge = os.path.exists("/sys/class/net/pallet0")
    r = subprocess.run(["iptables-legacy-save"], capture_output=True, text=True)
    return bridge, ":PALLET" in r.stdout


@pytest.fixture(scope="session", autouse=True)
def leave_the_machine_as_found():
    """The safety net of the whole run: cgroups that tests' containers left
    (containerd's, dockerd's, palletd's parents) and the default bridge and
    chains of a palletd started without names of its own are removed at the
    end if they were not there at the start.  Each test cleans up after
    itself; this catches what a failing one could not."""
    cgroups_before = _cgroup_dirs()
    bridge_before, chains_before = _default_network_leftovers()
    yield
    for path in sorted(_cgroup_dirs() - cgroups_before, key=len, reverse=True):
        try:
            os.rmdir(path)
        except OSError:
            pass
    bridge_after, chains_after = _default_network_leftovers()
    if (bridge_after and not bridge_before) or (chains_after and not chains_before):
        try:
            from pallet.plugins.net_bridge import firewall
            from pallet.linux import netlink as links
            from pallet.linux import networker as workermod
            from pallet.plugins.net_proxy.publisher import remove_rules
        except ImportError:
            return

        def clean():
            if bridge_after and not bridge_before:
                host = links.HostLinks()
                try:
                    host.delete("pallet0")
                finally:
                    host.close()
            if chains_after and not chains_before:
                firewall.remove("PALLET")
                remove_rules("PALLET")
        workermod.get().call(clean)
