"""What pallet does not take part in, answered as a dockerd outside any swarm
answers it: the swarm, service, node, task, secret and config endpoints,
managed plugins, and the load of something that is no image archive; request
bodies nested too deep get a 400.  Each request goes to palletd and to
Debian's dockerd 20.10 and the answers (status, message) must agree."""
from __future__ import annotations

import json
import os

import pytest

from dockerd_helpers import message

#: (method, path, body) that a non-swarm dockerd answers without side effects
SAME = [
    ("GET", "/v1.41/swarm", None),
    ("POST", "/v1.41/swarm/leave", None),
    ("POST", "/v1.41/swarm/leave?force=1", None),
    ("GET", "/v1.41/swarm/unlockkey", None),
    ("POST", "/v1.41/swarm/unlock", {"UnlockKey": "x"}),
    ("POST", "/v1.41/swarm/update?version=1", {}),
    ("GET", "/v1.41/services", None),
    ("GET", "/v1.41/services/abc", None),
    ("POST", "/v1.41/services/create", {"Name": "x"}),
    ("DELETE", "/v1.41/services/abc", None),
    ("POST", "/v1.41/services/abc/update?version=1", {}),
    ("GET", "/v1.41/services/abc/logs?stdout=1", None),
    ("GET", "/v1.41/nodes", None),
    ("GET", "/v1.41/nodes/abc", None),
    ("DELETE", "/v1.41/nodes/abc", None),
    ("POST", "/v1.41/nodes/abc/update?version=1", {}),
    ("GET", "/v1.41/tasks", None),
    ("GET", "/v1.41/tasks/abc", None),
    ("GET", "/v1.41/tasks/abc/logs?stdout=1", None),
    ("GET", "/v1.41/secrets", None),
    ("GET", "/v1.41/secrets/abc", None),
    ("POST", "/v1.41/secrets/create", {"Name": "x", "Data": "eA=="}),
    ("DELETE", "/v1.41/secrets/abc", None),
    ("POST", "/v1.41/secrets/abc/update?version=1", {}),
    ("GET", "/v1.41/configs", None),
    ("GET", "/v1.41/configs/abc", None),
    ("POST", "/v1.41/configs/create", {"Name": "x", "Data": "eA=="}),
    ("DELETE", "/v1.41/configs/abc", None),
    ("POST", "/v1.41/configs/abc/update?version=1", {}),
    ("GET", "/v1.41/plugins", None),
    ("GET", '/v1.41/plugins?filters={"enabled":["true"]}', None),
    ("GET", "/v1.41/plugins/abc/json", None),
    ("DELETE", "/v1.41/plugins/abc", None),
    ("POST", "/v1.41/plugins/abc/disable", None),
    ("POST", "/v1.41/plugins/abc/set", []),
    ("POST", "/v1.41/plugins/abc/push", None),
    ("POST", "/v1.41/plugins/abc/upgrade?remote=localhost:1/abc", []),
    ("GET", "/v1.41/plugins/privileges?remote=abc", None),
    ("POST", "/v1.41/networks/create", None),  # the deep body below
]

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm '
               'join" to connect this node to swarm and try again.')


def _answer(engine, method, path, body):
    if body is None and path == "/v1.41/networks/create":
        return engine.api(method, path, raw=b"[" * 100000 + b"]" * 100000)
    return engine.api(method, path, body)


def _shape(status, body):
    if status >= 400:
        return status, message(body)
    return status, json.loads(body)


def test_swarm_plugins_answers_match_dockerd(palletd, dockerd):
    for method, path, body in SAME:
        ours = _shape(*_answer(palletd, method, path, body)[::2])
        theirs = _shape(*_answer(dockerd, method, path, body)[::2])
        assert ours == theirs, (method, path)


def test_swarm_answers_without_dockerd(palletd):
    """The answers themselves (where no dockerd runs)."""
    status, _, body = palletd.api("GET", "/v1.41/swarm")
    assert (status, message(body)) == (503, NOT_MANAGER)
    status, _, body = palletd.api("POST", "/v1.41/swarm/leave?force=1")
    assert (status, message(body)) == (503, "This node is not part of a swarm")
    assert palletd.api("GET", "/v1.43/plugins")[::2] == (200, b"[]")
    status, _, body = palletd.api("POST", "/v1.41/swarm/init", {"ListenAddr": "0.0.0.0:2377"})
    assert status == 501 and "swarm" in message(body)


def test_clients_go_on(palletd):
    """docker-py's and the CLI's views of it: no swarm, no plugin, no service."""
    import docker

    client = palletd.client()
    try:
        assert client.swarm.leave(force=True)  # "not part of a swarm" is fine with force
        with pytest.raises(docker.errors.APIError) as e:
            client.swarm.leave()
        assert e.value.response.status_code == 503
        assert client.info()["Swarm"]["LocalNodeState"] == "inactive"
        assert client.plugins.list() == []
        with pytest.raises(docker.errors.APIError) as e:
            client.services.list()
        assert e.value.response.status_code == 503
    finally:
        client.close()
    r = palletd.docker("plugin", "ls")
    assert r.stdout.decode().split() == ["ID", "NAME", "DESCRIPTION", "ENABLED"]
    r = palletd.docker("service", "ls", check=False)
    assert r.returncode == 1 and NOT_MANAGER.encode() in r.stderr
    r = palletd.docker("secret", "ls", check=False)
    assert r.returncode == 1 and NOT_MANAGER.encode() in r.stderr


def test_deep_body_is_a_400(palletd):
    deep = b'{"Image":"busybox","Labels":' + b"[" * 100000 + b"]" * 100000 + b"}"
    status, headers, body = palletd.api("POST", "/v1.43/containers/create", raw=deep)
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert message(body) == "invalid character '[' exceeded max depth"
    status, _, body = palletd.api("GET", "/v1.43/containers/json?filters=" + "%5B" * 5000)
    assert status == 400


def _load(engine, data: bytes, tmp_path):
    path = tmp_path / "not-an-image"
    path.write_bytes(data)
    r = engine.docker("load", "-i", str(path), check=False)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("data", [b"this is not a tar archive\n" * 100, b"short garbage",
                                  b"\x1f\x8b" + os.urandom(2000)], ids=["text", "short", "gz"])
def test_load_of_no_archive_says_what_dockerd_says(palletd, dockerd, data, tmp_path):
    ours = _load(palletd, data, tmp_path)
    theirs = _load(dockerd, data, tmp_path)
    assert ours[0] == 1 and ours == theirs
