"""Health checks through the docker CLI, docker-py and compose, palletd beside
dockerd 20.10: the same containers on both, the same ``State.Health``,
``docker ps`` STATUS and filter, events; timeouts kill the probe; probes stop
while paused and go on after a palletd restart with live-restore."""
from __future__ import annotations

import json
import os
import time

import pytest

from ctr_helpers import derived_image, inspect, out, start_palletd, wait_for

HC = ["--health-interval", "1s", "--health-timeout", "5s"]


def health(engine, cid) -> dict:
    return inspect(engine, cid)["State"].get("Health") or {}


def _status(engine, cid):
    return health(engine, cid).get("Status")


def _shape(h: dict) -> dict:
    """What must agree between the engines (times differ)."""
    return {"Status": h.get("Status"), "FailingStreak": h.get("FailingStreak"),
            "Log": [(e["ExitCode"], e["Output"]) for e in h.get("Log") or ()][-1:]}


def _each(palletd, dockerd):
    return (("pallet", palletd), ("docker", dockerd))


def test_healthy_and_unhealthy_like_dockerd(palletd, dockerd):
    got = {}
    for name, e in _each(palletd, dockerd):
        # stdout and stderr are two streams whose order is not kept (in
        # dockerd either): the probe's pause puts them in one order
        ok = out(e.docker("run", "-d", *HC, "--health-cmd",
                          "echo ok; sleep 0.1; echo err >&2",
                          "busybox", "sleep", "300"))
        bad = out(e.docker("run", "-d", *HC, "--health-cmd", "echo no; exit 3",
                           "--health-retries", "2", "busybox", "sleep", "300"))
        assert _status(e, ok) == "starting"
        wait_for(lambda: _status(e, ok) == "healthy", 30)
        wait_for(lambda: _status(e, bad) == "unhealthy", 30)
        got[name] = (_shape(health(e, ok)), _shape(health(e, bad)))
        log = health(e, ok)["Log"]
        assert log[-1]["Start"] <= log[-1]["End"] and len(log) <= 5
        ps = out(e.docker("ps", "--format", "{{.ID}} {{.Status}}", "--no-trunc"))
        assert f"{ok} Up" in ps and "(healthy)" in ps.split(ok)[1].splitlines()[0]
        assert "(unhealthy)" in ps.split(bad)[1].splitlines()[0]
        ids = lambda h: out(e.docker("ps", "-q", "--no-trunc", "--filter",  # noqa: E731
                                     f"health={h}")).split()
        assert ids("healthy") == [ok] and ids("unhealthy") == [bad] and ids("starting") == []
        assert ok not in ids("none")
        r = e.docker("ps", "--filter", "health=sick", check=False)
        got[name] += (r.returncode, r.stderr.decode().strip())
        since = str(int(time.time()) - 120)
        ev = e.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                      "--filter", f"container={ok}", "--format", "{{.Action}}")
        assert "health_status: healthy" in out(ev).splitlines()
        e.docker("rm", "-f", ok, bad)
    assert got["pallet"] == got["docker"]
    assert got["pallet"][0]["Log"] == [(0, "ok\nerr\n")]
    assert got["pallet"][1]["Status"] == "unhealthy" and got["pallet"][1]["FailingStreak"] >= 2


def test_output_cut_like_dockerd(palletd, dockerd):
    outputs = {}
    for name, e in _each(palletd, dockerd):
        cid = out(e.docker("run", "-d", *HC, "--health-cmd",
                           "head -c 5000 /dev/zero | tr '\\0' x", "busybox", "sleep", "300"))
        wait_for(lambda: health(e, cid).get("Log"), 30)
        outputs[name] = health(e, cid)["Log"][0]["Output"]
        e.docker("rm", "-f", cid)
    assert outputs["pallet"] == outputs["docker"]
    assert outputs["pallet"] == "x" * 4096 + "..."


def test_timeout_kills_the_probe(palletd):
    cid = out(palletd.docker("run", "-d", "--health-cmd", "sleep 77", "--health-interval", "1s",
                             "--health-timeout", "300ms", "busybox", "sleep", "300"))
    try:
        entry = wait_for(lambda: (health(palletd, cid).get("Log") or [None])[0], 30)
        assert entry == dict(entry, ExitCode=-1,
                             Output="Health check exceeded timeout (300ms)")
        top = lambda: out(palletd.docker("top", cid))  # noqa: E731
        # the probe was killed, not left running (dockerd 20.10 leaves it)
        wait_for(lambda: "sleep 77" not in top(), 10)
    finally:
        palletd.docker("rm", "-f", cid)


