"""Bad input gets docker's JSON error with a 4xx (501 for what pallet lacks),
never a 500 or a traceback."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.root


def _err(resp):
    status, headers, body = resp
    assert headers.get("Content-Type") == "application/json", (status, headers, body)
    return status, json.loads(body)["message"]


def test_ping_headers(palletd):
    for method in ("GET", "HEAD"):
        status, headers, body = palletd.api(method, "/_ping")
        assert status == 200
        assert headers["API-Version"] == "1.43"
        assert headers["Ostype"] == "linux"
        assert "Docker-Experimental" in headers and "Builder-Version" in headers
        assert body == (b"OK" if method == "GET" else b"")


def test_versioned_and_unversioned_paths(palletd):
    for path in ("/version", "/v1.43/version", "/v1.24/version", "/v1.41/containers/json"):
        assert palletd.api("GET", path)[0] == 200
    status, msg = _err(palletd.api("GET", "/v1.99/version"))
    assert status == 400 and "too new" in msg
    status, msg = _err(palletd.api("GET", "/v1.12/version"))
    assert status == 400 and "too old" in msg
    # the version is split off before routing: what follows it routes as unversioned
    status, msg = _err(palletd.api("GET", "/v1.43/pa-nowhere"))
    assert status == 404 and msg == "page not found"
    status, msg = _err(palletd.api("POST", "/v1.43/version"))
    assert status == 405
    for path in ("/v1.43/images/pa-no%2Fsuch:1/json", "/v1.43/images/localhost:1/pa/no:1/json"):
        status, msg = _err(palletd.api("GET", path))
        assert status == 404 and "No such image" in msg, (path, msg)


def test_bad_json(palletd):
    status, msg = _err(palletd.api("POST", "/containers/create", raw=b"{not json"))
    assert status == 400
    status, msg = _err(palletd.api("POST", "/containers/create", raw=b"[1, 2]"))
    assert status == 400
    status, msg = _err(palletd.api("POST", "/containers/create", {"Image": 5}))
    assert status == 400
    status, msg = _err(palletd.api("POST", "/containers/create",
                                   {"Image": "busybox", "Cmd": [1, 2]}))
    assert status == 400
    status, msg = _err(palletd.api("POST", "/containers/create", {}))
    assert status == 400


def test_unknown_image_and_container(palletd):
    status, msg = _err(palletd.api("POST", "/containers/create", {"Image": "pa-nope:1"}))
    assert status == 404 and "No such image" in msg
    status, msg = _err(palletd.api("POST", "/containers/create", {"Image": "UPPER"}))
    assert status == 400
    for method, path in (("GET", "/containers/pa-nope/json"), ("POST", "/containers/pa-nope/start"),
                         ("POST", "/containers/pa-nope/stop"), ("POST", "/containers/pa-nope/kill"),
                         ("POST", "/containers/pa-nope/wait"), ("DELETE", "/containers/pa-nope"),
                         ("GET", "/containers/pa-nope/logs?stdout=1"),
                         ("POST", "/containers/pa-nope/attach?stream=1&stdout=1"),
                         ("GET", "/images/pa-nope/json"), ("DELETE", "/images/pa-nope")):
        status, msg = _err(palletd.api(method, path))
        assert status == 404, (method, path, status, msg)


def test_unknown_and_unimplemented_paths(palletd):
    status, msg = _err(palletd.api("GET", "/pa-nowhere"))
    assert status == 404
    status, msg = _err(palletd.api("POST", "/images/create?fromImage=busybox&tag=latest"))
    assert status in (501, 503) and msg  # no registry to pull from here
    status, msg = _err(palletd.api("POST", "/swarm/init"))
    assert status == 501, status
    # what a dockerd outside any swarm answers (tests/dockerd compares them)
    status, msg = _err(palletd.api("GET", "/services"))
    assert status == 503 and "not a swarm manager" in msg
    # served by the builder role and the engine's commit: their own errors
    assert _err(palletd.api("POST", "/build")) == (
        400, "Cannot locate specified Dockerfile: Dockerfile")
    assert _err(palletd.api("POST", "/commit")) == (404, "No such container: ")
    status, msg = _err(palletd.api("DELETE", "/_ping"))
    assert status == 405


def test_bad_parameters(palletd):
    cid = json.loads(palletd.api("POST", "/containers/create",
                                 {"Image": "busybox", "Cmd": ["true"]})[2])["Id"]
    try:
        assert _err(palletd.api("POST", f"/containers/{cid}/kill?signal=NOPE"))[0] == 400
        assert _err(palletd.api("POST", f"/containers/{cid}/kill"))[0] == 409  # not running
        assert _err(palletd.api("POST", f"/containers/{cid}/wait?condition=bogus"))[0] == 400
        assert _err(palletd.api("GET", f"/containers/{cid}/logs"))[0] == 400
        assert _err(palletd.api("GET", f"/containers/{cid}/logs?stdout=1&tail=x"))[0] == 400
        assert _err(palletd.api("GET", "/containers/json?filters=notjson"))[0] == 400
        assert _err(palletd.api("GET", '/containers/json?filters={"bogus":["x"]}'))[0] == 400
        assert _err(palletd.api("POST", "/containers/create?name=bad/name",
                                {"Image": "busybox", "Cmd": ["true"]}))[0] == 400
        status, _, _ = palletd.api("POST", f"/containers/{cid}/stop")
        assert status == 304
    finally:
        assert palletd.api("DELETE", f"/containers/{cid}")[0] == 204


def test_load_garbage(palletd):
    """As dockerd: the answer starts, the failure is the stream's errorDetail."""
    import json

    for raw, why in ((b"this is not a tarball", "unexpected EOF"),
                     (b"", "empty export - not a tar archive")):
        status, _, body = palletd.api("POST", "/images/load", raw=raw,
                                      headers={"Content-Type": "application/x-tar"})
        last = json.loads(body.splitlines()[-1])
        assert status == 200 and why in last["errorDetail"]["message"]


