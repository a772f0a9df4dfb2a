"""Which shim pallet-containerd runs: containerd's rule, pallet's names, the table.

``io.containerd.runc.v2`` runs Debian's ``containerd-shim-runc-v2`` (which
runs runc), as in containerd; ``io.containerd.pallet.v2`` runs pallet-shim;
``[containerd.runtimes]`` puts entries in front of the rule.  Checked through
pallet-ctr and through palletd (``[engine] runtime``).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from cd_util import PALLET_RUNTIME, VENV_BIN, ok, pallet_ctr, serving, wait_for
from engines import Pallet, pids_mentioning

pytestmark = [pytest.mark.root, pytest.mark.skipif(
    not shutil.which("containerd-shim-runc-v2") or not shutil.which("runc"),
    reason="needs Debian's containerd-shim-runc-v2 and runc")]

IMAGE = "docker.io/library/busybox:latest"
RUNC_ROOT = "/run/containerd/runc"  # where containerd's runc shim keeps runc's state


def _shim_names(cid: str) -> set[str]:
    """What ``ps`` calls the shim of ``cid`` (Debian's: containerd-shim; ours: pallet-shim)."""
    names = set()
    for pid in pids_mentioning(cid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode()
        except OSError:
            continue
        if "shim" in argv0:
            names.add(os.path.basename(argv0).split()[0])
    return names


@pytest.fixture
def loaded(pallet_containerd, busybox_tar):
    ok(pallet_ctr(pallet_containerd.address, "images", "import", busybox_tar))
    return pallet_containerd


def test_runc_v2_runs_debians_shim_through_pallet_ctr(loaded):
    a = loaded.address
    r = pallet_ctr(a, "run", "--rm", IMAGE, "rs-1", "sh", "-c", "echo via-runc; exit 5")
    assert (r.returncode, r.stdout) == (5, b"via-runc\n"), r.stderr
    ok(pallet_ctr(a, "run", "-d", IMAGE, "rs-2", "sleep", "100"))
    try:
        assert _shim_names("rs-2") == {"containerd-shim-runc-v2"}
        state = json.loads(subprocess.run(
            ["runc", "--root", os.path.join(RUNC_ROOT, "default"), "state", "rs-2"],
            capture_output=True, check=True).stdout)
        assert state["status"] == "running"
        bundle = os.path.join(loaded.state, "io.containerd.runtime.v2.task", "default", "rs-2")
        with open(os.path.join(bundle, "shim.json")) as f:
            assert json.load(f)["runtime"] == "io.containerd.runc.v2"
        r = pallet_ctr(a, "tasks", "exec", "--exec-id", "e1", "rs-2", "sh", "-c",
                       "echo in-exec; exit 6")
        assert (r.returncode, r.stdout) == (6, b"in-exec\n")
        ps = ok(pallet_ctr(a, "tasks", "ps", "rs-2"))
        assert len(ps.splitlines()) == 2
        ok(pallet_ctr(a, "tasks", "pause", "rs-2"))
        assert "PAUSED" in ok(pallet_ctr(a, "tasks", "ls"))
        ok(pallet_ctr(a, "tasks", "resume", "rs-2"))
        metrics = ok(pallet_ctr(a, "tasks", "metrics", "rs-2"))
        assert "pids.current" in metrics
    finally:
        pallet_ctr(a, "tasks", "kill", "-s", "SIGKILL", "rs-2")
        wait_for(lambda: "STOPPED" in pallet_ctr(a, "tasks", "ls").stdout.decode())
        pallet_ctr(a, "tasks", "delete", "rs-2")
        pallet_ctr(a, "containers", "delete", "rs-2")
    assert not os.path.exists(os.path.join(RUNC_ROOT, "default", "rs-2"))
    assert wait_for(lambda: not _shim_names("rs-2"))


def test_pallet_runtime_runs_pallet_shim(loaded):
    a = loaded.address
    ok(pallet_ctr(a, "run", "-d", "--runtime", PALLET_RUNTIME, IMAGE, "ps-1", "sleep", "100"))
    try:
        assert _shim_names("ps-1") == {"pallet-shim"}
    finally:
        pallet_ctr(a, "tasks", "kill", "-s", "SIGKILL", "ps-1")
        wait_for(lambda: "STOPPED" in pallet_ctr(a, "tasks", "ls").stdout.decode())
        pallet_ctr(a, "tasks", "delete", "ps-1")
        pallet_ctr(a, "containers", "delete", "ps-1")


def test_the_table_puts_runc_v2_on_pallet_shim(pallet_containerd, busybox_tar):
    """``[containerd.runtimes]`` overrides containerd's rule for a name."""
    d = pallet_containerd
    config = os.path.join(d.base, "pallet.toml")
    with open(config, "w") as f:
        f.write('[containerd.runtimes]\n"io.containerd.runc.v2" = "pallet-shim"\n'
                f'"io.containerd.elsewhere.v1" = "{shutil.which("containerd-shim-runc-v2")}"\n')
    d.proc.terminate()
    d.proc.wait(30)
    d.restart("--config", config)
    ok(pallet_ctr(d.address, "images", "import", busybox_tar))
    ok(pallet_ctr(d.address, "run", "-d", IMAGE, "tb-1", "sleep", "100"))
    ok(pallet_ctr(d.address, "run", "-d", "--runtime", "io.containerd.elsewhere.v1", IMAGE,
                   "tb-2", "sleep", "100"))
    try:
        assert _shim_names("tb-1") == {"pallet-shim"}
        assert _shim_names("tb-2") == {"containerd-shim-runc-v2"}
    finally:
        for cid in ("tb-1", "tb-2"):
            pallet_ctr(d.address, "tasks", "kill", "-s", "SIGKILL", cid)
        wait_for(lambda: pallet_ctr(d.address, "tasks", "ls").stdout.decode().count("STOPPED")
                 == 2)
        for cid in ("tb-1", "tb-2"):
            pallet_ctr(d.address, "tasks", "delete", cid)
            pallet_ctr(d.address, "containers", "delete", cid)


def test_a_bad_table_stops_pallet_containerd(pallet_containerd):
    d = pallet_containerd
    config = os.path.join(d.base, "bad.toml")
    with open(config, "w") as f:
        f.write('[containerd.runtimes]\n"io.containerd.x.v1" = "relative/path"\n')
    r = subprocess.run([os.path.join(VENV_BIN, "pallet-containerd"), "--config", config, "--address", os.path.join(d.base, "x.sock"),
                        "--root", os.path.join(d.base, "xr"), "--state",
                        os.path.join(d.base, "xs")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "[containerd.runtimes] io.containerd.x.v1 = 'relative/path'" in r.stderr


@pytest.fixture
def palletd_on_runc_shim(busybox_tar):
    with serving(Pallet(config='\n[engine]\nruntime = "io.containerd.runc.v2"\n'),
                 busybox_tar) as e:
        yield e


def test_palletd_containers_on_debians_shim(palletd_on_runc_shim):
    d = palletd_on_runc_shim
    r = d.docker("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo hi; exit 3",
                 check=False)
    assert (r.returncode, r.stdout) == (3, b"hi\n")
    cid = d.docker("run", "-d", "--network", "none", "busybox", "sleep",
                   "100").stdout.decode().strip()
    try:
        assert _shim_names(cid) == {"containerd-shim-runc-v2"}
        r = d.docker("exec", cid, "sh", "-c", "echo ex; exit 4", check=False)
        assert (r.returncode, r.stdout) == (4, b"ex\n")
        d.docker("stop", "-t", "1", cid)
        assert d.docker("inspect", "-f", "{{.State.ExitCode}}", cid).stdout.strip() == b"137"
    finally:
        d.docker("rm", "-f", cid, check=False)
