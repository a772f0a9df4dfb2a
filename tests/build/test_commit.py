"""``docker commit`` against palletd and dockerd 20.10: the same changes in
the same container give the same image (config, files, layers, history),
running (paused meanwhile) or stopped, with ``--change``s."""
from __future__ import annotations

import json
import time

from build_helpers import image_tree, inspect_image

SCRIPT = ("echo new > /new; echo more >> /etc/passwd; rm /bin/vi; rm -r /var/spool; "
          "mkdir -p /d/e && ln -s /new /d/e/link && chmod 700 /d; touch /etc/f")
CONFIG_KEYS = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes",
               "Labels", "StopSignal", "OnBuild")


def _commit(engine, running: bool, *changes: str) -> str:
    name = f"cm-{engine.name}-{int(running)}"
    cmd = ["sh", "-c", SCRIPT + ("; sleep 300" if running else "")]
    args = ["run", "--name", name, "--network", "none", "-e", "RUNENV=1", "-w", "/tmp",
            "-l", "lab=1"] + (["-d"] if running else []) + ["busybox", *cmd]
    engine.docker(*args)
    if running:
        time.sleep(1)
    flags = [x for c in changes for x in ("-c", c)]
    r = engine.docker("commit", *flags, "-m", "msg", "-a", "author", name, f"{name}:img",
                      check=False)
    assert r.returncode == 0, r.stderr.decode()
    if running:
        state = json.loads(engine.docker("inspect", name).stdout)[0]["State"]
        assert state["Running"] and not state["Paused"]
    engine.docker("rm", "-f", name)
    return f"{name}:img"


def _same(palletd, dockerd, running, *changes):
    p = _commit(palletd, running, *changes)
    d = _commit(dockerd, running, *changes)
    pi, di = inspect_image(palletd, p), inspect_image(dockerd, d)
    for key in CONFIG_KEYS:
        if key == "Env":  # (a container's Env is ordered differently from its create on)
            assert sorted(pi["Config"][key]) == sorted(di["Config"][key])
            continue
        assert pi["Config"].get(key) == di["Config"].get(key), key
    assert (pi["Comment"], pi["Author"]) == (di["Comment"], di["Author"]) == ("msg", "author")
    assert len(pi["RootFS"]["Layers"]) == len(di["RootFS"]["Layers"]) == 2
    assert image_tree(palletd, p) == image_tree(dockerd, d)
    ph = palletd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", p)
    dh = dockerd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", d)
    assert ph.stdout == dh.stdout


def test_commit_stopped_as_dockerd(palletd, dockerd):
    _same(palletd, dockerd, False)


def test_commit_running_with_changes_as_dockerd(palletd, dockerd):
    _same(palletd, dockerd, True, "ENV COMMITTED=yes", 'CMD ["cat", "/new"]', "EXPOSE 8080",
          "LABEL extra=1", "WORKDIR /d", "USER 1", "VOLUME /vol", "ONBUILD RUN true")


def test_commit_errors(palletd):
    r = palletd.docker("commit", "nosuchcontainer", check=False)
    assert r.returncode == 1 and "No such container: nosuchcontainer" in r.stderr.decode()
    palletd.docker("create", "--name", "cm-err", "busybox")
    try:
        r = palletd.docker("commit", "-c", "RUN true", "cm-err", check=False)
        assert "RUN is not a valid change command" in r.stderr.decode()
        # nothing changed: an empty layer
        r = palletd.docker("commit", "cm-err", "cm-empty")
        info = inspect_image(palletd, "cm-empty")
        assert len(info["RootFS"]["Layers"]) == 1
    finally:
        palletd.docker("rm", "-f", "cm-err")