@pytest.mark.parametrize("body, status", [
    ({"Image": "busybox", "Env": "x"}, 400),
    ({"Image": "busybox", "Env": [1]}, 400),
    ({"Image": "busybox", "Labels": {"a": 1}}, 400),
    ({"Image": "busybox", "WorkingDir": "relative"}, 400),
    ({"Image": "busybox", "StopTimeout": "x"}, 400),
    ({"Image": "busybox", "StopSignal": "NOPE"}, 400),
    ({"Image": "busybox", "Hostname": "a" * 100}, 400),
    ({"Image": "busybox", "HostConfig": "x"}, 400),
    ({"Image": "busybox", "HostConfig": {"Memory": "x"}}, 400),
    ({"Image": "busybox", "HostConfig": {"ShmSize": -1}}, 400),
    ({"Image": "busybox", "HostConfig": {"CapAdd": ["NOPE"]}}, 400),
    ({"Image": "busybox", "HostConfig": {"Sysctls": {"kernel.hostname": "x"}}}, 400),
    ({"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": "x"}}}, 400),
    ({"Image": "busybox", "HostConfig": {"PortBindings": {"x/tcp": []}}}, 400),
    ({"Image": "busybox", "HostConfig": {"LogConfig": {"Type": "syslogx"}}}, 400),
    ({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, 400),
    ({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "always"},
                                         "AutoRemove": True}}, 400),
    ({"Image": "busybox", "HostConfig": {"Binds": ["/x:/y:bogus"]}}, 400),
    ({"Image": "busybox", "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/pa-no",
                                                     "Target": "/x"}]}}, 400),
    ({"Image": "busybox", "HostConfig": {"Memory": 1024}}, 400),
    ({"Image": "busybox", "HostConfig": {"SecurityOpt": ["bogus=1"]}}, 400),
    ({"Image": "busybox", "HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 2,
                                                      "Hard": 1}]}}, 400),
    ({"Image": "busybox", "HostConfig": {"Tmpfs": {"relative": ""}}}, 400),
    ({"Image": "busybox", "Volumes": {"relative": {}}}, 400),
    ({"Image": "busybox", "HostConfig": {"CpuPeriod": 10}}, 400),
    ({"Image": "busybox@sha256:abc"}, 400),
])
def test_bad_create_bodies(palletd, body, status):
    got, msg = _err(palletd.api("POST", "/containers/create", body))
    assert got == status, msg


def test_missing_command_is_400_with_127(palletd):
    cid = json.loads(palletd.api("POST", "/containers/create",
                                 {"Image": "busybox", "Cmd": ["pa-missing"]})[2])["Id"]
    try:
        status, msg = _err(palletd.api("POST", f"/containers/{cid}/start"))
        assert status == 400 and "pa-missing" in msg
        state = json.loads(palletd.api("GET", f"/containers/{cid}/json")[2])["State"]
        assert state["ExitCode"] == 127 and state["Status"] == "exited"
    finally:
        palletd.api("DELETE", f"/containers/{cid}")


def test_no_traceback_in_log(palletd):
    """Last in the module: nothing above made palletd log a traceback."""
    assert "Traceback" not in palletd.log_text()
