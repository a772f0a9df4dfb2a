"""``-it`` sessions of the pallet CLI in a real pseudo-terminal (pexpect): raw
mode, the window size followed (SIGWINCH -> resize), detaching with ctrl-p
ctrl-q or --detach-keys, ``attach`` and ``exec -it``; against a real dockerd
and against palletd."""

import os
import sys
import time

import pytest

from cli_helpers import suffix

pexpect = pytest.importorskip("pexpect")


@pytest.fixture(scope="module")
def palletd_cli(busybox_tar):
    """palletd on its own roots, with the Daemon-like pallet()/docker() helpers."""
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    from engines import Pallet
    engine = Pallet()
    try:
        engine.start()
        engine.docker("load", "-i", busybox_tar)
        yield _Target(f"unix://{engine.sock}")
    finally:
        engine.stop()


class _Target:
    def __init__(self, host):
        self.host = host

    def env(self):
        env = dict(os.environ, PALLET_HOST=self.host, DOCKER_HOST=self.host, TERM="xterm")
        return env

    def spawn(self, *args, rows=24, cols=80):
        return pexpect.spawn(sys.executable, ["-m", "pallet.client.docker", *args],
                             env=self.env(), dimensions=(rows, cols), timeout=30)

    def run(self, *args):
        import subprocess
        return subprocess.run([sys.executable, "-m", "pallet.client.docker", *args],
                              capture_output=True, text=True, env=self.env(), timeout=60)


@pytest.fixture(params=["dockerd", "palletd"])
def target(request):
    if request.param == "dockerd":
        d = request.getfixturevalue("dockerd")
        return _Target(d.host)
    return request.getfixturevalue("palletd_cli")


def _running(t, name):
    return t.run("inspect", "-f", "{{.State.Running}}", name).stdout.strip()


def _until_running(t, name):
    deadline = time.monotonic() + 20
    while _running(t, name) != "true":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_run_it_resize_and_detach(request, target):
    name = "plt-tty-" + suffix()
    p = target.spawn("run", "-it", "--name", name, "busybox", "sh")
    try:
        p.expect("# ")
        p.sendline("stty size")
        p.expect("24 80")
        p.setwinsize(40, 100)  # the kernel sends the CLI a SIGWINCH
        deadline = time.monotonic() + 10
        while True:
            p.sendline("stty size")
            i = p.expect(["40 100", "24 80"])
            if i == 0:
                break
            assert time.monotonic() < deadline, "the new size never reached the container"
            time.sleep(0.2)
        p.sendline("echo $((6*7))")
        p.expect("42")
        p.send("\x10\x11")  # ctrl-p ctrl-q
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 0
        assert _running(target, name) == "true"
        # attach again, then leave by ending the shell: its status is ours
        p = target.spawn("attach", name)
        time.sleep(0.5)
        p.sendline("echo back")
        p.expect("back")
        p.sendline("exit 3")
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 3
    finally:
        p.close(force=True)
        target.run("rm", "-f", name)


def test_custom_detach_keys(request, target):
    name = "plt-dk-" + suffix()
    p = target.spawn("run", "-it", "--detach-keys", "ctrl-x,x", "--name", name, "busybox", "sh")
    try:
        p.expect("# ")
        p.send("\x10\x11")  # the default sequence is no longer special
        p.sendline("echo still-here")
        p.expect("still-here")
        p.send("\x18x")
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 0
        assert _running(target, name) == "true"
    finally:
        p.close(force=True)
        target.run("rm", "-f", name)


def test_bad_detach_keys(target):
    r = target.run("run", "--rm", "-i", "--detach-keys", "ctrl-", "busybox", "true")
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_exec_it(dockerd):
    t = _Target(dockerd.host)
    name = "plt-ex-" + suffix()
    assert t.run("run", "-d", "--name", name, "busybox", "sleep", "600").returncode == 0
    try:
        p = t.spawn("exec", "-it", name, "sh", rows=30, cols=90)
        p.expect("# ")
        p.sendline("stty size; tty")
        p.expect("30 90")
        p.expect("/dev/pts/")
        p.sendline("exit 5")
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 5
        # detach from an exec session
        p = t.spawn("exec", "-it", name, "sh")
        p.expect("# ")
        p.send("\x10\x11")
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 0
    finally:
        t.run("rm", "-f", name)


def test_stdin_eof_without_tty_closes_the_container_stdin(target):
    r = target.run("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo after-eof")
    assert (r.returncode, r.stdout) == (0, "after-eof\n"), r.stderr


def test_it_needs_a_terminal(target):
    r = target.run("run", "--rm", "-it", "busybox", "true")
    assert (r.returncode, r.stderr) == (1, "the input device is not a TTY\n")
