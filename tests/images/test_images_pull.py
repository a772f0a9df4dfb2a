"""docker pull through palletd (the docker CLI and the pallet CLI) from Debian's
docker-registry: progress stream, run what was pulled, credentials through
X-Registry-Auth, a client that goes away, and a palletd killed mid-pull."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time

import pytest

from images_helpers import (DOCKER_CLI, PALLET_CLI, Proxy, image_ids, random_image,
                            skopeo_copy, wait_for)

pytestmark = pytest.mark.root


def test_docker_pull_progress_and_run(fresh_palletd, registry):
    palletd = fresh_palletd
    ref = f"{registry.host}/lib/busybox:latest"
    r = palletd.docker("pull", ref)
    lines = r.stdout.decode().splitlines()
    layer = [x for x in lines if x.endswith(": Pulling fs layer")]
    assert lines[0] == "latest: Pulling from lib/busybox", lines
    assert len(layer) == 1, lines
    sid = layer[0].split(":")[0]
    for status in ("Verifying Checksum", "Download complete", "Pull complete"):
        assert f"{sid}: {status}" in lines, lines
    assert any(x.startswith("Digest: sha256:") for x in lines)
    assert f"Status: Downloaded newer image for {ref}" in lines
    assert lines[-1] == ref
    assert palletd.docker("run", "--rm", ref, "echo", "pulled").stdout == b"pulled\n"
    # a second pull: nothing to download
    again = palletd.docker("pull", ref).stdout.decode()
    assert f"{sid}: Already exists" in again
    assert f"Status: Image is up to date for {ref}" in again
    # the raw stream: docker's JSON messages, byte counts included
    status, headers, body = palletd.api(
        "POST", f"/v1.43/images/create?fromImage={registry.host}/lib/busybox&tag=latest")
    assert status == 200 and headers["Content-Type"] == "application/json"
    msgs = [json.loads(x) for x in body.splitlines()]
    assert msgs[0] == {"status": "Pulling from lib/busybox", "progressDetail": {},
                       "id": "latest"}
    assert msgs[-1]["status"] == f"Status: Image is up to date for {ref}"
    # inspect: the repository digest, docker's fields
    info = json.loads(palletd.docker("image", "inspect", ref).stdout)[0]
    digest = [x for x in lines if x.startswith("Digest: ")][0].split(" ")[1]
    assert info["RepoDigests"] == [f"{registry.host}/lib/busybox@{digest}"]
    assert info["RepoTags"] == [ref]
    for key in ("Id", "Created", "Size", "Config", "RootFS", "Architecture", "Os", "Parent",
                "Comment", "Author", "GraphDriver"):
        assert key in info, key
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 1
    # by digest
    by_digest = f"{registry.host}/lib/busybox@{digest}"
    assert palletd.docker("run", "--rm", by_digest, "true").returncode == 0
    # rmi deletes synchronously: pallet-containerd collects the blobs and snapshots
    out = palletd.docker("rmi", ref).stdout.decode().splitlines()
    assert out == [f"Untagged: {ref}", f"Untagged: {by_digest}", f"Deleted: {info['Id']}"]
    assert palletd.blobs() == set() and palletd.snapshots() == []


def test_docker_pull_errors(palletd, registry):
    r = palletd.docker("pull", f"{registry.host}/lib/nothing:here", check=False)
    assert r.returncode == 1
    assert (f"Error response from daemon: manifest for {registry.host}/lib/nothing:here not "
            "found: manifest unknown") in r.stderr.decode()
    status, _, body = palletd.api("POST", "/v1.43/images/create?fromImage=Bad%20Name&tag=x")
    assert status == 400 and b"invalid reference format" in body
    # an unreachable registry
    r = palletd.docker("pull", "127.0.0.1:1/lib/busybox", check=False)
    assert r.returncode == 1 and b"127.0.0.1:1" in r.stderr
    # docker run pulls what is missing
    palletd.docker("rmi", "-f", f"{registry.host}/lib/busybox:latest", check=False)
    r = palletd.docker("run", "--rm", f"{registry.host}/lib/busybox", "echo", "auto")
    assert r.stdout == b"auto\n"
    assert b"Unable to find image" in r.stderr
    palletd.docker("rmi", f"{registry.host}/lib/busybox")


def test_pallet_pull(palletd, registry):
    repo = f"{registry.host}/lib/busybox"
    r = palletd.pallet("pull", repo)
    out = r.stdout.decode().splitlines()
    assert out[0] == "Using default tag: latest"
    assert "latest: Pulling from lib/busybox" in out
    assert any(x.endswith(": Already exists") for x in out)  # busybox's layer is loaded
    assert out[-1] == f"{repo}:latest"
    assert palletd.pallet("pull", "-q", repo + ":latest").stdout.decode() == \
        f"{repo}:latest\n"
    # every tag
    skopeo_copy(f"docker://{repo}:latest", f"docker://{repo}:second")
    r = palletd.pallet("pull", "-a", repo)
    assert r.stdout.decode().splitlines()[-1] == repo
    tags = palletd.pallet("images", "--format", "{{.Tag}}", repo).stdout.decode().split()
    assert sorted(tags) == ["latest", "second"]
    r = palletd.pallet("pull", "-a", repo + ":latest", check=False)
    assert r.returncode == 1 and b"tag can't be used with --all-tags/-a" in r.stderr
    # the platform of this machine; a malformed one is refused
    assert palletd.pallet("pull", "--platform", "linux/amd64", repo).returncode == 0
    r = palletd.pallet("pull", "--platform", "linux/amd64/v8/x", repo, check=False)
    assert r.returncode == 1 and b"invalid platform" in r.stderr
    assert palletd.pallet("run", "--rm", repo + ":second", "echo", "ok").stdout == b"ok\n"
    r = palletd.pallet("pull", f"{registry.host}/lib/none:1", check=False)
    assert r.returncode == 1 and b"manifest unknown" in r.stderr
    palletd.pallet("rmi", repo + ":latest", repo + ":second")


def test_pull_with_credentials(palletd, auth_registry):
    ref = f"{auth_registry.host}/private/busybox:latest"
    r = palletd.docker("pull", ref, check=False)
    assert r.returncode == 1 and b"pull access denied" in r.stderr, r.stderr
    user, pw = "alice", "s3cret-pw"
    palletd.docker("login", "-u", user, "--password-stdin", auth_registry.host,
                   input=pw.encode())
    try:
        assert palletd.docker("pull", ref).returncode == 0
        palletd.docker("rmi", ref)
        # the pallet CLI reads the same config.json
        assert palletd.pallet("pull", "-q", ref).stdout.decode() == ref + "\n"
        palletd.pallet("rmi", ref)
    finally:
        palletd.docker("logout", auth_registry.host)
    assert palletd.pallet("pull", ref, check=False).returncode == 1


@pytest.fixture(scope="module")
def slow_image(base, registry):
    """A 4-layer image of ~6 MB behind a throttling proxy (~1.5 MB/s per download)."""
    layout = random_image(tempfile.mkdtemp(prefix="lay-", dir=base), 3, 2 << 20)
    skopeo_copy(f"oci:{layout}:v1", f"docker://{registry.host}/lib/slow:v1")
    proxy = Proxy(registry.port, rate=512 << 10).start()
    try:
        yield proxy, f"{proxy.host}/lib/slow:v1"
    finally:
        proxy.stop()


def _start_pull(engine, ref) -> subprocess.Popen:
    return subprocess.Popen([DOCKER_CLI, "pull", ref], env=engine.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def test_pull_survives_its_client(fresh_palletd, slow_image):
    proxy, ref = slow_image
    proc = _start_pull(fresh_palletd, ref)
    try:
        line = proc.stdout.readline()
        assert b"Pulling from lib/slow" in line, line
        wait_for(lambda: b"Pulling fs layer" in proc.stdout.readline(), 30)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    ids = wait_for(lambda: image_ids(fresh_palletd, ref), 120, 0.2)
    assert len(ids) == 1
    assert fresh_palletd.docker("run", "--rm", ref, "busybox", "ls", "/data").stdout.split() == \
        [b"l0", b"l1", b"l2"]


def test_pull_killed_then_completed(fresh_palletd, slow_image):
    proxy, ref = slow_image
    proxy.rate = 256 << 10
    proc = _start_pull(fresh_palletd, ref)
    try:
        assert b"Pulling from" in proc.stdout.readline()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if b"Pulling fs layer" in proc.stdout.readline():
                break
        time.sleep(0.5)  # some bytes on the way
        fresh_palletd.kill9()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # no image, in docker's view nor in containerd's
    fresh_palletd.restart()
    assert image_ids(fresh_palletd) == []
    assert "slow" not in fresh_palletd.ctr("images", "ls", "-q")
    proxy.rate = None
    r = fresh_palletd.docker("pull", ref)
    assert f"Status: Downloaded newer image for {ref}" in r.stdout.decode()
    assert fresh_palletd.docker("run", "--rm", ref, "busybox", "echo", "whole").stdout == b"whole\n"


def test_pallet_pull_and_load_on_a_terminal(palletd, slow_image, tmp_path):
    """On a terminal each layer keeps its line, rewritten in place (ANSI cursor
    movements) with a progress bar, as docker's CLI does."""
    pexpect = pytest.importorskip("pexpect")
    proxy, ref = slow_image
    proxy.rate = 4 << 20

    def on_tty(*argv):
        child = pexpect.spawn(PALLET_CLI, list(argv), env=palletd.env, dimensions=(40, 150),
                              timeout=120)
        out = child.read()
        child.close()
        assert child.exitstatus == 0, out
        return out.decode(errors="replace")
    out = on_tty("pull", ref)
    assert "\x1b[2K" in out and "\x1b[1A" in out and "Downloading" in out, out
    assert "[=" in out and "MB" in out  # a bar: the terminal is wide enough
    assert out.rstrip().endswith(ref)
    archive = str(tmp_path / "slow.tar")
    palletd.pallet("save", "-o", archive, ref)
    palletd.pallet("rmi", ref)
    out = on_tty("load", "-i", archive)
    assert "Loading layer" in out and "\x1b[2K" in out and f"Loaded image: {ref}" in out
    palletd.pallet("rmi", ref)
