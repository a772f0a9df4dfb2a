"""The whole chain, through the unmodified docker CLI: docker -> palletd ->
pallet-containerd -> pallet-shim -> runtime_ns."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from engines import pids_mentioning

pytestmark = pytest.mark.root


def comm_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def chain_pids(engine, prefix: str) -> list[int]:
    return [p for p in pids_mentioning(engine.root) if comm_of(p).startswith(prefix[:15])]


def shim_pids(cids) -> list[int]:
    """The pallet-shim processes of these containers (a shim's command line
    names its container: `pallet-shim <id>`)."""
    return [p for cid in cids for p in pids_mentioning(cid) if comm_of(p).startswith("pallet-shim")]


def test_hello_through_every_process(pallet_engine):
    e = pallet_engine
    out = e.docker("run", "--rm", "busybox", "echo", "hello")
    assert out.stdout == b"hello\n"
    assert chain_pids(e, "palletd") and chain_pids(e, "pallet-containerd")
    cids = [e.docker("run", "-d", "busybox", "sleep", "60").stdout.decode().strip()
            for _ in range(2)]
    try:
        assert len(shim_pids(cids)) == 2  # one shim per running container
        ps = e.docker("ps", "--format", "{{.ID}} {{.Status}}").stdout.decode()
        for cid in cids:
            assert cid[:12] in ps
    finally:
        e.docker("rm", "-f", *cids)
    assert e.docker("ps", "-aq").stdout == b""


def test_exit_codes_streams_pid1_hostname(pallet_engine):
    e = pallet_engine
    r = e.docker("run", "--rm", "busybox", "sh", "-c", "exit 7", check=False)
    assert r.returncode == 7
    # (a SIGKILL from inside is ignored by a PID 1: the kernel protects the
    # namespace's init, so the container is killed from outside, as docker kill does)
    cid = e.docker("run", "-d", "busybox", "sleep", "60").stdout.decode().strip()
    e.docker("kill", cid)
    assert e.docker("wait", cid).stdout.strip() == b"137"
    e.docker("rm", cid)
    r = e.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert r.stdout == b"out\n" and r.stderr == b"err\n"
    r = e.docker("run", "--rm", "busybox", "sh", "-c", "echo $$")
    assert r.stdout == b"1\n"
    cid = e.docker("run", "-d", "busybox", "hostname").stdout.decode().strip()
    e.docker("wait", cid)
    assert e.docker("logs", cid).stdout.decode().strip() == cid[:12]
    e.docker("rm", cid)


def test_writes_stay_in_their_container_and_two_run_at_once(pallet_engine):
    e = pallet_engine
    a = e.docker("run", "-d", "busybox", "sh", "-c", "echo a > /marker; sleep 30").stdout.decode().strip()
    b = e.docker("run", "-d", "busybox", "sh", "-c", "sleep 0.5; cat /marker; sleep 30").stdout.decode().strip()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            running = e.docker("ps", "-q").stdout.split()
            if len(running) == 2 and e.docker("logs", b).stderr:
                break
            time.sleep(0.1)
        assert len(e.docker("ps", "-q").stdout.split()) == 2
        assert b"No such file" in e.docker("logs", b).stderr
        r = e.docker("run", "--rm", "busybox", "cat", "/marker", check=False)
        assert r.returncode == 1 and b"No such file" in r.stderr
    finally:
        e.docker("rm", "-f", a, b)


ZOMBIE_SCRIPT = "(sleep 0.1 &); (sleep 0.8; ps -o stat,comm) & exec sleep 1.5"


def test_init_reaps_orphans(pallet_engine):
    e = pallet_engine
    without = e.docker("run", "--rm", "busybox", "sh", "-c", ZOMBIE_SCRIPT).stdout.decode()
    # STAT is Z and its flags (ZN under a niced test run)
    assert any(line.startswith("Z") for line in without.splitlines()), without
    with_init = e.docker("run", "--rm", "--init", "busybox", "sh", "-c", ZOMBIE_SCRIPT).stdout.decode()
    assert "sleep" in with_init
    assert not any(line.startswith("Z") for line in with_init.splitlines()), with_init


def test_shims_memory_mergeable_containers_never(pallet_engine):
    """pallet-containerd's default ``shim-memory-merge``: the shims (forks of
    the zygote) carry the kernel's mergeable mark on their memory; no process
    of a container does, the builtin init of --init (a fork that never
    execs) included."""
    from pallet.linux import ksm

    e = pallet_engine
    plain = e.docker("run", "-d", "busybox", "sleep", "120").stdout.decode().strip()
    inited = e.docker("run", "-d", "--init", "busybox", "sleep", "120").stdout.decode().strip()
    try:
        for cid in (plain, inited):
            pid = json.loads(e.docker("inspect", cid).stdout)[0]["State"]["Pid"]
            # (the builtin init, a fork of the shim, bears its name too)
            [shim] = [p for p in shim_pids([cid]) if p != pid]
            assert "[heap]" in ksm.marked_mappings(shim)
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = [int(p) for p in f.read().split()]
            assert len(children) == (1 if cid == inited else 0)   # the init's sleep
            for p in [pid, *children]:
                assert ksm.marked_mappings(p) == [], p
    finally:
        e.docker("rm", "-f", plain, inited)


def test_kill_containerd_keeps_containers(pallet_engine):
    e = pallet_engine
    cid = e.docker("run", "-d", "busybox", "sleep", "120").stdout.decode().strip()
    other = e.docker("run", "-d", "busybox", "sh", "-c", "sleep 2; exit 5").stdout.decode().strip()
    try:
        [old] = chain_pids(e, "pallet-containerd")
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 20
        new = []
        while time.monotonic() < deadline:
            new = [p for p in chain_pids(e, "pallet-containerd") if p != old]
            if new:
                break
            time.sleep(0.1)
        assert new, "palletd did not restart pallet-containerd"
        assert len(shim_pids([cid])) == 1
        # the other container exited while pallet-containerd was away: its true
        # exit code still reaches palletd
        assert e.docker("wait", other).stdout.strip() == b"5"
        state = json.loads(e.docker("inspect", cid).stdout)[0]["State"]
        assert state["Running"] is True
        assert cid[:12] in e.docker("ps").stdout.decode()
        t = time.monotonic()
        e.docker("stop", "-t", "2", cid)
        assert time.monotonic() - t < 15
        state = json.loads(e.docker("inspect", cid).stdout)[0]["State"]
        assert state["Running"] is False and state["ExitCode"] in (137, 143)
    finally:
        e.docker("rm", "-f", cid, other, check=False)


def _api(engine, method, path, body=None, raw=None):
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(engine.sock)

    c = Conn("localhost")
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    payload = r.read()
    c.close()
    return r.status, payload


def test_bad_input_gets_docker_json_errors(pallet_engine):
    e = pallet_engine
    status, body = _api(e, "POST", "/v1.43/containers/create", raw=b"{not json")
    assert status == 400 and "message" in json.loads(body)
    status, body = _api(e, "POST", "/v1.43/containers/create", body={"Image": "nosuchimage"})
    assert status == 404 and "No such image" in json.loads(body)["message"]
    status, body = _api(e, "GET", "/v1.43/containers/nosuchcontainer/json")
    assert status == 404 and "No such container" in json.loads(body)["message"]
    status, body = _api(e, "POST", "/v1.43/containers/nosuchcontainer/start")
    assert status == 404
    status, body = _api(e, "GET", "/v1.43/no/such/endpoint")
    assert 400 <= status < 600 and status != 500 and "message" in json.loads(body)
    r = e.docker("run", "--rm", "nosuchimage", check=False)
    assert r.returncode == 125


def test_docker_py_client(pallet_engine):
    import docker

    client = docker.DockerClient(base_url=f"unix://{pallet_engine.sock}")
    try:
        assert client.version()["ApiVersion"] == "1.43"
        assert client.info()["Containers"] >= 0
        assert any("busybox:latest" in i.tags for i in client.images.list())
        assert client.containers.run("busybox", ["echo", "hi"], remove=True) == b"hi\n"
        c = client.containers.run("busybox", ["sh", "-c", "echo bye; exit 3"], detach=True)
        assert c.wait()["StatusCode"] == 3
        assert c.logs() == b"bye\n"
        c.reload()
        assert c.attrs["State"]["ExitCode"] == 3
        c.remove()
        with pytest.raises(docker.errors.ImageNotFound):
            client.containers.create("nosuchimage")
        with pytest.raises(docker.errors.NotFound):
            client.containers.get("nosuchcontainer")
    finally:
        client.close()
