"""``docker events`` (live, since/until, filters), ``/system/df`` and
``/info``'s figures, through the docker CLI, raw HTTP and docker-py."""
from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from ctr_helpers import out, wait_for
from engines import DOCKER_CLI

pytestmark = pytest.mark.root


def _lines(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]


def test_stream_shows_start_and_die(d):
    proc = subprocess.Popen([DOCKER_CLI, "events", "--format", "{{json .}}", "--filter",
                             "type=container"], env=d.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    got: list[dict] = []

    def reader():
        for line in proc.stdout:
            got.append(json.loads(line))
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        wait_for(lambda: json.loads(d.api("GET", "/v1.43/info")[2])["NEventsListener"] >= 1)
        cid = out(d.docker("run", "-d", "--label", "pa=ev", "busybox", "sh", "-c", "exit 4"))
        d.docker("wait", cid)
        d.docker("rm", cid)
        wait_for(lambda: [e["Action"] for e in got if e["id"] == cid][-1:] == ["destroy"])
    finally:
        proc.terminate()
        proc.wait(10)
    mine = [e for e in got if e["Actor"]["ID"] == cid]
    assert [e["Action"] for e in mine] == ["create", "start", "die", "destroy"]
    die = mine[2]
    assert die["Type"] == "container" and die["scope"] == "local"
    assert die["Actor"]["Attributes"]["exitCode"] == "4"
    assert die["Actor"]["Attributes"]["pa"] == "ev"
    assert die["Actor"]["Attributes"]["image"] == "busybox"
    assert die["timeNano"] // 1_000_000_000 == die["time"]


def test_since_until_and_filters(d):
    t0 = time.time()
    d.docker("volume", "create", "pa-ev-vol")
    cid = out(d.docker("run", "-d", "--name", "pa-ev-c", "busybox", "sleep", "300"))
    d.docker("pause", cid)
    d.docker("unpause", cid)
    d.docker("exec", cid, "true")
    d.docker("rename", cid, "pa-ev-c2")
    d.docker("kill", cid)
    d.docker("rm", cid)
    d.docker("volume", "rm", "pa-ev-vol")
    t1 = time.time() + 0.5
    r = d.docker("events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}", "--format",
                 "{{json .}}")
    evs = _lines(r.stdout.decode())
    actions = [e["Action"] for e in evs if e["Actor"]["ID"] == cid]
    for a in ("create", "start", "pause", "unpause", "exec_create: true", "exec_start: true",
              "exec_die", "rename", "kill", "die", "destroy"):
        assert a in actions, (a, actions)
    rename = next(e for e in evs if e["Action"] == "rename")
    assert rename["Actor"]["Attributes"]["oldName"] == "/pa-ev-c"
    vol = [e["Action"] for e in evs if e["Type"] == "volume"]
    assert "create" in vol and "destroy" in vol
    net = [(e["Action"], e["Actor"]["Attributes"]["container"]) for e in evs
           if e["Type"] == "network"]
    assert ("connect", cid) in net and ("disconnect", cid) in net
    # filters: by event, by container name, by type
    r = d.docker("events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}", "--filter",
                 "event=pause", "--format", "{{json .}}")
    assert [e["Action"] for e in _lines(r.stdout.decode())] == ["pause"]
    r = d.docker("events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}", "--filter",
                 "type=volume", "--filter", "event=destroy", "--format", "{{json .}}")
    assert [(e["Type"], e["Actor"]["ID"]) for e in _lines(r.stdout.decode())] == [
        ("volume", "pa-ev-vol")]
    r = d.docker("events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}", "--filter",
                 "event=exec_start", "--format", "{{json .}}")
    assert len(_lines(r.stdout.decode())) == 1
    r = d.docker("events", "--filter", "bogus=1", "--until", "1", check=False)
    assert r.returncode != 0 and b"invalid filter" in r.stderr


def test_image_and_dockerpy_events(d, busybox_tar):
    t0 = int(time.time()) - 1
    d.docker("load", "-i", busybox_tar)
    client = d.client()
    try:
        evs = list(client.events(since=t0, until=int(time.time()) + 1, decode=True,
                                 filters={"type": "image"}))
    finally:
        client.close()
    assert any(e["Action"] == "load" and e["Type"] == "image" for e in evs), evs


def test_system_df_and_info(d):
    cid = out(d.docker("run", "-d", "-v", "pa-df:/data", "busybox", "sh", "-c",
                       "head -c 5000 /dev/zero > /data/f; head -c 3000 /dev/zero > /rw; "
                       "sleep 300"))
    wait_for(lambda: d.docker("exec", cid, "test", "-s", "/rw", check=False).returncode == 0)
    df = json.loads(d.api("GET", "/v1.43/system/df")[2])
    assert df["LayersSize"] > 0 and df["Images"][0]["Containers"] >= 1
    c = next(x for x in df["Containers"] if x["Id"] == cid)
    assert c["SizeRw"] >= 3000 and c["SizeRootFs"] > c["SizeRw"]
    v = next(x for x in df["Volumes"] if x["Name"] == "pa-df")
    assert v["UsageData"] == {"Size": 5000, "RefCount": 1}
    r = d.docker("system", "df", "-v")
    assert b"pa-df" in r.stdout
    info = json.loads(d.api("GET", "/v1.43/info")[2])
    assert info["ContainersRunning"] >= 1 and info["Images"] >= 1
    assert info["Plugins"]["Volume"] == ["local"] and "json-file" in info["Plugins"]["Log"]
    assert any(p.startswith("api_rest ") for p in info["Plugins"]["Pallet"])
    assert info["LiveRestoreEnabled"] is False
    d.docker("rm", "-fv", cid)
    d.docker("volume", "rm", "pa-df")
