"""Fixtures for the ``pallet`` CLI tests: a private, real dockerd.

dockerd (Debian's docker.io) runs with its own data root, exec root, pid file
and socket under a short /tmp/pl-cli-XXXX directory, no bridge and no
iptables, and starts its own containerd under its exec root.  It is stopped
by pid, and its mounts are removed, even when the tests fail.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DOCKERD = shutil.which("dockerd") or ("/usr/sbin/dockerd" if os.path.exists("/usr/sbin/dockerd") else None)
DOCKER_CLI = shutil.which("docker")


def suffix():
    return uuid.uuid4().hex[:8]


def _ping(sock_path):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(sock_path)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        data = s.recv(4096)
        s.close()
        return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stop_pid(pid, timeout=20.0):
    if not pid or not _pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)
    if _pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _mounts_under(root):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == root or mnt.startswith(root + "/"):
                out.append(mnt)
    return out


def _umount_all(root):
    for _ in range(5):
        mounts = _mounts_under(root)
        if not mounts:
            return
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)


class Daemon:
    """A running dockerd and the way to reach it."""

    def __init__(self, root):
        self.root = root
        self.sock = os.path.join(root, "d.sock")
        self.host = "unix://" + self.sock
        self.pidfile = os.path.join(root, "d.pid")
        self.log = os.path.join(root, "d.log")
        self.proc = None
        self.docker_config = os.path.join(root, "docker-config")

    def env(self, **extra):
        env = dict(os.environ)
        env.pop("DOCKER_HOST", None)
        env.pop("PALLET_HOST", None)
        env.pop("DOCKER_CONTEXT", None)
        env["PALLET_HOST"] = self.host
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = self.docker_config
        env["TZ"] = "UTC"
        env.update(extra)
        return env

    def pallet(self, *args, input=None, timeout=60, env=None):
        """Run the pallet CLI in a subprocess; return CompletedProcess (text)."""
        return subprocess.run([sys.executable, "-m", "pallet.client.docker", *args],
                              input=input, capture_output=True, text=True, timeout=timeout,
                              env=env or self.env())

    def docker(self, *args, input=None, timeout=60):
        """Run the real docker CLI on the same daemon."""
        return subprocess.run([DOCKER_CLI, *args], input=input, capture_output=True, text=True,
                              timeout=timeout, env=self.env())


def _start(root):
    d = Daemon(root)
    os.makedirs(d.docker_config, exist_ok=True)
    logf = open(d.log, "wb")
    d.proc = subprocess.Popen(
        [DOCKERD, "--data-root", os.path.join(root, "data"),
         "--exec-root", os.path.join(root, "exec"),
         "--pidfile", d.pidfile, "-H", d.host,
         "--bridge=none", "--iptables=false", "--ip-masq=false",
         "--config-file", os.path.join(root, "daemon.json")],
        stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    logf.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            break
        if _ping(d.sock):
            return d
        time.sleep(0.2)
    with open(d.log, errors="replace") as f:
        tail = f.read()[-3000:]
    raise RuntimeError("dockerd did not come up:\n" + tail)


def _cleanup(d, root):
    pid = d.proc.pid if d and d.proc else _read_pid(os.path.join(root, "d.pid"))
    if d is not None and d.proc is not None and d.proc.poll() is None and _ping(d.sock):
        # containers first, so that their shims go away with them
        try:
            ids = d.pallet("ps", "-aq", "--no-trunc", timeout=30).stdout.split()
            if ids:
                d.pallet("rm", "-f", *ids, timeout=60)
        except Exception:
            pass
    containerd_pid = _read_pid(os.path.join(root, "exec", "containerd", "containerd.pid"))
    _stop_pid(pid, timeout=30)
    if d is not None and d.proc is not None:
        try:
            d.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    # dockerd stops its containerd; make sure of it (and only of that pid)
    if containerd_pid:
        try:
            with open("/proc/%d/cmdline" % containerd_pid, "rb") as f:
                ours = root.encode() in f.read()
        except OSError:
            ours = False
        if ours:
            _stop_pid(containerd_pid, timeout=10)
    _umount_all(root)
    shutil.rmtree(root, ignore_errors=True)


def _busybox_tarball(out):
    """Write busybox:latest as a docker-save tarball; return its image id.

    The project's built-in image maker is used when it works; the small
    builder beside these tests is the fallback, so the CLI tests do not hang
    on another part's progress.
    """
    r = subprocess.run([sys.executable, "-m", "pallet.distribution.busybox_image", out],
                       capture_output=True, timeout=120)
    if r.returncode == 0 and os.path.exists(out):
        import tarfile
        with tarfile.open(out) as tf:
            manifest = json.load(tf.extractfile("manifest.json"))
        config = manifest[0]["Config"]
        return "sha256:" + os.path.basename(config).split(".")[0]
    sys.path.insert(0, HERE)
    try:
        import busybox_image
    finally:
        sys.path.remove(HERE)
    return busybox_image.save_tarball(out)


@pytest.fixture(scope="session")
def dockerd():
    """A private dockerd with the test busybox image loaded (skips without dockerd)."""
    if not DOCKERD:
        pytest.skip("dockerd is not installed")
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root")
    root = tempfile.mkdtemp(prefix="pl-cli-", dir="/tmp")
    with open(os.path.join(root, "daemon.json"), "w") as f:
        json.dump({}, f)
    d = None
    try:
        d = _start(root)
        tar = os.path.join(root, "busybox.tar")
        d.busybox_id = _busybox_tarball(tar)
        d.busybox_tar = tar
        r = d.pallet("load", "-i", tar)
        assert r.returncode == 0, r.stderr
        assert "Loaded image: busybox:latest" in r.stdout
        yield d
    finally:
        _cleanup(d, root)


@pytest.fixture
def name():
    """A container name unique to the test."""
    return "plt-" + suffix()
