"""palletd on Debian's real containerd 1.6 as its containerd (``--containerd``).

The containerd role swapped for the real one: the docker CLI drives palletd,
palletd drives containerd 1.6 (started here on roots and an address of its
own), which runs its own runc shim (palletd's runtime on a foreign
containerd is dockerd's, ``io.containerd.runc.v2``).  run, exec, logs,
stop and rm work end to end, exits and OOM kills come from containerd's
events, and nothing is left in containerd afterwards.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

from cd_util import serving, wait_for
from pallet.containerd.client import SyncContainerd
from engines import Pallet, pids_mentioning

pytestmark = pytest.mark.root


@pytest.fixture
def palletd(real_containerd, busybox_tar):
    with serving(Pallet("--containerd", real_containerd.address), busybox_tar) as e:
        yield e


def _shims(containerd, cid: str) -> list[str]:
    """The command names of the shims serving ``cid`` (their command line names it)."""
    out = []
    for pid in pids_mentioning(cid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                out.append(f.read().strip())
        except OSError:
            pass
    return out


def test_docker_run_end_to_end(palletd, real_containerd):
    d, c = palletd, real_containerd
    assert "busybox" in d.docker("images").stdout.decode()
    r = d.docker("run", "--rm", "busybox", "sh", "-c", "echo hi; echo err >&2; exit 3",
                 check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, b"hi\n", b"err\n")

    cid = d.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                   "while true; do echo tick; sleep 0.1; done").stdout.decode().strip()
    info = json.loads(c.ctr("containers", "info", cid, namespace="moby"))
    assert info["Runtime"]["Name"] == "io.containerd.runc.v2"
    assert "containerd-shim" in _shims(c, cid)  # containerd's runc shim, not pallet-shim
    r = d.docker("exec", "ticker", "sh", "-c", "echo in-exec; exit 4", check=False)
    assert (r.returncode, r.stdout) == (4, b"in-exec\n")
    assert wait_for(lambda: d.docker("logs", "ticker").stdout.count(b"tick\n") >= 3)
    assert b"while true" in d.docker("top", "ticker").stdout
    d.docker("stop", "-t", "1", "ticker")
    state = json.loads(d.docker("inspect", "ticker").stdout)[0]["State"]
    assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == ("exited", 137, False)
    d.docker("start", "ticker")
    assert json.loads(d.docker("inspect", "ticker").stdout)[0]["State"]["Running"] is True
    d.docker("rm", "-f", "ticker")
    assert c.ctr("tasks", "ls", "-q", namespace="moby").split() == []
    assert c.ctr("containers", "ls", "-q", namespace="moby").split() == []


def test_oom_and_exit_from_containerds_events(palletd):
    d = palletd
    since = str(int(time.time()) - 1)
    r = d.docker("run", "--name", "oomer", "-m", "8m", "--memory-swap", "8m", "busybox", "sh",
                 "-c", "x=$(head -c 60000000 /dev/zero | tr '\\0' a); echo survived", check=False)
    try:
        assert r.returncode == 137
        state = json.loads(d.docker("inspect", "oomer").stdout)[0]["State"]
        assert state["OOMKilled"] is True
        events = d.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                          "--filter", "container=oomer", "--format",
                          "{{.Action}}").stdout.decode().split()
        assert "oom" in events and "die" in events
    finally:
        d.docker("rm", "-f", "oomer", check=False)


def test_init_never_silently_dropped(palletd, real_containerd):
    """init_tini's builtin init cannot run under containerd's runc shim: the
    start says so (docker's 500 and message), rather than running the
    process without an init; nothing is left in containerd."""
    d, c = palletd, real_containerd
    r = d.docker("run", "--rm", "--init", "busybox", "true", check=False)
    assert r.returncode == 125  # the docker CLI's code for an error of the daemon
    assert b"--init: the init role's builtin init runs only under pallet's runtime" in r.stderr
    assert b"io.containerd.runc.v2" in r.stderr
    assert wait_for(lambda: c.ctr("containers", "ls", "-q", namespace="moby").split() == [])


def test_first_containers_survive_containerds_gc(palletd, real_containerd):
    """containerd collects what nothing references whenever its GC runs: an
    image's first container makes the init snapshot, and until the
    container's own snapshot refers to it neither the half-made init snapshot
    nor the committed one is referenced.  A lease holds them (as dockerd's
    do).  Here containerd's GC runs back to back (a lease deleted with
    ``sync`` runs it), each container is an image's first (its init snapshot
    collected after the last one went) and every run succeeds."""
    d, c = palletd, real_containerd
    stop = threading.Event()
    collections = [0]

    def collect():
        with SyncContainerd(c.address, "moby") as ctrd:
            while not stop.is_set():
                ctrd.lease_delete(ctrd.lease_create(expire=60), sync=True)
                collections[0] += 1

    def init_snapshots():
        return [line.split()[0] for line in c.ctr("snapshots", "ls", namespace="moby").splitlines()[1:]
                if line.split()[0].endswith("-init")]

    gc = threading.Thread(target=collect, daemon=True)
    gc.start()
    try:
        for i in range(12):
            assert wait_for(lambda: init_snapshots() == []), "the GC left the init snapshot"
            r = d.docker("run", "--rm", "busybox", "echo", f"run {i}", check=False)
            assert (r.returncode, r.stdout, r.stderr) == (0, f"run {i}\n".encode(), b""), \
                r.stderr.decode()
    finally:
        stop.set()
        gc.join(30)
    assert collections[0] > 12
