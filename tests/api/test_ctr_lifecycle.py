"""Container operations through the docker CLI and docker-py: pause, rename,
update, restart, kill, wait, top, stats, list filters and sizes, prune, and
docker's status codes for the wrong state."""
from __future__ import annotations

import json
import os
import signal

import pytest

from ctr_helpers import inspect, out, state, wait_for

pytestmark = pytest.mark.root


def test_inspect_state_and_pause(d):
    cid = out(d.docker("run", "-d", "busybox", "sleep", "300"))
    st = state(d, cid)
    assert st["Status"] == "running" and st["Running"] and not st["Paused"]
    assert st["Pid"] > 0 and st["StartedAt"].startswith("20") and st["OOMKilled"] is False
    assert st["FinishedAt"] == "0001-01-01T00:00:00Z"
    d.docker("pause", cid)
    st = state(d, cid)
    assert st["Status"] == "paused" and st["Paused"] and st["Running"]
    assert "(Paused)" in out(d.docker("ps", "--filter", f"id={cid}"))
    r = d.docker("pause", cid, check=False)
    assert r.returncode != 0 and b"already paused" in r.stderr
    d.docker("unpause", cid)
    assert state(d, cid)["Status"] == "running"
    r = d.docker("unpause", cid, check=False)
    assert r.returncode != 0 and b"is not paused" in r.stderr
    # a paused container still stops
    d.docker("pause", cid)
    d.docker("stop", "-t", "1", cid)
    st = state(d, cid)
    assert st["Status"] == "exited" and st["ExitCode"] == 137 and not st["Paused"]
    d.docker("rm", cid)


def test_status_codes(d):
    cid = out(d.docker("create", "busybox", "sleep", "300"))
    assert d.api("POST", f"/v1.43/containers/{cid}/stop")[0] == 304
    assert d.api("POST", f"/v1.43/containers/{cid}/kill")[0] == 409
    assert d.api("POST", f"/v1.43/containers/{cid}/pause")[0] == 409
    assert d.api("POST", f"/v1.43/containers/{cid}/start")[0] == 204
    assert d.api("POST", f"/v1.43/containers/{cid}/start")[0] == 304
    status, _, body = d.api("DELETE", f"/v1.43/containers/{cid}")
    assert status == 409 and b"Stop the container" in body
    assert d.api("POST", "/v1.43/containers/nope-x/start")[0] == 404
    assert d.api("POST", f"/v1.43/containers/{cid}/kill?signal=NOPE")[0] == 400
    assert d.api("POST", f"/v1.43/containers/{cid}/wait?condition=bogus")[0] == 400
    assert d.api("POST", f"/v1.43/containers/{cid}/resize?h=-1&w=10")[0] == 400
    assert d.api("POST", f"/v1.43/containers/{cid}/rename")[0] == 400
    assert d.api("DELETE", f"/v1.43/containers/{cid}?force=1")[0] == 204


def test_kill_signal_wait_and_restart(d):
    cid = out(d.docker("run", "-d", "busybox", "sh", "-c",
                       "trap 'exit 42' USR1; while true; do sleep 0.1; done"))
    d.docker("kill", "-s", "USR1", cid)
    assert out(d.docker("wait", cid)) == "42"
    cid2 = out(d.docker("run", "-d", "busybox", "sleep", "300"))
    started = state(d, cid2)["StartedAt"]
    pid = state(d, cid2)["Pid"]
    d.docker("restart", "-t", "0", cid2)
    st = state(d, cid2)
    assert st["Running"] and st["StartedAt"] != started and st["Pid"] != pid
    # stop with a signal and a timeout
    d.docker("stop", "-s", "KILL", "-t", "30", cid2)
    assert state(d, cid2)["ExitCode"] == 137
    d.docker("rm", cid, cid2)


def test_wait_next_exit(d):
    import threading

    cid = out(d.docker("run", "-d", "busybox", "sleep", "300"))
    result = {}

    def waiter():
        result["r"] = d.api("POST", f"/v1.43/containers/{cid}/wait?condition=next-exit",
                            timeout=60)
    t = threading.Thread(target=waiter)
    t.start()
    wait_for(lambda: True)
    d.docker("kill", cid)
    t.join(60)
    assert json.loads(result["r"][2])["StatusCode"] == 137
    d.docker("rm", cid)


