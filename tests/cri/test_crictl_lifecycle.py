"""crictl against pallet-containerd, end to end: info, version, images,
inspecti, runp, pods, inspectp, create, start, ps, inspect, logs, exec -s,
stats, statsp, update, stop, rm, stopp, rmp."""
from __future__ import annotations

import json
import os
import time

import pytest

from cri_helpers import BUSYBOX, needs_crictl, needs_root

pytestmark = needs_root + [needs_crictl]


def test_info_and_version(cri):
    info = json.loads(cri.crictl("info").stdout)
    conds = {c["type"]: c["status"] for c in info["status"]["conditions"]}
    assert conds == {"RuntimeReady": True, "NetworkReady": True}
    assert info["cniconfig"]["Networks"][0]["name"] == cri.net.name
    out = cri.crictl("version").stdout
    assert "RuntimeName:  pallet" in out and "RuntimeApiVersion:  v1" in out


def test_images_and_inspecti(cri):
    out = cri.crictl("images").stdout
    assert "docker.io/library/busybox" in out and "latest" in out
    status = json.loads(cri.crictl("inspecti", "busybox").stdout)
    assert status["status"]["repoTags"] == [BUSYBOX]
    assert status["status"]["id"].startswith("sha256:")
    assert status["info"]["imageSpec"]["config"]["Cmd"] == ["sh"]
    ids = cri.crictl("images", "-q").stdout.split()
    assert status["status"]["id"] in ids


def test_pod_and_container_lifecycle(cri):
    pod = cri.run_pod("life")
    pods = cri.crictl("pods").stdout
    assert pod[:13] in pods and "Ready" in pods
    info = cri.inspectp(pod)
    assert info["status"]["state"] == "SANDBOX_READY"
    assert info["status"]["network"]["ip"]
    cid = cri.run_container(pod, "life", "c", ["sh", "-c", "echo out; echo err >&2; sleep 1000"])
    assert cid in cri.crictl("ps", "-q").stdout
    st = cri.wait_state(cid, "CONTAINER_RUNNING")
    assert st["status"]["image"]["image"] == BUSYBOX
    assert st["status"]["imageId"].startswith("sha256:")
    deadline = time.monotonic() + 10
    while "err" not in cri.crictl("logs", cid).stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    logs = cri.crictl("logs", cid)
    assert logs.stdout == "out\n" and logs.stderr == "err\n"
    with open(st["status"]["logPath"]) as f:
        lines = f.read().splitlines()
    # two streams, copied apart (as containerd's shim copies them): either order
    assert sorted(line.split(" ", 1)[1] for line in lines) == ["stderr F err", "stdout F out"]
    r = cri.crictl("exec", "-s", cid, "sh", "-c", "echo hi; hostname")
    assert r.stdout.split() == ["hi", "life"]
    stats = json.loads(cri.crictl("stats", "-o", "json", cid).stdout)
    assert stats["stats"][0]["attributes"]["id"] == cid
    assert int(stats["stats"][0]["memory"]["workingSetBytes"]["value"]) > 0
    statsp = json.loads(cri.crictl("statsp", "-o", "json", pod).stdout)
    assert statsp["stats"][0]["attributes"]["id"] == pod
    cri.crictl("update", "--memory", str(64 << 20), "--cpu-share", "512", cid)
    res = cri.inspect(cid)["status"]["resources"]["linux"]
    assert int(res["memoryLimitInBytes"]) == 64 << 20 and int(res["cpuShares"]) == 512
    cri.crictl("stop", "-t", "1", cid)
    st = cri.inspect(cid)["status"]
    # sh is not PID 1 in the pod's shared PID namespace: SIGTERM ends it
    assert st["state"] == "CONTAINER_EXITED" and st["exitCode"] == 143
    assert st["reason"] == "Error"
    cri.crictl("rm", cid)
    assert cid not in cri.crictl("ps", "-a", "-q").stdout
    cri.crictl("stopp", pod)
    assert cri.inspectp(pod)["status"]["state"] == "SANDBOX_NOTREADY"
    cri.crictl("stopp", pod)    # idempotent
    cri.crictl("rmp", pod)
    assert pod not in cri.crictl("pods", "-q").stdout


def test_exit_codes_and_reasons(cri):
    pod = cri.run_pod("codes")
    ok = cri.run_container(pod, "codes", "ok", ["true"])
    bad = cri.run_container(pod, "codes", "bad", ["sh", "-c", "exit 3"])
    a = cri.wait_state(ok, "CONTAINER_EXITED")["status"]
    b = cri.wait_state(bad, "CONTAINER_EXITED")["status"]
    assert (a["exitCode"], a["reason"]) == (0, "Completed")
    assert (b["exitCode"], b["reason"]) == (3, "Error")
    assert int(b["finishedAt"] and 1) and b["startedAt"] <= b["finishedAt"]
    cri.crictl("rmp", "-f", pod)
