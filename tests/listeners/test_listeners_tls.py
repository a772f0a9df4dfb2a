"""palletd on tcp with mutual TLS (``--tlsverify``) beside its unix socket:
clients without a certificate signed by the CA are refused during the
handshake; the docker CLI and the pallet CLI with certificates are served,
hijacked streams (run, attach) included."""
from __future__ import annotations

import grp
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile

import pytest

from engines import DOCKER_CLI
from listeners_helpers import (OPENSSL, Pallet, free_port, http_get, make_pki, tls_client,
                               wait_ping)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="palletd needs root"),
    pytest.mark.skipif(not OPENSSL, reason="openssl is not installed"),
]


@pytest.fixture(scope="module")
def tls_palletd(busybox_tar):
    pki_dir = tempfile.mkdtemp(prefix="pl-pki-", dir="/tmp")
    engine = None
    try:
        pki = make_pki(pki_dir)
        port = free_port()
        engine = Pallet("-H", f"tcp://127.0.0.1:{port}", "--tlsverify",
                        "--tlscacert", pki["ca"], "--tlscert", pki["server_cert"],
                        "--tlskey", pki["server_key"])
        engine.start()
        wait_ping(engine.sock, engine.proc, engine.log.name)
        engine.docker("load", "-i", busybox_tar)
        engine.port, engine.pki = port, pki
        yield engine
    finally:
        if engine is not None:
            engine.stop()
        shutil.rmtree(pki_dir, ignore_errors=True)


def _refused(port, ca, cert=None, key=None):
    """True when no HTTP answer can be had over TLS with this identity."""
    try:
        s = tls_client(port, ca, cert, key)
    except (ssl.SSLError, OSError):
        return True
    try:
        status, _ = http_get(s, "/_ping")
    except (ssl.SSLError, OSError, ConnectionError, IndexError, ValueError):
        return True
    finally:
        s.close()
    return status != 200


def test_unix_socket_beside_it_has_mode_0660_group_pallet(tls_palletd):
    st = os.stat(tls_palletd.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == 0
    assert st.st_gid == grp.getgrnam("pallet").gr_gid


def test_client_with_a_certificate_from_the_ca_is_served(tls_palletd):
    pki = tls_palletd.pki
    s = tls_client(tls_palletd.port, pki["ca"], pki["client_cert"], pki["client_key"])
    try:
        assert http_get(s, "/_ping") == (200, b"OK")
    finally:
        s.close()
    s = tls_client(tls_palletd.port, pki["ca"], pki["client_cert"], pki["client_key"])
    try:
        status, body = http_get(s, "/version")
    finally:
        s.close()
    assert status == 200 and json.loads(body)["ApiVersion"]


def test_client_without_a_certificate_is_refused(tls_palletd):
    assert _refused(tls_palletd.port, tls_palletd.pki["ca"])


def test_client_with_a_certificate_from_another_ca_is_refused(tls_palletd):
    pki = tls_palletd.pki
    assert _refused(tls_palletd.port, pki["ca"], pki["intruder_cert"], pki["intruder_key"])


def test_plain_http_on_the_tls_port_gets_no_answer(tls_palletd):
    s = socket.create_connection(("127.0.0.1", tls_palletd.port), timeout=10)
    try:
        try:
            status, _ = http_get(s, "/_ping")
        except (OSError, ConnectionError):
            status = None
    finally:
        s.close()
    assert status != 200


def _docker(*args, env=None, timeout=60, input=None):
    e = dict(os.environ)
    for k in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT",
              "PALLET_HOST"):
        e.pop(k, None)
    e["DOCKER_CONFIG"] = "/nonexistent-pl-docker-config"
    e.update(env or {})
    return subprocess.run([DOCKER_CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=e, input=input)


def _pallet(*args, env=None, timeout=60, input=None):
    e = dict(os.environ)
    for k in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "PALLET_HOST"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pallet.client.docker", *args],
                          capture_output=True, text=True, timeout=timeout, env=e, input=input)


