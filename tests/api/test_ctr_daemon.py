"""Restart policies (after a crash and after a daemon restart) and live-restore
(palletd killed with SIGKILL while containers run), through the docker CLI
and docker-py."""
from __future__ import annotations

import os
import signal
import time

import pytest

from ctr_helpers import inspect, out, start_palletd, state, wait_for

pytestmark = pytest.mark.root


@pytest.fixture
def fresh(busybox_tar):
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    daemons = []

    def make(*extra):
        daemons.append(start_palletd(busybox_tar, *extra))
        return daemons[-1]
    try:
        yield make
    finally:
        for dm in daemons:
            dm.cleanup()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_daemon(d) -> None:
    """SIGKILL palletd itself (by pid); its pallet-containerd and shims stay."""
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(30)


def test_policies_after_crash(fresh):
    d = fresh()
    # on-failure:2 — two restarts, with the backoff between them, then it stays down
    t0 = time.monotonic()
    cid = out(d.docker("run", "-d", "--restart", "on-failure:2", "busybox", "sh", "-c",
                       "exit 3"))
    wait_for(lambda: (lambda s: s["Status"] == "exited" and
                      inspect(d, cid)["RestartCount"] == 2 or None)(state(d, cid)), timeout=30)
    assert time.monotonic() - t0 >= 0.3     # 100 ms, then 200 ms
    time.sleep(0.5)
    info = inspect(d, cid)
    assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 3
    # a clean exit is no failure
    ok = out(d.docker("run", "-d", "--restart", "on-failure", "busybox", "true"))
    wait_for(lambda: state(d, ok)["Status"] == "exited")
    assert inspect(d, ok)["RestartCount"] == 0
    # always: the process killed from the host comes back, with a new pid
    cid = out(d.docker("run", "-d", "--restart", "always", "busybox", "sleep", "300"))
    pid = state(d, cid)["Pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: (lambda s: s["Running"] and s["Pid"] not in (0, pid))(state(d, cid)))
    assert inspect(d, cid)["RestartCount"] == 1
    events = d.api("GET", f"/v1.43/events?since=0&until={int(time.time()) + 1}"
                          f"&filters=%7B%22container%22%3A%5B%22{cid}%22%5D%7D")[2].decode()
    assert '"Action": "die"' in events and events.count('"Action": "start"') == 2
    # docker stop: no restart; docker start brings it back under its policy
    d.docker("stop", "-t", "1", cid)
    time.sleep(0.5)
    assert state(d, cid)["Status"] == "exited"
    d.docker("start", cid)
    assert state(d, cid)["Running"]
    d.docker("rm", "-f", cid)


def test_policies_across_daemon_restart(fresh):
    """Without live-restore a SIGTERM stops the containers, as dockerd does; at
    the next start those whose policy says so come back."""
    d = fresh()
    # sleep as PID 1 ignores SIGTERM: a short stop timeout keeps the test quick
    run = ("run", "-d", "--stop-timeout", "1")
    always = out(d.docker(*run, "--restart", "always", "busybox", "sleep", "300"))
    unless = out(d.docker(*run, "--restart", "unless-stopped", "busybox", "sleep", "300"))
    stopped = out(d.docker(*run, "--restart", "unless-stopped", "busybox", "sleep", "300"))
    plain = out(d.docker(*run, "busybox", "sleep", "300"))
    d.docker("stop", "-t", "0", stopped)
    pids = {c: state(d, c)["Pid"] for c in (always, unless, plain)}
    d.stop_daemon()
    assert not any(_alive(p) for p in pids.values())
    d.start()
    wait_for(lambda: state(d, always)["Running"] and state(d, unless)["Running"])
    assert state(d, plain)["Status"] == "exited"
    assert state(d, stopped)["Status"] == "exited"
    # a SIGKILL'd daemon without live-restore: its containers are stopped at the next
    # start, then restarted by policy
    pid = state(d, always)["Pid"]
    _kill_daemon(d)
    assert _alive(pid)
    d.start()
    wait_for(lambda: (lambda s: s["Running"] and s["Pid"] != pid)(state(d, always)))
    assert not _alive(pid)
    d.docker("rm", "-f", always, unless, stopped, plain)


def test_live_restore_across_kill(fresh):
    d = fresh("--live-restore")
    client = d.client()
    try:
        info = client.info()
        assert info["LiveRestoreEnabled"] is True
        c = client.containers.run("busybox", ["sh", "-c",
                                              "i=0; while [ $i -lt 30 ]; do echo tick$i; "
                                              "i=$((i+1)); sleep 0.1; done; sleep 300"],
                                  detach=True)
        wait_for(lambda: b"tick2" in c.logs())
        pid = c.attrs["State"]["Pid"] or inspect(d, c.id)["State"]["Pid"]
    finally:
        client.close()
    _kill_daemon(d)
    time.sleep(1.0)   # it goes on writing while nobody reads
    assert _alive(pid)
    d.start()
    st = state(d, c.id)
    assert st["Running"] and st["Pid"] == pid
    wait_for(lambda: b"tick29" in d.docker("logs", c.id).stdout)
    lines = d.docker("logs", c.id).stdout.decode().split()
    assert lines == [f"tick{i}" for i in range(30)]
    # and the re-attached wait sees the end
    d.docker("kill", c.id)
    assert out(d.docker("wait", c.id)) == "137"
    d.docker("rm", c.id)


def test_live_restore_from_config(fresh, tmp_path):
    cfg = tmp_path / "pallet.toml"
    cfg.write_text("[daemon]\nlive-restore = true\n")
    d = fresh("--config", str(cfg))
    cid = out(d.docker("run", "-d", "busybox", "sleep", "300"))
    pid = state(d, cid)["Pid"]
    d.stop_daemon()
    assert _alive(pid)
    d.start()
    assert state(d, cid)["Pid"] == pid
    d.docker("rm", "-f", cid)
