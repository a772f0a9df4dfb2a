"""Terminals through docker-py and the docker CLI, palletd beside dockerd
20.10: TTY output in the terminal's normal line discipline (``hello\\r\\n``) in
every stream/demux combination, ``DetachKeys`` on an exec, and what the
container's standard streams are."""
from __future__ import annotations

import secrets
import time

import pytest

from ctr_helpers import out, wait_for

pexpect = pytest.importorskip("pexpect")


def _outputs(engine) -> dict:
    client = engine.client()
    got = {}
    try:
        got["run"] = client.containers.run("busybox", ["echo", "hello"], tty=True, remove=True)
        c = client.containers.run("busybox", ["sleep", "300"], detach=True, tty=True)
        try:
            for stream in (False, True):
                for demux in (False, True):
                    r = c.exec_run(["echo", "hello"], tty=True, stream=stream, demux=demux)
                    got[(stream, demux)] = r.output if not stream else b"".join(
                        x if isinstance(x, bytes) else (x[0] or b"") for x in r.output)
            got["logs"] = c.logs()
        finally:
            c.remove(force=True)
    finally:
        client.close()
    return got


def test_tty_output_like_dockerd(palletd, dockerd):
    ours, theirs = _outputs(palletd), _outputs(dockerd)
    assert ours == theirs
    assert ours["run"] == b"hello\r\n" and ours[(True, True)] == b"hello\r\n"


def _exec_detach(engine) -> tuple:
    name = f"dk{int(time.time() * 1000) % 100000}"
    engine.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    try:
        p = pexpect.spawn(engine.docker_cli if hasattr(engine, "docker_cli") else "docker",
                          ["exec", "-it", "--detach-keys", "ctrl-x,x", name, "sh"],
                          env=dict(engine.env, TERM="xterm"), timeout=30)
        p.expect("# ")
        p.sendline("sleep 123")
        time.sleep(0.3)
        p.send("\x18x")
        p.expect(pexpect.EOF)
        assert b"read escape sequence" in p.before
        p.close()
        # detached: the exec's process goes on
        running = wait_for(lambda: "sleep 123" in out(engine.docker("top", name)), 10)
        return p.exitstatus, bool(running)
    finally:
        engine.docker("rm", "-f", name)


def test_exec_detach_keys_like_dockerd(palletd, dockerd):
    # the CLI says "read escape sequence" and exits 1 after either
    assert _exec_detach(palletd) == _exec_detach(dockerd) == (1, True)


def test_standard_streams_are_pipes(palletd, dockerd):
    """No host path in the container's stdio: pipes, as containerd's shim gives,
    for run and for exec; the output still arrives whole."""
    cmd = ["sh", "-c", "readlink /proc/self/fd/1; readlink /proc/self/fd/2"]
    for e in (dockerd, palletd):
        lines = out(e.docker("run", "--rm", "busybox", *cmd)).splitlines()
        assert len(lines) == 2 and all(ln.startswith("pipe:[") for ln in lines), lines
        name = "pipes-" + secrets.token_hex(3)
        e.docker("run", "-d", "--name", name, "busybox", "sleep", "60")
        try:
            lines = out(e.docker("exec", name, *cmd)).splitlines()
            assert len(lines) == 2 and all(ln.startswith("pipe:[") for ln in lines), lines
            # more than a pipe and a FIFO hold, through both streams
            r = e.docker("exec", name, "sh", "-c",
                         "seq 1 100000; seq 1 50000 >&2", check=False)
            assert r.stdout == b"".join(b"%d\n" % i for i in range(1, 100001))
            assert r.stderr == b"".join(b"%d\n" % i for i in range(1, 50001))
        finally:
            e.docker("rm", "-f", name)
