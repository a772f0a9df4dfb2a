"""Helpers of the listener tests: a throw-away PKI made with ``openssl``, free
ports, raw HTTP over unix and TLS sockets, and palletd engines started with
extra ``-H`` (tcp with mutual TLS) or socket-activated (``fd://``)."""
from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time

from engines import VENV_BIN, Pallet, stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
OPENSSL = shutil.which("openssl")
PALLETD = os.path.join(VENV_BIN, "palletd")
SD_ACTIVATE = os.path.join(HERE, "sd_activate.py")


def _openssl(*args: str, cwd: str) -> None:
    r = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr}")


def _ca(d: str, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=pallet test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d: str, ca: str, name: str, ext: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
             f"{ca}-key.pem", "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2",
             "-extfile", f"{name}.ext", cwd=d)


def make_pki(d: str) -> dict[str, str]:
    """A CA with a server certificate (127.0.0.1, localhost) and a client
    certificate, plus a rogue CA with a client certificate of its own."""
    os.makedirs(d, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "rogue")
    _leaf(d, "ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
    _leaf(d, "ca", "client", "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
    _leaf(d, "rogue", "intruder", "extendedKeyUsage=clientAuth\n"
          "keyUsage=critical,digitalSignature\n")
    # the layout the docker CLI reads from DOCKER_CERT_PATH
    certs = os.path.join(d, "docker")
    os.makedirs(certs)
    for src, dst in (("ca.pem", "ca.pem"), ("client-cert.pem", "cert.pem"),
                     ("client-key.pem", "key.pem")):
        shutil.copy(os.path.join(d, src), os.path.join(certs, dst))
    p = {k: os.path.join(d, v) for k, v in {
        "ca": "ca.pem", "server_cert": "server-cert.pem", "server_key": "server-key.pem",
        "client_cert": "client-cert.pem", "client_key": "client-key.pem",
        "rogue_ca": "rogue.pem", "intruder_cert": "intruder-cert.pem",
        "intruder_key": "intruder-key.pem"}.items()}
    p["cert_path"] = certs
    return p


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(sock: socket.socket, path: str, timeout: float = 10) -> tuple[int, bytes]:
    """One GET on a connected (maybe TLS) socket; (status, body)."""
    sock.settimeout(timeout)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: pallet\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        raise ConnectionError("connection closed without an answer")
    return int(head.split()[1]), body


def tls_client(port: int, ca: str, cert: str | None = None, key: str | None = None,
               timeout: float = 10) -> socket.socket:
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def unix_ping(path: str, timeout: float = 10) -> int:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    try:
        return http_get(s, "/_ping", timeout)[0]
    finally:
        s.close()


def wait_ping(path: str, proc: subprocess.Popen, log: str, timeout: float = 120) -> None:
    """Wait until palletd answers /_ping 200 on the unix socket ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if unix_ping(path, timeout=5) == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    with open(log, errors="replace") as f:
        tail = f.read()[-4000:]
    raise RuntimeError(f"palletd gave no answer on {path} (exit {proc.poll()}):\n{tail}")


class ActivatedPallet(Pallet):
    """palletd started through a socket-activation launcher: ``launcher`` binds
    the unix socket ``self.sock`` (and ``extra_listen``) and execs palletd with
    LISTEN_FDS/LISTEN_PID set; palletd is given ``-H fd://...``."""

    def __init__(self, launcher: list[str], fd_hosts: list[str], extra_listen=(),
                 *extra_args: str):
        super().__init__(*extra_args)
        self.launcher = launcher
        self.fd_hosts = fd_hosts
        self.extra_listen = list(extra_listen)

    def command(self) -> list[str]:
        listen = []
        for addr in [self.sock, *self.extra_listen]:
            listen += ["-l", addr]
        hosts = []
        for h in self.fd_hosts:
            hosts += ["-H", h]
        return [*self.launcher, *listen, PALLETD, *hosts, "--data-root", self.data_root,
                "--exec-root", self.exec_root, *self.extra_args]

    def start(self) -> "ActivatedPallet":
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock) and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        wait_ping(self.sock, self.proc, self.log.name)
        return self


def own_launcher() -> list[str]:
    """This directory's launcher (sd_activate.py), equivalent to systemd's."""
    return [sys.executable, SD_ACTIVATE]


def run_palletd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """palletd that is expected to refuse to start (exits before serving)."""
    return subprocess.run([PALLETD, *args], capture_output=True, text=True, timeout=timeout)


__all__ = ["ActivatedPallet", "Pallet", "free_port", "http_get", "make_pki", "own_launcher",
           "run_palletd", "stop_process", "tls_client", "unix_ping", "wait_ping"]
