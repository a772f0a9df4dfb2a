"""docker exec: without a TTY, with one (a real pty through pexpect), detached,
stdin, exit codes and inspect; attach with detach keys; docker-py's exec_run."""
from __future__ import annotations

import json

import pytest

from ctr_helpers import out, wait_for
from engines import DOCKER_CLI

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def box(d):
    cid = out(d.docker("run", "-d", "--name", "ex-box", "busybox", "sleep", "3000"))
    yield cid
    d.docker("rm", "-f", cid, check=False)


def test_exec_without_tty(d, box):
    r = d.docker("exec", box, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    r = d.docker("exec", "-i", box, "sh", "-c", "tr a-z A-Z", input=b"hello\n")
    assert r.stdout == b"HELLO\n"
    r = d.docker("exec", "-e", "PA_X=1", "-w", "/tmp", "-u", "nobody", box, "sh", "-c",
                 "echo $PA_X $(pwd) $(id -u)")
    assert r.stdout == b"1 /tmp 65534\n"
    r = d.docker("exec", box, "pa-missing-command", check=False)
    assert r.returncode == 127 and b"pa-missing-command" in r.stdout + r.stderr
    r = d.docker("exec", "--privileged", box, "sh", "-c", "grep CapEff /proc/self/status")
    assert int(r.stdout.split()[-1], 16) & (1 << 21)  # CAP_SYS_ADMIN


def test_exec_with_tty(d, box):
    import pexpect

    child = pexpect.spawn(DOCKER_CLI, ["exec", "-it", box, "sh"], env=d.env, timeout=30)
    try:
        child.expect(r"# ")
        child.sendline("tty; stty size; echo pa-$((6*7))")
        child.expect(r"/dev/pts/\d+")
        child.expect(r"pa-42")
        child.setwinsize(33, 101)
        child.sendline("stty size")
        child.expect("33 101")
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 5
    # without -i a TTY exec still runs and its output arrives
    r = d.docker("exec", "-t", box, "echo", "tty-out")
    assert r.stdout == b"tty-out\r\n"


def test_exec_detached_and_inspect(d, box):
    r = d.docker("exec", "-d", box, "sh", "-c", "sleep 0.3; touch /tmp/detached-done")
    assert r.stdout == b""
    wait_for(lambda: d.docker("exec", box, "test", "-e", "/tmp/detached-done",
                              check=False).returncode == 0)
    status, _, body = d.api("POST", f"/v1.43/containers/{box}/exec",
                            {"Cmd": ["sh", "-c", "exit 7"]})
    eid = json.loads(body)["Id"]
    info = json.loads(d.api("GET", f"/v1.43/exec/{eid}/json")[2])
    assert info["Running"] is False and info["ExitCode"] is None and info["ContainerID"] == box
    assert d.api("POST", f"/v1.43/exec/{eid}/start", {"Detach": True})[0] == 200
    info = wait_for(lambda: (lambda i: i if i["ExitCode"] is not None else None)(
        json.loads(d.api("GET", f"/v1.43/exec/{eid}/json")[2])))
    assert info["ExitCode"] == 7 and info["Running"] is False and info["Pid"] > 0
    assert d.api("POST", f"/v1.43/exec/{eid}/start", {"Detach": True})[0] == 409
    assert d.api("GET", "/v1.43/exec/pa-none/json")[0] == 404
    assert d.api("POST", f"/v1.43/containers/{box}/exec", {"Cmd": []})[0] == 400
    cid = out(d.docker("create", "busybox", "true"))
    assert d.api("POST", f"/v1.43/containers/{cid}/exec", {"Cmd": ["true"]})[0] == 409
    d.docker("rm", cid)
    assert eid in json.loads(d.api("GET", f"/v1.43/containers/{box}/json")[2])["ExecIDs"]


def test_dockerpy_exec(d, box):
    client = d.client()
    try:
        c = client.containers.get(box)
        r = c.exec_run(["sh", "-c", "echo hi; echo there >&2; exit 2"], demux=True)
        assert r.exit_code == 2 and r.output == (b"hi\n", b"there\n")
        r = c.exec_run("echo tty", tty=True)
        assert r.exit_code == 0 and r.output == b"tty\r\n"
        r = c.exec_run("cat /proc/1/cmdline")
        assert r.output.startswith(b"sleep")
    finally:
        client.close()


def test_run_it_and_detach_keys(d):
    import pexpect

    child = pexpect.spawn(DOCKER_CLI, ["run", "-it", "--name", "ex-it", "busybox", "sh"],
                          env=d.env, timeout=30)
    try:
        child.expect(r"# ")
        child.sendline("echo in-$((2+3))")
        child.expect("in-5")
        child.send("\x10\x11")  # ctrl-p ctrl-q
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert d.docker("inspect", "-f", "{{.State.Running}}", "ex-it").stdout == b"true\n"
    # attach again with our own keys, then leave with them
    child = pexpect.spawn(DOCKER_CLI, ["attach", "--detach-keys", "ctrl-x,x", "ex-it"],
                          env=d.env, timeout=30)
    try:
        child.sendline("echo again-$((3*3))")
        child.expect("again-9")
        child.send("\x18x")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert d.docker("inspect", "-f", "{{.State.Running}}", "ex-it").stdout == b"true\n"
    r = d.docker("attach", "--detach-keys", "bogus-keys", "ex-it", check=False)
    assert r.returncode != 0
    d.docker("rm", "-f", "ex-it")
