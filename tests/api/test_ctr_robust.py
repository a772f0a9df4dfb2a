"""Odd input on the container, exec, volume, event and system endpoints gets
docker's JSON error with a 4xx status: never a 500, never a traceback."""
from __future__ import annotations

import json

import pytest

from ctr_helpers import out

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def cid(d):
    c = out(d.docker("run", "-d", "busybox", "sleep", "3000"))
    yield c
    d.docker("rm", "-f", c, check=False)


def _cases(cid: str):
    c = f"/v1.43/containers/{cid}"
    raw = lambda data: {"raw": data}  # noqa: E731
    return [
        ("POST", f"{c}/update", ["x"]), ("POST", f"{c}/update", {"Memory": "big"}),
        ("POST", f"{c}/update", {"CpuShares": -5}), ("POST", f"{c}/update", raw(b"{no")),
        ("POST", f"{c}/update", {"RestartPolicy": {"Name": "bogus"}}),
        ("POST", f"{c}/update", {"BlkioWeight": 5}),
        ("POST", f"{c}/rename?name=bad%20name", None), ("POST", f"{c}/rename?name=", None),
        ("POST", f"{c}/kill?signal=999", None), ("POST", f"{c}/stop?t=abc", None),
        ("POST", f"{c}/stop?signal=NOPE", None), ("POST", f"{c}/restart?t=x", None),
        ("POST", f"{c}/resize?h=x&w=1", None), ("POST", f"{c}/resize?h=1&w=99999999", None),
        ("GET", f"{c}/top?ps_args=%22unclosed", None), ("GET", f"{c}/top?ps_args=--bogus-opt",
                                                          None),
        ("GET", f"{c}/stats?stream=1&one-shot=1", None),
        ("GET", f"{c}/logs?stdout=1&tail=x", None), ("GET", f"{c}/logs?stdout=1&since=x", None),
        ("GET", f"{c}/logs", None),
        ("POST", f"{c}/attach?stream=1&stdout=1&detachKeys=ctrl-%3F%3F", None),
        ("GET", f"{c}/archive?path=", None), ("HEAD", f"{c}/archive?path=/nope/x", None),
        ("GET", f"{c}/archive?path=/etc/passwd%00x", None),
        ("PUT", f"{c}/archive?path=/tmp", raw(b"not a tar at all" * 40)),
        ("PUT", f"{c}/archive?path=/nope", raw(b"")),
        ("POST", f"{c}/wait?condition=x", None),
        ("GET", "/v1.43/containers/json?filters=%7Bbad", None),
        ("GET", "/v1.43/containers/json?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D", None),
        ("GET", "/v1.43/containers/json?filters=%7B%22name%22%3A%5B%22(%22%5D%7D", None),
        ("GET", "/v1.43/containers/json?filters=%7B%22before%22%3A%5B%22nope%22%5D%7D", None),
        ("POST", "/v1.43/containers/prune?filters=%7B%22until%22%3A%5B%22soon%22%5D%7D", None),
        ("POST", f"{c}/exec", {"Cmd": "x", "Env": "notalist"}),
        ("POST", f"{c}/exec", {"Cmd": ["true"], "User": 5}),
        ("POST", f"{c}/exec", {"Cmd": ["true"], "DetachKeys": "ctrl-??"}),
        ("POST", f"{c}/exec", raw(b"[1,2")),
        ("POST", "/v1.43/exec/nope/start", {"Detach": True}),
        ("POST", "/v1.43/exec/nope/resize?h=1&w=1", None),
        ("POST", "/v1.43/volumes/create", {"Name": 5}),
        ("POST", "/v1.43/volumes/create", {"Name": "a", "Labels": ["x"]}),
        ("POST", "/v1.43/volumes/create", {"Name": "a", "DriverOpts": {"bogus": "1"}}),
        ("POST", "/v1.43/volumes/create", {"Name": "a", "Driver": "nfs-plugin"}),
        ("POST", "/v1.43/volumes/create", raw(b"nope")),
        ("GET", "/v1.43/volumes?filters=%7B%22dangling%22%3A%5B%22maybe%22%5D%7D", None),
        ("POST", "/v1.43/volumes/prune?filters=%7B%22x%22%3A%5B%221%22%5D%7D", None),
        ("DELETE", "/v1.43/volumes/nope", None), ("PUT", "/v1.43/volumes/nope", {}),
        ("GET", "/v1.43/events?filters=%7B%22type%22%3A%5B%22bogus%22%5D%7D", None),
        ("GET", "/v1.43/events?since=yesterday", None),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "Mounts": [{"Type": "volume", "Target": "/x", "Source": "bad/name"}]}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "Mounts": [{"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"SizeBytes": -1}}]}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "Binds": ["a:b:c:d"]}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "Binds": ["/x:/"]}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "Binds": ["/a:/x", "/b:/x"]}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "VolumesFrom": ["pa-nope-container"]}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "Devices": [{"PathOnHost": "/nope-dev"}]}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "LogConfig": {"Type": "json-file", "Config": {"nope": "lots"}}}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "NanoCpus": 10 ** 15}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "SecurityOpt": ["seccomp={\"defaultAction\": 5}"]}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "Ulimits": [{"Name": "nofile", "Soft": "x", "Hard": 1}]}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "Tmpfs": {"/x": 5}}}),
        ("POST", "/v1.43/containers/create", {"Image": "busybox", "HostConfig": {
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}}}),
    ]


def test_no_500(d, cid):
    bad = []
    for method, path, body in _cases(cid):
        kw = {"raw": body["raw"]} if isinstance(body, dict) and "raw" in body else \
            {"body": body}
        status, headers, data = d.api(method, path, **kw)
        if not 400 <= status < 500:
            bad.append((method, path, body, status, data[:300]))
            continue
        if method != "HEAD":
            assert headers.get("Content-Type") == "application/json", (method, path)
            msg = json.loads(data)["message"]
            assert msg and "Traceback" not in msg, (method, path, msg)
    assert not bad, "\n".join(repr(b[:4]) for b in bad)
    assert "Traceback" not in d.log_text()
    # and the container is still fine
    assert d.docker("exec", cid, "true").returncode == 0
