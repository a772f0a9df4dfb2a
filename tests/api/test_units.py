"""Pure logic of api_rest: frames, json-file log, spec defaults, names, parsing."""
from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from pallet.core import errors
from pallet.engine import spec
from pallet.plugins.api_rest import streams
from pallet.engine.createconfig import merge_config as _merge_config, parse_signal
from pallet.engine.logs import ContainerLog, follow, parse_time, rfc3339nano
from pallet.engine.names import random_name
from pallet.commands.listeners import parse_host


def test_frame():
    assert streams.frame("stdout", b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert streams.frame(2, b"") == b"\x02\x00\x00\x00\x00\x00\x00\x00"
    assert streams.encode("stderr", b"x", tty=True) == b"x"


def test_times_roundtrip():
    ns = 1_700_000_000_123_456_789
    assert rfc3339nano(ns) == "2023-11-14T22:13:20.123456789Z"
    assert parse_time(rfc3339nano(ns)) == ns


def test_json_log_lines_and_follow(tmp_path):
    path = str(tmp_path / "c-json.log")

    async def run():
        log = ContainerLog(path)
        log.open()
        log.write("stdout", b"a\nb")
        log.write("stderr", b"e\n")
        log.write("stdout", b"c\n")
        got = []

        async def reader():
            async for batch in follow(log, path, streams={"stdout", "stderr"}, tail=None,
                                      follow=True, running=lambda: True):
                got.extend((e.stream, e.data) for e in batch)
        t = asyncio.ensure_future(reader())
        await asyncio.sleep(0.05)
        log.write("stdout", b"live\n")
        log.write("stdout", b"partial")
        log.close()
        await asyncio.wait_for(t, 5)
        return got
    got = asyncio.run(run())
    assert got == [("stdout", b"a\n"), ("stderr", b"e\n"), ("stdout", b"bc\n"),
                   ("stdout", b"live\n"), ("stdout", b"partial")]
    lines = [json.loads(x) for x in open(path)]
    assert lines[0]["log"] == "a\n" and lines[0]["stream"] == "stdout" and "time" in lines[0]


def test_tail():
    import tempfile

    async def run(path):
        log = ContainerLog(path)
        log.open()
        for i in range(5):
            log.write("stdout", f"{i}\n".encode())
        log.close()
        return [e.data async for batch in follow(None, path, streams={"stdout"}, tail=2)
                for e in batch]
    with tempfile.TemporaryDirectory() as d:
        assert asyncio.run(run(os.path.join(d, "l"))) == [b"3\n", b"4\n"]


def test_log_read_back_in_blocks_with_torn_lines_and_rotation(tmp_path, monkeypatch):
    """Entries come back in order across rotated (gzip) files, blocks that cut
    lines in two, a torn line and a line that is not an object; times keep
    their nanoseconds when lines share a second."""
    import gzip

    from pallet.engine import logs

    def line(i, stamp):
        return json.dumps({"log": f"{i}\n", "stream": "stderr" if i % 3 == 0 else "stdout",
                           "time": stamp}).encode() + b"\n"
    stamps = [f"2026-11-28T00:00:{i // 10:02d}.{i:09d}Z" for i in range(60)]
    base = str(tmp_path / "c-json.log")
    with gzip.open(base + ".2.gz", "wb") as f:  # the oldest
        f.write(b"".join(line(i, stamps[i]) for i in range(20)))
    with open(base + ".1", "wb") as f:
        f.write(b"".join(line(i, stamps[i]) for i in range(20, 40)) + b"42\n")
    with open(base, "wb") as f:
        f.write(b"".join(line(i, stamps[i]) for i in range(40, 60)) + b'{"log": "torn')
    monkeypatch.setattr(logs, "BLOCK", 100)  # cut most lines in two

    async def run(**kw):
        return [e async for batch in logs.follow(None, base, **kw) for e in batch]
    got = asyncio.run(run(streams={"stdout", "stderr"}, tail=None))
    assert [e.data for e in got] == [f"{i}\n".encode() for i in range(60)]
    assert [e.time_ns for e in got] == [logs.parse_time(s) for s in stamps]
    assert got[3].stream == "stderr" and got[4].stream == "stdout"
    since = logs.parse_time(stamps[50])
    got = asyncio.run(run(streams={"stderr"}, tail=None, since_ns=since))
    assert [e.data for e in got] == [b"51\n", b"54\n", b"57\n"]
    got = asyncio.run(run(streams={"stdout"}, tail=2))
    assert [e.data for e in got] == [b"58\n", b"59\n"]


def test_parse_time_forms():
    assert parse_time("2026-11-28T00:03:33Z") == 1795824213 * 10**9
    assert parse_time("2026-11-28T00:03:33.5Z") == 1795824213 * 10**9 + 500_000_000
    assert parse_time("1970-01-01T00:00:00.000000001Z") == 1
    for bad in ("2026-13-28T00:03:33Z", "2026-11-28T24:00:00Z", "2026-11-28 00:03:33", "x"):
        with pytest.raises(ValueError):
            parse_time(bad)


def _container(**cfg):
    return {"Id": "a" * 64, "Path": "sh", "Args": ["-c", "true"],
            "Config": {"Env": ["FOO=1"], **cfg}, "HostConfig": {}}


def test_spec_defaults():
    s = spec.build(_container(), {})
    assert s["hostname"] == "a" * 12
    assert s["process"]["args"] == ["sh", "-c", "true"]
    assert s["process"]["env"][0] == "HOSTNAME=" + "a" * 12
    assert f"PATH={spec.DEFAULT_PATH}" in s["process"]["env"] and "FOO=1" in s["process"]["env"]
    assert s["process"]["cwd"] == "/"
    assert s["process"]["user"] == {"uid": 0, "gid": 0}
    assert sorted(s["process"]["capabilities"]["bounding"]) == sorted(spec.DEFAULT_CAPS)
    assert {n["type"] for n in s["linux"]["namespaces"]} >= {"pid", "ipc", "uts", "mount",
                                                             "network"}
    dests = {m["destination"]: m for m in s["mounts"]}
    for d in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"):
        assert d in dests
    assert "ro" in dests["/sys"]["options"] and "ro" in dests["/sys/fs/cgroup"]["options"]
    assert "/proc/kcore" in s["linux"]["maskedPaths"]
    assert "/proc/sys" in s["linux"]["readonlyPaths"]


def test_spec_validates_against_oci_schema():
    import pathlib

    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    import referencing.jsonschema  # noqa: F401
    d = pathlib.Path("/work/shared/specs/oci-runtime-spec")
    if not (d / "config-schema.json").exists():
        pytest.skip("OCI runtime schemas not available")
    s = spec.build(_container(), {})
    s["root"]["path"] = "/tmp/rootfs"
    reg = referencing.Registry(retrieve=lambda uri: referencing.Resource.from_contents(
        json.loads((d / uri.rsplit("/", 1)[-1]).read_text()),
        default_specification=referencing.jsonschema.DRAFT4))
    schema = json.loads((d / "config-schema.json").read_text())
    jsonschema.Draft4Validator(schema, registry=reg).validate(s)


def test_caps_and_user(tmp_path):
    caps = spec.capabilities(["NET_ADMIN"], ["chown"], False)
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps
    assert spec.capabilities(None, ["ALL"], False) == []
    with pytest.raises(errors.InvalidArgument):
        spec.capabilities(["BOGUS"], None, False)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nbob:x:1000:1001::/:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    dirs = [str(tmp_path)]
    assert spec.resolve_user("bob", dirs) == {"uid": 1000, "gid": 1001}
    assert spec.resolve_user("bob:staff", dirs) == {"uid": 1000, "gid": 50}
    assert spec.resolve_user("1000", dirs) == {"uid": 1000, "gid": 1001}
    assert spec.resolve_user("7:8", dirs) == {"uid": 7, "gid": 8}
    with pytest.raises(errors.InvalidArgument):
        spec.resolve_user("nobody-here", dirs)


def test_merge_config_like_docker():
    image = {"Cmd": ["sh"], "Entrypoint": None, "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/w"}
    m = _merge_config({"Cmd": None, "Env": ["A=2"]}, image)
    assert m["Cmd"] == ["sh"] and m["Env"] == ["PATH=/bin", "A=2"] and m["WorkingDir"] == "/w"
    m = _merge_config({"Entrypoint": ["echo"]}, {"Cmd": ["sh"], "Entrypoint": ["x"]})
    assert m["Entrypoint"] == ["echo"] and not m.get("Cmd")
    m = _merge_config({"Cmd": ["ls"]}, {"Cmd": ["sh"], "Entrypoint": ["/init"]})
    assert m["Entrypoint"] == ["/init"] and m["Cmd"] == ["ls"]


def test_signals():
    assert parse_signal("KILL") == signal.SIGKILL
    assert parse_signal("SIGTERM") == signal.SIGTERM
    assert parse_signal("15") == 15
    assert parse_signal(None) == signal.SIGKILL
    with pytest.raises(errors.InvalidArgument):
        parse_signal("NOPE")


def test_names():
    name = random_name(set())
    assert "_" in name

def test_parse_host():
    assert parse_host("unix:///tmp/x.sock", "/d") == ("unix", "/tmp/x.sock")
    assert parse_host("unix://", "/d") == ("unix", "/d")
    assert parse_host("tcp://127.0.0.1:2375", "/d") == ("tcp", "127.0.0.1:2375")
    with pytest.raises(errors.ConfigError):
        parse_host("http://x", "/d")
