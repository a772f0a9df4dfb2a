"""Requests shaped by the API version the client asks for, palletd beside
dockerd 20.10 (API 1.41 at most), then what only 1.42 and 1.43 change,
on palletd alone (its highest version is 1.43, as dockerd 24's)."""
from __future__ import annotations

import json
import secrets

import pytest

pytestmark = pytest.mark.root


def _create(engine, version: str, body: dict) -> tuple[int, dict]:
    name = "pv-" + secrets.token_hex(4)
    status, _, data = engine.api("POST", f"/v{version}/containers/create?name={name}",
                                 dict({"Image": "busybox", "Cmd": ["true"]}, **body))
    doc = json.loads(data or b"{}")
    if status == 201:
        info = json.loads(engine.api("GET", f"/v{version}/containers/{name}/json")[2])
        engine.api("DELETE", f"/containers/{name}?force=1")
        return status, info
    return status, doc


def _host(engine, version, host: dict) -> dict:
    status, info = _create(engine, version, {"HostConfig": host})
    assert status == 201, info
    return info["HostConfig"]


@pytest.mark.parametrize("version", ["1.39", "1.40", "1.41"])
def test_defaults_older_clients_get_like_dockerd(palletd, dockerd, version):
    got = {}
    for e in (palletd, dockerd):
        h = _host(e, version, {"KernelMemoryTCP": 0})
        got[e is palletd] = (h["IpcMode"], h["CgroupnsMode"], h.get("AutoRemove"))
    assert got[True] == got[False]


def test_mount_option_mismatches_at_1_41_like_dockerd(palletd, dockerd, tmp_path):
    mount = {"Type": "bind", "Source": str(tmp_path), "Target": "/x",
             "VolumeOptions": {"NoCopy": True}}
    answers = [_create(e, "1.41", {"HostConfig": {"Mounts": [mount]}}) for e in (palletd, dockerd)]
    assert answers[0] == answers[1] == (400, {
        "message": 'invalid mount config for type "bind": field VolumeOptions must not be '
                   'specified'})


def test_two_networks_at_create_are_refused_like_dockerd(palletd, dockerd):
    body = {"NetworkingConfig": {"EndpointsConfig": {"bridge": {}, "none": {}}}}
    answers = []
    for e in (palletd, dockerd):
        status, doc = _create(e, "1.41", body)
        answers.append((status, doc.get("message", "").split(":")[0]))
    assert answers[0] == answers[1] == (400, "Container cannot be connected to network endpoints")


def test_what_1_42_and_1_43_change(palletd, tmp_path):
    bind = {"Type": "bind", "Source": str(tmp_path / "new"), "Target": "/x",
            "BindOptions": {"CreateMountpoint": True}}
    # CreateMountpoint is ignored before 1.42: the missing source is an error
    status, doc = _create(palletd, "1.41", {"HostConfig": {"Mounts": [bind]}})
    assert status == 400 and "bind source path does not exist" in doc["message"]
    status, info = _create(palletd, "1.42", {"HostConfig": {"Mounts": [bind]}})
    assert status == 201, info
    # from 1.42 a mismatched option is refused, with dockerd's words
    bad = {"Type": "tmpfs", "Target": "/t", "VolumeOptions": {"NoCopy": True}}
    status, doc = _create(palletd, "1.42", {"HostConfig": {"Mounts": [bad]}})
    assert (status, doc["message"]) == (
        400, 'VolumeOptions must not be specified on mount type "tmpfs"')
    # ConsoleSize is honoured from 1.42, Annotations taken from 1.43
    host = {"ConsoleSize": [30, 100], "Annotations": {"a": "b"}}
    h41, h42, h43 = (_host(palletd, v, dict(host)) for v in ("1.41", "1.42", "1.43"))
    assert (h41["ConsoleSize"], h42["ConsoleSize"]) == ([0, 0], [30, 100])
    assert (h41.get("Annotations"), h42.get("Annotations"), h43.get("Annotations")) == \
        (None, None, {"a": "b"})
