"""Logs: follow while the container writes, since/until/tail/timestamps, the
json-file driver's rotation (read back across the rotated files), the none
driver; through the docker CLI and docker-py."""
from __future__ import annotations

import glob
import os
import subprocess

import pytest

from ctr_helpers import inspect, out, wait_for
from engines import DOCKER_CLI

pytestmark = pytest.mark.root


def test_follow_while_writing(d):
    cid = out(d.docker("run", "-d", "busybox", "sh", "-c",
                       "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.3; done; echo err >&2"))
    proc = subprocess.Popen([DOCKER_CLI, "logs", "-f", cid], env=d.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline()
        assert first == b"line1\n"
        # the container is still writing: later lines arrive while we wait
        assert d.docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == b"true"
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert first + rest == b"".join(b"line%d\n" % i for i in range(1, 7))
    assert err == b"err\n"
    assert proc.returncode == 0


def test_tail_since_until_timestamps(d):
    cid = out(d.docker("run", "-d", "busybox", "sh", "-c",
                       "echo a; echo b; sleep 1.2; echo c; echo d"))
    wait_for(lambda: d.docker("logs", cid).stdout == b"a\nb\nc\nd\n", timeout=30)
    assert d.docker("logs", "--tail", "1", cid).stdout == b"d\n"
    assert d.docker("logs", "--tail", "0", cid).stdout == b""
    lines = d.docker("logs", "-t", cid).stdout.decode().splitlines()
    stamps = [ln.split(" ", 1)[0] for ln in lines]
    assert all(s.endswith("Z") and "T" in s for s in stamps)
    # since/until around the pause between b and c
    t_c = stamps[2]
    assert d.docker("logs", "--since", t_c, cid).stdout == b"c\nd\n"
    assert d.docker("logs", "--until", stamps[1], cid).stdout == b"a\nb\n"
    client = d.client()
    try:
        c = client.containers.get(cid)
        assert c.logs(tail=2) == b"c\nd\n"
        assert c.logs(timestamps=True).decode().count("Z ") == 4
    finally:
        client.close()
    d.docker("rm", cid)


def test_rotation_reads_across_files(d):
    cid = out(d.docker("run", "-d", "--log-opt", "max-size=1k", "--log-opt", "max-file=3",
                       "busybox", "sh", "-c",
                       "i=0; while [ $i -lt 40 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxx; "
                       "i=$((i+1)); done"))
    assert out(d.docker("wait", cid)) == "0"
    log_path = inspect(d, cid)["LogPath"]
    files = sorted(glob.glob(log_path + "*"))
    assert log_path + ".1" in files and log_path + ".2" in files and len(files) == 3
    assert all(os.path.getsize(f) <= 1024 for f in files)
    lines = d.docker("logs", cid).stdout.decode().splitlines()
    # the oldest lines went with the file that rotated out; the rest is in order
    assert lines and lines[-1].startswith("line-39-") and len(lines) < 40
    nums = [int(ln.split("-")[1]) for ln in lines]
    assert nums == list(range(nums[0], 40))
    assert inspect(d, cid)["HostConfig"]["LogConfig"] == {
        "Type": "json-file", "Config": {"max-size": "1k", "max-file": "3"}}
    d.docker("rm", cid)
    # as dockerd 20.10: max-file without max-size is accepted (nothing rotates)
    r = d.docker("run", "--rm", "--log-opt", "max-file=2", "busybox", "true", check=False)
    assert r.returncode == 0, r.stderr
    r = d.docker("run", "--rm", "--log-opt", "bogus=1", "busybox", "true", check=False)
    assert r.returncode != 0 and b"unknown log opt" in r.stderr
    r = d.docker("run", "--rm", "--log-driver", "syslogx", "busybox", "true", check=False)
    assert r.returncode != 0 and b'plugin "syslogx" not found' in r.stderr


def test_none_driver(d):
    r = d.docker("run", "--name", "lg-none", "--log-driver", "none", "busybox", "echo",
                 "attached-still")
    # the attached client still gets the output; nothing is kept
    assert r.stdout == b"attached-still\n"
    info = inspect(d, "lg-none")
    assert info["LogPath"] == "" and info["HostConfig"]["LogConfig"]["Type"] == "none"
    r = d.docker("logs", "lg-none", check=False)
    assert r.returncode != 0
    assert b"configured logging driver does not support reading" in r.stderr
    d.docker("rm", "lg-none")


def test_attach_logs_replay(d):
    cid = out(d.docker("run", "-d", "busybox", "sh", "-c", "echo early; sleep 300"))
    wait_for(lambda: d.docker("logs", cid).stdout == b"early\n")
    status, _, body = d.api(
        "POST", f"/v1.43/containers/{cid}/attach?logs=1&stream=0&stdout=1&stderr=1")
    assert status == 200 and body == b"\x01\x00\x00\x00\x00\x00\x00\x06early\n"
    d.docker("rm", "-f", cid)
