"""palletd started by socket activation (``-H fd://``): through Debian's
``systemd-socket-activate`` (when the ``systemd`` package is there; systemd
need not be the init) and through ``sd_activate.py``, a launcher that does
the same (binds, moves the sockets to fds 3.., sets LISTEN_FDS and
LISTEN_PID in the process it then execs)."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import time

import pytest

from engines import DOCKER_CLI, pids_mentioning
from listeners_helpers import (PALLETD, ActivatedPallet, free_port, http_get, own_launcher,
                               unix_ping)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="palletd needs root"),
]

SYSTEMD_ACTIVATE = shutil.which("systemd-socket-activate")
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "examples", "systemd")


def _docker(engine, *args, host=None, timeout=60):
    env = dict(os.environ, DOCKER_HOST=host or f"unix://{engine.sock}",
               DOCKER_CONFIG="/nonexistent-pl-docker-config")
    return subprocess.run([DOCKER_CLI, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _log(engine) -> str:
    engine.log.flush()
    with open(engine.log.name, errors="replace") as f:
        return f.read()


def _environ(pid: int) -> dict:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)


def test_own_launcher_unix_and_tcp(busybox_tar):
    port = free_port()
    engine = ActivatedPallet(own_launcher(), ["fd://"], [f"127.0.0.1:{port}"], "--tls=false")
    try:
        engine.start()
        log = _log(engine)
        assert re.search(r"API listen on fd://3 \(unix://", log), log
        assert re.search(rf"API listen on fd://4 \(tcp://127\.0\.0\.1:{port}\)", log), log
        assert f"WARNING: API listening on tcp://127.0.0.1:{port} without TLS" in log
        # palletd runs in the launcher's process, as under systemd
        assert engine.proc.pid in pids_mentioning(engine.data_root)
        r = _docker(engine, "load", "-i", busybox_tar)
        assert r.returncode == 0, r.stderr
        r = _docker(engine, "run", "--rm", "busybox", "echo", "activated", host=f"tcp://127.0.0.1:{port}")
        assert (r.returncode, r.stdout) == (0, "activated\n"), r.stderr
        # the children (pallet-containerd) do not inherit the activation variables
        # (/proc/PID/environ of palletd itself shows its start-up environment)
        children = [p for p in pids_mentioning(engine.root) if p != engine.proc.pid]
        assert children
        for pid in children:
            assert b"LISTEN_FDS" not in _environ(pid)
    finally:
        engine.stop()


def test_socket_is_kept_and_early_clients_wait(busybox_tar):
    """A client that connects before palletd is ready waits in the queue and is
    answered; stopping palletd leaves the passed socket file in place."""
    engine = ActivatedPallet(own_launcher(), ["fd://3"])
    try:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        engine.proc = subprocess.Popen(engine.command(), stdout=engine.log,
                                       stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while not os.path.exists(engine.sock) and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        s = socket.socket(socket.AF_UNIX)
        s.connect(engine.sock)  # accepted by the kernel: palletd is still starting
        status, body = http_get(s, "/_ping", timeout=120)
        s.close()
        assert (status, body) == (200, b"OK")
        assert time.monotonic() - t0 < 120
        engine.proc.terminate()
        engine.proc.wait(60)
        assert os.path.exists(engine.sock), "palletd removed a socket it did not make"
        assert "API listen on fd://3" in _log(engine)
    finally:
        engine.proc = None if engine.proc and engine.proc.poll() is not None else engine.proc
        engine.stop()


def test_fd_by_number_and_by_name():
    port = free_port()
    engine = ActivatedPallet([*own_launcher(), "--fdname", "api:remote"], ["fd://api"],
                             [f"127.0.0.1:{port}"])
    try:
        engine.start()
        log = _log(engine)
        assert "API listen on fd://3" in log
        assert "fd://4" not in log  # the tcp one was not asked for (and has no TLS)
        assert unix_ping(engine.sock) == 200
    finally:
        engine.stop()


@pytest.mark.parametrize("env,message", [
    ({}, "no sockets found via socket activation"),
    ({"LISTEN_FDS": "1", "LISTEN_PID": "1"}, "not this process"),
])
def test_fd_without_activation_refused(env, message, tmp_path):
    root = f"/tmp/pl-act-{os.getpid()}-{len(message)}"
    try:
        e = dict(os.environ)
        for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            e.pop(k, None)
        e.update(env)
        r = subprocess.run([PALLETD, "-H", "fd://", "--data-root", f"{root}/d", "--exec-root",
                            f"{root}/r"], capture_output=True, text=True, timeout=60, env=e)
        assert r.returncode == 1
        assert message in r.stderr and "Traceback" not in r.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_plain_tcp_from_activation_needs_tls_false():
    port = free_port()
    root = f"/tmp/pl-act-{os.getpid()}"
    try:
        r = subprocess.run([*own_launcher(), "-l", f"127.0.0.1:{port}", PALLETD, "-H", "fd://",
                            "--data-root", f"{root}/d", "--exec-root", f"{root}/r"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        assert "refusing to serve the API on tcp without TLS" in r.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _unit_values(path: str, key: str) -> list[str]:
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith(key + "="):
                out.append(line[len(key) + 1:])
    return out


def test_example_units_are_valid():
    sock_unit = os.path.join(EXAMPLES, "palletd.socket")
    svc_unit = os.path.join(EXAMPLES, "palletd.service")
    assert _unit_values(sock_unit, "ListenStream") == ["/run/pallet/pallet.sock"]
    assert _unit_values(sock_unit, "SocketMode") == ["0660"]
    assert _unit_values(sock_unit, "SocketGroup") == ["pallet"]
    exec_start = shlex.split(_unit_values(svc_unit, "ExecStart")[0])
    assert exec_start[1:3] == ["-H", "fd://"]
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    d = f"/tmp/pl-units-{os.getpid()}"
    os.makedirs(d, exist_ok=True)
    try:
        with open(svc_unit) as f:
            text = f.read().replace(exec_start[0], PALLETD)
        with open(os.path.join(d, "palletd.service"), "w") as f:
            f.write(text)
        shutil.copy(sock_unit, d)
        r = subprocess.run([analyze, "verify", "--man=no", "palletd.socket", "palletd.service"],
                           cwd=d, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not SYSTEMD_ACTIVATE, reason="systemd-socket-activate is not installed")
def test_systemd_socket_activate_with_the_example_unit_command_line(busybox_tar):
    """The example service's palletd arguments, under systemd's own launcher."""
    exec_start = shlex.split(_unit_values(os.path.join(EXAMPLES, "palletd.service"),
                                          "ExecStart")[0])
    hosts = [exec_start[i + 1] for i, a in enumerate(exec_start) if a == "-H"]
    name = _unit_values(os.path.join(EXAMPLES, "palletd.socket"), "FileDescriptorName")[0]
    engine = ActivatedPallet([SYSTEMD_ACTIVATE, f"--fdname={name}"], hosts)
    try:
        # systemd-socket-activate execs palletd on the first connection, which
        # then waits in the queue: engine.start() pings until answered
        engine.start()
        assert "API listen on fd://3" in _log(engine)
        r = _docker(engine, "load", "-i", busybox_tar)
        assert r.returncode == 0, r.stderr
        r = _docker(engine, "run", "--rm", "busybox", "echo", "from systemd")
        assert (r.returncode, r.stdout) == (0, "from systemd\n"), r.stderr
    finally:
        engine.stop()