def _tls_flags(engine, cert="client"):
    pki = engine.pki
    return ["--tlsverify", "--tlscacert", pki["ca"], "--tlscert", pki[f"{cert}_cert"],
            "--tlskey", pki[f"{cert}_key"], "-H", f"tcp://127.0.0.1:{engine.port}"]


@pytest.mark.skipif(not os.path.exists(DOCKER_CLI), reason="docker CLI not installed")
def test_docker_cli_with_tlsverify(tls_palletd):
    flags = _tls_flags(tls_palletd)
    r = _docker(*flags, "version", "--format", "{{.Server.APIVersion}}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1.43"
    # a hijacked stream (attach) and the wait, over TLS
    r = _docker(*flags, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = _docker(*flags, "run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z", input="over tls\n")
    assert (r.returncode, r.stdout) == (0, "OVER TLS\n"), r.stderr
    # the same from DOCKER_CERT_PATH and DOCKER_TLS_VERIFY
    r = _docker("-H", f"tcp://127.0.0.1:{tls_palletd.port}", "ps", "-q",
                env={"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": tls_palletd.pki["cert_path"]})
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not os.path.exists(DOCKER_CLI), reason="docker CLI not installed")
def test_docker_cli_without_the_right_certificate_fails(tls_palletd):
    pki = tls_palletd.pki
    host = ["-H", f"tcp://127.0.0.1:{tls_palletd.port}"]
    r = _docker("--tlsverify", "--tlscacert", pki["ca"], *host, "ps")
    assert r.returncode != 0
    r = _docker(*_tls_flags(tls_palletd, "intruder"), "ps")
    assert r.returncode != 0
    # and the client checks the server too: a server not signed by its CA
    r = _docker("--tlsverify", "--tlscacert", pki["rogue_ca"], "--tlscert", pki["client_cert"],
                "--tlskey", pki["client_key"], *host, "ps")
    assert r.returncode != 0 and "certificate" in r.stderr


def test_pallet_cli_with_tlsverify(tls_palletd):
    flags = _tls_flags(tls_palletd)
    r = _pallet(*flags, "version", "--format", "{{.Server.ApiVersion}}")
    assert (r.returncode, r.stdout.strip()) == (0, "1.43"), r.stderr
    r = _pallet(*flags, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (r.returncode, r.stdout, r.stderr) == (4, "out\n", "err\n")
    r = _pallet(*flags, "run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z", input="abc\n")
    assert (r.returncode, r.stdout) == (0, "ABC\n"), r.stderr
    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": tls_palletd.pki["cert_path"],
           "DOCKER_HOST": f"tcp://127.0.0.1:{tls_palletd.port}"}
    r = _pallet("ps", "-aq", env=env)
    assert r.returncode == 0, r.stderr
    # PALLET_HOST wins over DOCKER_HOST
    r = _pallet("ps", "-aq", env=dict(env, DOCKER_HOST="unix:///nonexistent.sock",
                                      PALLET_HOST=f"tcp://127.0.0.1:{tls_palletd.port}"))
    assert r.returncode == 0, r.stderr


def test_pallet_cli_without_the_right_certificate_fails(tls_palletd):
    pki = tls_palletd.pki
    host = ["-H", f"tcp://127.0.0.1:{tls_palletd.port}"]
    r = _pallet("--tlsverify", "--tlscacert", pki["ca"], *host, "ps")
    assert r.returncode == 1 and r.stderr and "Traceback" not in r.stderr
    r = _pallet(*_tls_flags(tls_palletd, "intruder"), "ps")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = _pallet("--tlsverify", "--tlscacert", pki["rogue_ca"], "--tlscert", pki["client_cert"],
                "--tlskey", pki["client_key"], *host, "ps")
    assert r.returncode == 1 and "certificate" in r.stderr and "Traceback" not in r.stderr
