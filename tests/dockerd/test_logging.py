"""Log drivers through the docker CLI, palletd beside dockerd 20.10: options
checked at the moments dockerd checks them, the ``local`` driver (compact
records, rotation, compression) and ``syslog`` (unix, udp and tcp
listeners started here, on loopback or a socket file), ``docker logs``
reading both (dual logging for syslog)."""
from __future__ import annotations


import json
import os
import re
import socket
import tempfile
import threading

import pytest

from ctr_helpers import out, wait_for

CASES = [
    {"Type": "json-file", "Config": {"max-file": "3"}},
    {"Type": "json-file", "Config": {"max-size": "bogus"}},
    {"Type": "json-file", "Config": {"max-size": "-1"}},
    {"Type": "json-file", "Config": {"max-file": "x", "max-size": "1m"}},
    {"Type": "json-file", "Config": {"max-file": "0", "max-size": "1m"}},
    {"Type": "json-file", "Config": {"compress": "maybe"}},
    {"Type": "json-file", "Config": {"nope": "1"}},
    {"Type": "local", "Config": {"max-size": "1k", "max-file": "2", "compress": "false"}},
    {"Type": "local", "Config": {"max-file": "3"}},
    {"Type": "local", "Config": {"max-size": "bogus"}},
    {"Type": "local", "Config": {"tag": "x"}},
    {"Type": "local", "Config": {"compress": "maybe"}},
    {"Type": "syslog", "Config": {"syslog-address": "udp://127.0.0.1:1"}},
    {"Type": "syslog", "Config": {"syslog-address": "tcp://127.0.0.1:1"}},
    {"Type": "syslog", "Config": {"syslog-address": "bogus://x"}},
    {"Type": "syslog", "Config": {"syslog-address": "unix:///nonexistent/sock"}},
    {"Type": "syslog", "Config": {"syslog-format": "bogus", "syslog-address": "udp://127.0.0.1:1"}},
    {"Type": "syslog", "Config": {"syslog-facility": "bogus",
                                  "syslog-address": "udp://127.0.0.1:1"}},
    {"Type": "syslog", "Config": {"cache-max-size": "bogus", "syslog-address": "udp://127.0.0.1:1"}},
    {"Type": "syslog", "Config": {"max-size": "1m", "syslog-address": "udp://127.0.0.1:1"}},
    {"Type": "nope", "Config": {}},
    {"Type": "none", "Config": {"max-size": "1m"}},
]


def _msg(body: bytes) -> str:
    return json.loads(body)["message"] if body else ""


def _create_start(engine, log_config) -> tuple:
    st, _, body = engine.api("POST", "/v1.41/containers/create", {
        "Image": "busybox", "Cmd": ["true"], "HostConfig": {"LogConfig": log_config}})
    if st != 201:
        return st, _msg(body)
    cid = json.loads(body)["Id"]
    st2, _, body2 = engine.api("POST", f"/v1.41/containers/{cid}/start")
    log_path = json.loads(engine.api("GET", f"/v1.41/containers/{cid}/json")[2])["LogPath"]
    engine.docker("rm", "-f", cid)
    return st, st2, _msg(body2), bool(log_path)


def test_options_checked_when_dockerd_checks_them(palletd, dockerd):
    for lc in CASES:
        assert _create_start(palletd, lc) == _create_start(dockerd, lc), lc


def _records(path: str) -> list[tuple]:
    """A local driver file, read the way dockerd's reader walks it."""
    import struct

    from pallet.engine.logdrivers.local import decode
    data = open(path, "rb").read()
    out_, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from(">I", data, i)
        assert struct.unpack_from(">I", data, i + 4 + n)[0] == n  # the trailing length
        e = decode(data[i + 4:i + 4 + n])
        out_.append((e.stream, e.data))
        i += 8 + n
    return out_


def _container_dir(engine, cid):
    return os.path.join(engine.data_root, "containers", cid)


def test_local_driver(palletd, dockerd):
    cmd = ["sh", "-c", "echo out; echo err >&2; echo last"]
    logs = {}
    for name, e in (("pallet", palletd), ("docker", dockerd)):
        cid = out(e.docker("run", "-d", "--log-driver", "local", "busybox", *cmd))
        e.docker("wait", cid)
        r = e.docker("logs", cid)
        logs[name] = (r.stdout, r.stderr, inspect_log_path(e, cid))
        if name == "pallet":
            path = os.path.join(_container_dir(e, cid), "local-logs", "container.log")
            assert sorted(_records(path)) == sorted([("stdout", b"out\n"), ("stderr", b"err\n"),
                                                     ("stdout", b"last\n")])
        e.docker("rm", cid)
    assert logs["pallet"] == logs["docker"] == (b"out\nlast\n", b"err\n", "")


def inspect_log_path(engine, cid) -> str:
    return json.loads(engine.docker("inspect", cid).stdout)[0]["LogPath"]