def test_rename_and_update(d):
    cid = out(d.docker("run", "-d", "--name", "lc-old", "busybox", "sleep", "300"))
    d.docker("rename", "lc-old", "lc-new")
    assert inspect(d, cid)["Name"] == "/lc-new"
    r = d.docker("inspect", "lc-old", check=False)
    assert r.returncode != 0
    d.docker("run", "-d", "--name", "lc-other", "busybox", "sleep", "300")
    r = d.docker("rename", "lc-new", "lc-other", check=False)
    assert r.returncode != 0 and b"already in use" in r.stderr
    d.docker("update", "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5",
             "--pids-limit", "50", "--restart", "on-failure:3", "lc-new")
    host = inspect(d, cid)["HostConfig"]
    assert host["Memory"] == 64 << 20 and host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 50
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    cg = out(d.docker("exec", "lc-new", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"))
    if os.path.exists("/sys/fs/cgroup/memory"):
        assert cg == str(64 << 20)
        assert out(d.docker("exec", "lc-new", "cat", "/sys/fs/cgroup/pids/pids.max")) == "50"
        assert out(d.docker("exec", "lc-new", "cat",
                            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")) == "50000"
    r = d.docker("update", "--memory", "1k", "lc-new", check=False)
    assert r.returncode != 0 and b"Minimum memory limit" in r.stderr
    d.docker("rm", "-f", "lc-new", "lc-other")


def test_top_and_stats(d):
    cid = out(d.docker("run", "-d", "busybox", "sh", "-c", "sleep 300 & sleep 301"))
    top = d.docker("top", cid).stdout.decode()
    assert "sleep 300" in top and "sleep 301" in top and "PID" in top.splitlines()[0]
    top = d.docker("top", cid, "-o", "pid,comm").stdout.decode()
    assert top.split()[:2] == ["PID", "COMMAND"]
    status, _, body = d.api("GET", f"/v1.43/containers/{cid}/top?ps_args=-o%20comm")
    assert status == 400 and b"PID" in body
    status, _, body = d.api("GET", f"/v1.43/containers/{cid}/stats?stream=false&one-shot=true")
    s = json.loads(body)
    assert status == 200 and s["memory_stats"]["usage"] > 0 and s["pids_stats"]["current"] >= 2
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] > 0 and s["name"].startswith("/")
    assert s["memory_stats"]["limit"] > 0 and s["cpu_stats"]["online_cpus"] >= 1
    line = d.docker("stats", "--no-stream", "--format", "{{.MemUsage}} {{.PIDs}}", cid)
    assert out(line).split()[-1] == str(s["pids_stats"]["current"]) and "B" in out(line)
    client = d.client()
    try:
        s = client.containers.get(cid).stats(stream=False)
        assert s["memory_stats"]["usage"] > 0 and s["precpu_stats"]["cpu_usage"]
        stream = client.containers.get(cid).stats(stream=True, decode=True)
        first, second = next(stream), next(stream)
        assert second["preread"] == first["read"] and second["memory_stats"]["usage"] > 0
        stream.close()
    finally:
        client.close()
    d.docker("rm", "-f", cid)


def test_top_under_load(d):
    """``top`` forks ps while palletd's gRPC and loop threads run: under uvloop a
    fork through libuv ran their atfork handlers and the child now and then died
    of SIGSEGV before exec ("Error running ps: " and nothing else)."""
    import concurrent.futures

    cid = out(d.docker("run", "-d", "busybox", "sleep", "300"))
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(
                lambda _: d.api("GET", f"/v1.43/containers/{cid}/top")[:3:2], range(120)))
        assert [a for a in answers if a[0] != 200] == []
    finally:
        d.docker("rm", "-f", cid)


def test_list_filters_sizes_and_prune(d):
    a = out(d.docker("run", "-d", "--name", "lf-a", "--label", "team=x", "busybox",
                     "sleep", "300"))
    d.docker("run", "--name", "lf-b", "busybox", "sh", "-c", "echo data > /newfile; exit 3",
             check=False)
    b = inspect(d, "lf-b")["Id"]
    c = out(d.docker("create", "--name", "lf-c", "--label", "team=y", "busybox", "true"))
    ids = lambda *f: set(out(d.docker("ps", "-aq", "--no-trunc", *f)).split())  # noqa: E731
    assert a in ids("--filter", "status=running") and c not in ids("--filter", "status=running")
    assert ids("--filter", "status=created") >= {c}
    assert ids("--filter", "label=team=x") == {a}
    assert ids("--filter", "label=team") == {a, c}
    assert ids("--filter", "name=^lf-[ab]$") >= {a, b}
    assert ids("--filter", "exited=3") == {b}
    assert ids("--filter", f"id={a[:12]}") == {a}
    assert a in ids("--filter", "ancestor=busybox")
    assert a in ids("--filter", "network=bridge") or a in ids("--filter", "network=default")
    r = d.docker("ps", "--filter", "status=bogus", check=False)
    assert r.returncode != 0 and b"invalid filter" in r.stderr
    rows = json.loads(d.api("GET", "/v1.43/containers/json?all=1&size=1")[2])
    sized = {r["Id"]: r for r in rows}
    assert sized[b]["SizeRw"] > 0 and sized[b]["SizeRootFs"] > \
        sized[b]["SizeRw"]
    info = json.loads(d.api("GET", f"/v1.43/containers/{a}/json?size=1")[2])
    assert "SizeRw" in info and info["SizeRootFs"] > 0
    pruned = json.loads(d.api("POST", '/v1.43/containers/prune?filters={"label":["team=y"]}')[2])
    assert pruned["ContainersDeleted"] == [c]
    out(d.docker("container", "prune", "-f"))
    left = ids()
    assert a in left and b not in left
    d.docker("rm", "-f", a)


def test_dockerpy_lifecycle(d):
    client = d.client()
    try:
        c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="lc-py")
        c.pause()
        c.reload()
        assert c.status == "paused"
        c.unpause()
        c.rename("lc-py2")
        c.reload()
        assert c.name == "lc-py2"
        c.update(mem_limit="32m", memswap_limit="64m")
        assert client.api.inspect_container(c.id)["HostConfig"]["Memory"] == 32 << 20
        top = c.top()
        assert "PID" in top["Titles"] and any("sleep" in " ".join(p) for p in top["Processes"])
        c.kill(signal=signal.SIGKILL)
        assert c.wait(timeout=30)["StatusCode"] == 137
        c.remove()
    finally:
        client.close()
