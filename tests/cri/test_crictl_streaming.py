"""crictl's streaming commands against pallet-containerd's streaming server,
over SPDY/3.1 (crictl's default) and WebSocket (``--transport websocket``):
exec with and without a terminal (stdin, resize, exit status), attach, and
port-forward to a server in the pod."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request

import pexpect
import pytest

from cri_helpers import CRICTL, free_port, needs_crictl, needs_root

pytestmark = needs_root + [needs_crictl]
TRANSPORTS = ["spdy", "websocket"]


@pytest.fixture(scope="module")
def pod(cri):
    pid = cri.run_pod("stream")
    cid = cri.run_container(pid, "stream", "main", ["sh", "-c",
                            "echo pong > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"])
    cri.wait_state(cid, "CONTAINER_RUNNING")
    yield pid, cid
    cri.crictl("rmp", "-f", pid, check=False)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_streams_and_exit_status(cri, pod, transport):
    _, cid = pod
    r = cri.crictl("exec", "--transport", transport, cid, "sh", "-c",
                   "echo out; echo err >&2", check=False)
    assert (r.returncode, r.stdout) == (0, "out\n")
    assert "err\n" in r.stderr
    r = cri.crictl("exec", "--transport", transport, cid, "sh", "-c", "exit 7", check=False)
    assert r.returncode != 0 and "exit code 7" in r.stderr
    r = cri.crictl("exec", "-i", "--transport", transport, cid, "sh", "-c", "tr a-z A-Z",
                   input="hello stdin\n")
    assert r.stdout == "HELLO STDIN\n"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_tty_with_resize(cri, pod, transport):
    _, cid = pod
    child = pexpect.spawn(CRICTL, ["--config", cri.crictl_config, "exec", "-it", "--transport",
                                   transport, cid, "sh"], dimensions=(33, 101), timeout=30,
                          encoding="utf-8")
    try:
        child.expect(r"[#$] ")
        child.sendline("stty size; echo $((6*7))")
        child.expect("33 101")
        child.expect("42")
        child.setwinsize(40, 120)
        time.sleep(0.3)
        child.sendline("stty size")
        child.expect("40 120")
        child.sendline("exit 0")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_exec_sync_timeout_and_output(cri, pod):
    _, cid = pod
    r = cri.crictl("exec", "-s", cid, "sh", "-c", "echo o; echo e >&2")
    assert r.stdout.split() == ["o", "e"]
    r = cri.crictl("exec", "-s", "--timeout", "1", cid, "sleep", "5", check=False)
    assert r.returncode != 0 and "DeadlineExceeded" in r.stderr


def test_attach_output_and_stdin_once(cri, pod):
    pid, _ = pod
    cid = cri.run_container(pid, "stream", "talker",
                            ["sh", "-c", "i=0; while [ $i -lt 30 ]; do echo tick$i; i=$((i+1));"
                                         " sleep 0.1; done"])
    r = cri.crictl("attach", cid, check=False, timeout=30)
    assert "tick29" in r.stdout
    cat = cri.run_container(pid, "stream", "cat", ["cat"], stdin=True, stdin_once=True)
    r = cri.crictl("attach", "-i", cat, input="through attach\n", timeout=30)
    assert "through attach" in r.stdout
    st = cri.wait_state(cat, "CONTAINER_EXITED")["status"]
    assert st["exitCode"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_port_forward(cri, pod, transport):
    pid, _ = pod
    local = free_port()
    proc = subprocess.Popen([CRICTL, "--config", cri.crictl_config, "port-forward",
                             "--transport", transport, pid, f"{local}:8080"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        while "Forwarding from" not in line and line:
            line = proc.stdout.readline()
        assert "Forwarding from 127.0.0.1" in line
        for _ in range(2):   # two connections through the same session
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/index.html",
                                        timeout=10) as resp:
                assert resp.read() == b"pong\n"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
