"""pallet-proxy on its own, on loopback: docker-proxy's flags and start-up
report, TCP carried intact with half closes, UDP flows per client, the
inherited listening socket, and death with its parent."""
from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

PROXY = [os.path.join(os.path.dirname(sys.executable), "pallet-proxy")]
if not os.access(PROXY[0], os.X_OK):
    PROXY = [sys.executable, "-m", "pallet.commands.proxy"]


def _free_port(kind=socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TcpEcho:
    """Echoes everything back, then closes after the client's end of file."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        with c:
            while True:
                data = c.recv(1 << 16)
                if not data:
                    break
                c.sendall(data)
            c.sendall(b"bye")

    def close(self):
        self.sock.close()


def _start_proxy(proto, host_port, backend_port):
    r, w = os.pipe()
    proc = subprocess.Popen(PROXY + ["-proto", proto, "-host-ip", "127.0.0.1", "-host-port",
                                     str(host_port), "-container-ip", "127.0.0.1",
                                     "-container-port", str(backend_port)],
                            close_fds=False, stderr=subprocess.PIPE,
                            preexec_fn=lambda: os.dup2(w, 3))  # docker-proxy's fd 3
    os.close(w)
    with os.fdopen(r, "rb") as f:
        report = f.readline()
        if report.startswith(b"1"):
            report += f.read()  # the error follows; EOF comes when the proxy exits
    return proc, report


@pytest.fixture
def echo():
    e = TcpEcho()
    yield e
    e.close()


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)


def test_tcp_carries_data_intact_with_half_close(echo):
    port = _free_port()
    proc, report = _start_proxy("tcp", port, echo.port)
    try:
        assert report == b"0\n"
        payload = os.urandom(16 << 20)
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        got = bytearray()

        def reader():
            while True:
                data = c.recv(1 << 20)
                if not data:
                    break
                got.extend(data)
        t = threading.Thread(target=reader)
        t.start()
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)  # the server only answers "bye" after our EOF
        t.join(30)
        c.close()
        assert hashlib.sha256(bytes(got)).digest() == hashlib.sha256(payload + b"bye").digest()
        # many connections at once
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
        for i, s in enumerate(socks):
            s.sendall(f"n{i}".encode())
            s.shutdown(socket.SHUT_WR)
        for i, s in enumerate(socks):
            data = b""
            while True:
                chunk = s.recv(100)
                if not chunk:
                    break
                data += chunk
            assert data == f"n{i}bye".encode()
            s.close()
    finally:
        _stop(proc)


def test_backend_refusing_closes_client():
    port, dead = _free_port(), _free_port()
    proc, report = _start_proxy("tcp", port, dead)
    try:
        assert report == b"0\n"
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert c.recv(10) == b""
        c.close()
    finally:
        _stop(proc)


def test_bind_failure_reported_like_docker_proxy():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        proc, report = _start_proxy("tcp", holder.getsockname()[1], 1)
        assert proc.wait(10) == 1
        assert report.startswith(b"1\n") and b"address already in use" in report
    finally:
        holder.close()


def test_udp_flows_per_client():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            server.sendto(data.upper() + f"@{addr[1]}".encode(), addr)
    threading.Thread(target=serve, daemon=True).start()
    port = _free_port(socket.SOCK_DGRAM)
    proc, report = _start_proxy("udp", port, server.getsockname()[1])
    try:
        assert report == b"0\n"
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        seen_ports = set()
        for i, c in enumerate(clients):
            c.settimeout(3)
            c.sendto(f"hi{i}".encode(), ("127.0.0.1", port))
            data = c.recv(1000)
            assert data.startswith(f"HI{i}@".encode())
            seen_ports.add(data.split(b"@")[1])
            c.sendto(b"again", ("127.0.0.1", port))  # same flow, same backend socket
            assert c.recv(1000).split(b"@")[1] in seen_ports
            c.close()
        assert len(seen_ports) == 3  # one backend socket (flow) per client
        big = os.urandom(60000)
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(3)
        c.sendto(big, ("127.0.0.1", port))
        assert c.recv(65535).startswith(big.upper())
        c.close()
    finally:
        stop.set()
        _stop(proc)
        server.close()


def test_inherited_listening_socket_and_parent_death(echo):
    """-use-listen-fd: the socket comes bound as fd 3; with PALLET_PROXY_PPID the
    proxy dies with the process that started it."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    code = (
        "import os, signal, sys, time\n"
        f"argv = {PROXY!r} + ['-proto', 'tcp', '-container-ip', '127.0.0.1', "
        f"'-container-port', '{echo.port}', '-use-listen-fd']\n"
        "env = dict(os.environ, PALLET_PROXY_PPID=str(os.getpid()))\n"
        f"pid = os.posix_spawn(argv[0], argv, env, file_actions=[(os.POSIX_SPAWN_DUP2, "
        f"{listener.fileno()}, 3)])\n"
        "print(pid, flush=True)\n"
        "sys.stdin.read()\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, pass_fds=(listener.fileno(),))
    listener.close()
    pid = int(parent.stdout.readline())
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        c.sendall(b"x")
        c.shutdown(socket.SHUT_WR)
        assert c.recv(100) + c.recv(100) in (b"xbye", b"x")
        c.close()
        parent.stdin.close()  # the parent exits: the proxy must follow
        parent.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split(")")[1].split()[0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.05)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_usage_errors():
    r = subprocess.run(PROXY + ["-proto", "sctp"], capture_output=True)
    assert r.returncode == 2 and b"unsupported protocol sctp" in r.stderr
    r = subprocess.run(PROXY + ["-nope"], capture_output=True)
    assert r.returncode == 2 and b"flag provided but not defined: -nope" in r.stderr
