"""palletd's ``-H`` and TLS flags: what it refuses before starting anything,
and several listeners at once (unix with ``--group``, plain tcp with an
explicit ``--tls=false`` and its warning)."""
from __future__ import annotations

import grp
import os
import shutil
import stat
import subprocess
import uuid

import pytest

from engines import DOCKER_CLI
from listeners_helpers import PALLETD, Pallet, free_port, run_palletd, unix_ping, wait_ping

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="palletd needs root"),
]


@pytest.fixture
def roots():
    root = f"/tmp/pl-ls-{uuid.uuid4().hex[:6]}"
    yield ["--data-root", f"{root}/d", "--exec-root", f"{root}/r"], root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("args,message", [
    (["-H", "tcp://127.0.0.1:{port}"], "refusing to serve the API on tcp without TLS"),
    (["-H", "tcp://127.0.0.1:{port}", "--tls"], "could not load x509 key pair"),
    (["-H", "tcp://127.0.0.1:{port}", "--tlsverify", "--tlscert", "/nonexistent/c.pem",
      "--tlskey", "/nonexistent/k.pem"], "could not load x509 key pair"),
    (["-H", "http://127.0.0.1:{port}"], "want unix://PATH, tcp://HOST:PORT or fd://"),
    (["-H", "tcp://127.0.0.1:99999"], "bad port"),
    (["-H", "unix:///tmp/pl-ls-{port}/" + "x" * 120], "longer than 107 bytes"),
    (["-H", "unix:///tmp/pl-ls-{port}.sock", "-G", "pl-no-such-group"], "group 'pl-no-such-group' not found"),
])
def test_refused_before_starting(roots, args, message):
    argv, root = roots
    port = free_port()
    env = dict(os.environ, HOME=root)  # no ~/.docker certificates by accident
    r = subprocess.run([PALLETD, *[a.format(port=port) for a in args], *argv],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    # nothing was started and nothing is left listening
    assert not os.path.exists(os.path.join(root, "r", "containerd", "containerd.sock"))
    assert not os.path.exists(os.path.join(root, "r", "palletd.pid"))


def test_bad_tls_flag_value(roots):
    argv, _ = roots
    r = run_palletd("--tls=maybe", *argv)
    assert r.returncode == 2 and "invalid boolean value 'maybe'" in r.stderr


@pytest.fixture
def group():
    name = f"pl-g-{uuid.uuid4().hex[:6]}"
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], capture_output=True)


def test_several_listeners_group_and_plain_tcp(group):
    port = free_port()
    engine = Pallet("-G", group, "-H", f"tcp://127.0.0.1:{port}", "--tls=false")
    try:
        second = os.path.join(engine.root, "second.sock")
        engine.extra_args += ["-H", f"unix://{second}"]
        engine.start()
        wait_ping(engine.sock, engine.proc, engine.log.name)
        engine.log.flush()
        with open(engine.log.name) as f:
            log = f.read()
        assert f"palletd: WARNING: API listening on tcp://127.0.0.1:{port} without TLS" in log
        gid = grp.getgrnam(group).gr_gid
        for path in (engine.sock, second):
            st = os.stat(path)
            assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == gid
            assert unix_ping(path) == 200
        r = subprocess.run([DOCKER_CLI, "-H", f"tcp://127.0.0.1:{port}", "version", "--format",
                            "{{.Server.APIVersion}}"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, DOCKER_CONFIG="/nonexistent-pl-docker-config"))
        assert (r.returncode, r.stdout.strip()) == (0, "1.43"), r.stderr
        engine.proc.terminate()
        engine.proc.wait(60)
        # the sockets palletd made are removed when it stops
        assert not os.path.exists(engine.sock) and not os.path.exists(second)
    finally:
        engine.stop()
