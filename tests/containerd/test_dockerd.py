"""Debian's dockerd 20.10, started with --containerd pointing at pallet-containerd.

dockerd keeps its own image store (overlay2) and hands the rootfs over as the
spec's root path; its containers run through pallet-shim, which drives runc
(dockerd names it in runc's options: BinaryName, Root)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from engines import umount_below

pytestmark = pytest.mark.root
DOCKERD = "/usr/sbin/dockerd"
DOCKER = shutil.which("docker", path="/usr/local/bin:/usr/bin") or "docker"


@pytest.fixture
def dockerd(pallet_containerd):
    if not os.path.exists(DOCKERD):
        pytest.skip("needs Debian's docker.io")
    base = os.path.join(pallet_containerd.base, "dk")
    os.makedirs(base)
    sock = os.path.join(base, "d.sock")
    log = open(os.path.join(base, "dockerd.log"), "wb")
    proc = subprocess.Popen(
        [DOCKERD, "-H", f"unix://{sock}", "--data-root", os.path.join(base, "data"),
         "--exec-root", os.path.join(base, "exec"), "--pidfile", os.path.join(base, "d.pid"),
         "--containerd", pallet_containerd.address, "--bridge=none", "--iptables=false",
         "--ip-masq=false"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
    deadline = time.monotonic() + 60
    while subprocess.run([DOCKER, "version"], env=env, capture_output=True).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            with open(os.path.join(base, "dockerd.log")) as f:
                raise RuntimeError("dockerd did not start: " + f.read()[-3000:])
        time.sleep(0.2)

    def docker(*args, check=True, **kw):
        r = subprocess.run([DOCKER, *args], env=env, capture_output=True, timeout=120, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {r.stderr.decode()}")
        return r
    docker.base = base
    try:
        yield docker
    finally:
        ids = docker("ps", "-aq", check=False).stdout.decode().split()
        if ids:
            docker("rm", "-f", *ids, check=False)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        umount_below(base)


def test_docker_run_through_pallet_containerd(dockerd, pallet_containerd, busybox_tar):
    docker = dockerd
    docker("load", "-i", busybox_tar)
    r = docker("run", "--rm", "busybox", "echo", "hi")
    assert r.stdout == b"hi\n"
    r = docker("run", "--rm", "busybox", "sh", "-c", "exit 3", check=False)
    assert r.returncode == 3
    # a detached one: exec, logs, top, stats (Tasks.Metrics), pause, stop
    cid = docker("run", "-d", "busybox", "sh", "-c",
                 "while true; do echo tick; sleep 0.2; done").stdout.decode().strip()
    bundle = os.path.join(pallet_containerd.state, "io.containerd.runtime.v2.task", "moby", cid)
    with open(os.path.join(bundle, "options.json")) as f:
        assert json.load(f)["binary_name"] == "runc"  # dockerd's runtime options
    r = docker("exec", cid, "sh", "-c", "echo in-exec; exit 4", check=False)
    assert (r.returncode, r.stdout) == (4, b"in-exec\n")
    time.sleep(0.5)
    assert b"tick" in docker("logs", cid).stdout
    assert b"while true" in docker("top", cid).stdout
    stats = docker("stats", "--no-stream", "--format", "{{.PIDs}}", cid).stdout.decode().strip()
    assert int(stats) >= 1
    docker("pause", cid)
    assert docker("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == b"paused"
    docker("unpause", cid)
    docker("stop", "-t", "1", cid)
    assert docker("inspect", "-f", "{{.State.ExitCode}}", cid).stdout.strip() == b"137"
    docker("rm", cid)
    assert not os.path.exists(bundle)
    out = subprocess.run(["ctr", "--address", pallet_containerd.address, "-n", "moby",
                          "containers", "ls", "-q"], capture_output=True, text=True)
    assert out.stdout.strip() == ""