def test_local_driver_rotates_and_compresses(palletd):
    cid = out(palletd.docker("run", "-d", "--log-driver", "local", "--log-opt", "max-size=1k",
                             "--log-opt", "max-file=3", "busybox", "sh", "-c",
                             "for i in $(seq 1 200); do echo line-$i; done"))
    palletd.docker("wait", cid)
    d = os.path.join(_container_dir(palletd, cid), "local-logs")
    assert sorted(os.listdir(d)) == ["container.log", "container.log.1.gz", "container.log.2.gz"]
    lines = out(palletd.docker("logs", cid)).splitlines()
    assert lines[-1] == "line-200" and 10 < len(lines) < 200
    first = int(lines[0].split("-")[1])
    assert lines == [f"line-{i}" for i in range(first, 201)]
    assert out(palletd.docker("logs", "--tail", "2", cid)).splitlines() == ["line-199",
                                                                            "line-200"]
    palletd.docker("rm", cid)


class Listener:
    """A syslog listener on a unix stream socket, udp or tcp on 127.0.0.1."""

    def __init__(self, proto: str):
        self.proto = proto
        self.data = bytearray()
        self.lock = threading.Lock()
        self.dir = tempfile.mkdtemp(prefix="pl-sl-")
        if proto == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            path = os.path.join(self.dir, "log.sock")
            self.sock.bind(path)
            self.address = f"unix://{path}"
        else:
            kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
            self.sock = socket.socket(socket.AF_INET, kind)
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"{proto}://127.0.0.1:{self.sock.getsockname()[1]}"
        if proto != "udp":
            self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conns = []
        while not self.stopping:
            try:
                if self.proto == "udp":
                    data = self.sock.recv(65536)
                    with self.lock:
                        self.data += data if data.endswith(b"\n") else data + b"\n"
                    continue
                conn, _ = self.sock.accept()
                conn.settimeout(0.2)
                conns.append(conn)
            except (socket.timeout, OSError):
                pass
            for conn in list(conns):
                try:
                    data = conn.recv(65536)
                    if not data:
                        conns.remove(conn)
                        continue
                    with self.lock:
                        self.data += data
                except (socket.timeout, OSError):
                    pass
        for conn in conns:
            conn.close()

    def lines(self) -> list[str]:
        with self.lock:
            return bytes(self.data).decode().splitlines()

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(params=["unix", "udp", "tcp"])
def listener(request):
    lst = Listener(request.param)
    try:
        yield lst
    finally:
        lst.close()


_STAMP = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"


def _normalise(line: str, cid: str) -> str:
    """A message with what differs between the engines (time, host, pid, id)
    replaced."""
    line = re.sub(_STAMP, "STAMP", line)
    line = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "TIME", line)
    line = line.replace(cid[:12], "ID").replace(socket.gethostname(), "HOST")
    return re.sub(r"\[\d+\]|(?<= ID )\d+(?= ID)", "PID", line)


@pytest.mark.parametrize("fmt", ["", "rfc3164", "rfc5424", "rfc5424micro"])
def test_syslog_like_dockerd(palletd, dockerd, listener, fmt):
    got = {}
    for name, e in (("pallet", palletd), ("docker", dockerd)):
        before = len(listener.lines())
        args = ["--log-driver", "syslog", "--log-opt", f"syslog-address={listener.address}"]
        if fmt:
            args += ["--log-opt", f"syslog-format={fmt}"]
        cid = out(e.docker("run", "-d", *args, "busybox", "sh", "-c",
                           "echo to-out; echo to-err >&2"))
        e.docker("wait", cid)
        lines = wait_for(lambda: len(listener.lines()) >= before + 2 and
                         listener.lines()[before:], 20)
        got[name] = sorted(_normalise(ln, cid) for ln in lines)
        r = e.docker("logs", cid)  # dual logging: read from the local cache
        assert (r.stdout, r.stderr) == (b"to-out\n", b"to-err\n"), name
        e.docker("rm", cid)
    assert got["pallet"] == got["docker"]
    assert any("to-out" in ln and ln.startswith("<30>") for ln in got["pallet"])
    assert any("to-err" in ln and ln.startswith("<27>") for ln in got["pallet"])


def test_syslog_tag_templates_and_no_cache(palletd, tmp_path):
    lst = Listener("udp")
    try:
        cid = out(palletd.docker("run", "-d", "--name", "sl-tag", "--log-driver", "syslog",
                                 "--log-opt", f"syslog-address={lst.address}", "--log-opt",
                                 "tag={{.Name}}/{{.ImageName}}/{{.ID}}", "--log-opt",
                                 "syslog-facility=local3", "--log-opt", "cache-disabled=true",
                                 "busybox", "echo", "tagged"))
        palletd.docker("wait", cid)
        line = wait_for(lambda: lst.lines(), 20)[0]
        assert line.startswith(f"<{19 * 8 + 6}>") and \
            f" sl-tag/busybox/{cid[:12]}[" in line and line.endswith(": tagged")
        r = palletd.docker("logs", cid, check=False)
        assert r.returncode == 1 and \
            b"configured logging driver does not support reading" in r.stderr
        palletd.docker("rm", cid)
    finally:
        lst.close()