def test_create_checks_like_dockerd(palletd, dockerd):
    bodies = [{"Interval": 10}, {"Timeout": 999}, {"StartPeriod": 5}, {"Retries": -1},
              {"Interval": 1_000_000, "Test": ["CMD", "true"]}]
    for hc in bodies:
        body = {"Image": "busybox", "Cmd": ["true"], "Healthcheck": hc}
        ours = palletd.api("POST", "/v1.41/containers/create", body)
        theirs = dockerd.api("POST", "/v1.41/containers/create", body)
        assert ours[0] == theirs[0], hc
        if ours[0] >= 400:
            assert json.loads(ours[2])["message"] == json.loads(theirs[2])["message"]
        else:
            for e, answer in ((palletd, ours), (dockerd, theirs)):
                e.docker("rm", json.loads(answer[2])["Id"])


def test_image_healthcheck_and_no_healthcheck(palletd, busybox_tar, tmp_path):
    """The image's HEALTHCHECK applies, ``--no-healthcheck`` turns it off (an
    OCI archive: dockerd 20.10 loads docker-save archives only)."""
    archive = derived_image(busybox_tar, str(tmp_path / "hc.tar"), "hcimage:latest", files={},
                            healthcheck={"Test": ["CMD-SHELL", "echo from-image"],
                                         "Interval": 1_000_000_000, "Retries": 1})
    e = palletd
    e.docker("load", "-i", archive)
    cid = out(e.docker("run", "-d", "hcimage", "sleep", "300"))
    assert inspect(e, cid)["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "echo from-image"]
    wait_for(lambda: _status(e, cid) == "healthy", 30)
    assert health(e, cid)["Log"][0]["Output"] == "from-image\n"
    # a create's own settings win field by field
    other = out(e.docker("run", "-d", "--health-cmd", "echo mine", "--health-retries", "4",
                         "hcimage", "sleep", "300"))
    hc = inspect(e, other)["Config"]["Healthcheck"]
    assert hc["Test"] == ["CMD-SHELL", "echo mine"] and hc["Retries"] == 4 and \
        hc["Interval"] == 1_000_000_000
    none = out(e.docker("run", "-d", "--no-healthcheck", "hcimage", "sleep", "300"))
    assert inspect(e, none)["Config"]["Healthcheck"]["Test"] == ["NONE"]
    assert not inspect(e, none)["State"].get("Health")
    e.docker("rm", "-f", cid, other, none)


def test_pause_stops_probes_and_docker_py_reads_health(palletd):
    client = palletd.client()
    try:
        c = client.containers.run("busybox", ["sleep", "300"], detach=True, healthcheck={
            "test": ["CMD", "true"], "interval": 500_000_000})
        wait_for(lambda: (client.containers.get(c.id).attrs["State"].get("Health") or {})
                 .get("Status") == "healthy", 30)
        c.pause()
        n = len(health(palletd, c.id)["Log"])
        first = health(palletd, c.id)["Log"][-1]["End"]
        time.sleep(2)
        assert health(palletd, c.id)["Log"][-1]["End"] == first and \
            len(health(palletd, c.id)["Log"]) == n
        c.unpause()
        wait_for(lambda: health(palletd, c.id)["Log"][-1]["End"] != first, 30)
        c.stop(timeout=1)
        h = health(palletd, c.id)
        time.sleep(1.2)
        assert health(palletd, c.id)["Log"] == h["Log"]
        c.remove()
    finally:
        client.close()


def test_health_survives_live_restore(busybox_tar):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = start_palletd(busybox_tar, "--live-restore")
    try:
        cid = out(d.docker("run", "-d", "--health-cmd", "true", "--health-interval", "500ms",
                           "busybox", "sleep", "300"))
        wait_for(lambda: _status(d, cid) == "healthy", 30)
        d.stop_daemon()
        d.start()
        last = health(d, cid)["Log"][-1]["End"]
        assert _status(d, cid) == "healthy"
        wait_for(lambda: health(d, cid)["Log"][-1]["End"] != last, 30)
    finally:
        d.cleanup()
