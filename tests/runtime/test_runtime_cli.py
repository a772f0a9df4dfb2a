"""pallet-runc: runc's command line, its output formats and its error lines."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from rt_helpers import new_id, pallet_runc, wait_reaping, wait_status

pytestmark = pytest.mark.root


@pytest.fixture
def root(state_root):
    yield state_root
    # whatever a test left behind: delete --force every container of the root
    listed = pallet_runc("list", "-q", root=state_root)
    for cid in listed.stdout.split():
        pallet_runc("delete", "--force", cid, root=state_root)


def _no_traceback(proc):
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


@pytest.mark.parametrize("cmd", [["state"], ["start"], ["kill"], ["delete"], ["pause"]])
def test_unknown_container(root, cmd):
    proc = pallet_runc(*cmd, "nope", root=root)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().split("\n")
    assert len(lines) == 1
    assert lines[0].startswith('time="') and lines[0].endswith('level=error msg="container does not exist"')
    _no_traceback(proc)


def test_delete_force_of_unknown_container_succeeds(root):
    assert pallet_runc("delete", "--force", "nope", root=root).returncode == 0


def test_json_log_file(root, tmp_path):
    log = tmp_path / "runc.log"
    proc = pallet_runc("--log", str(log), "--log-format", "json", "state", "nope", root=root)
    assert proc.returncode == 1
    assert proc.stderr == "container does not exist\n"
    entry = json.loads(log.read_text().strip())
    assert entry["level"] == "error" and entry["msg"] == "container does not exist" and entry["time"]


def test_usage_errors(root):
    proc = pallet_runc("create", root=root)
    assert proc.returncode == 1 and 'requires exactly 1 argument(s)' in proc.stderr
    proc = pallet_runc("frobnicate", root=root)
    assert proc.returncode == 3 and "No help topic for 'frobnicate'" in proc.stderr
    proc = pallet_runc("--bogus", "list", root=root)
    assert proc.returncode == 1 and "flag provided but not defined: -bogus" in proc.stderr
    for p in (pallet_runc("--version", root=root), pallet_runc("--help", root=root)):
        assert p.returncode == 0 and "version" in p.stdout
        _no_traceback(p)


def test_spec(tmp_path, root):
    proc = pallet_runc("spec", "--bundle", str(tmp_path), root=root)
    assert proc.returncode == 0
    spec = json.loads((tmp_path / "config.json").read_text())
    assert spec["process"]["args"] == ["sh"] and spec["root"]["path"] == "rootfs"
    again = pallet_runc("spec", "--bundle", str(tmp_path), root=root)
    assert again.returncode == 1 and "File config.json exists. Remove it first" in again.stderr


def test_run_foreground_exit_status(root, bundle):
    bundle.write(["sh", "-c", "echo out; echo err >&2; exit 3"])
    cid = new_id()
    proc = pallet_runc("run", "-b", bundle.path, cid, root=root)
    assert proc.returncode == 3
    assert proc.stdout == "out\n" and proc.stderr == "err\n"
    # run removes the container once it exits
    assert pallet_runc("list", "-q", root=root).stdout == ""


def test_run_bad_executable(root, bundle):
    bundle.write(["no-such-program"])
    proc = pallet_runc("run", "-b", bundle.path, new_id(), root=root)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        'level=error msg="runc run failed: unable to start container process: '
        'exec: \\"no-such-program\\": executable file not found in $PATH"')
    _no_traceback(proc)
    assert pallet_runc("list", "-q", root=root).stdout == ""


def test_create_state_start_list_kill_delete(root, bundle, tmp_path):
    bundle.write(["sleep", "30"])
    cid = new_id()
    # the container keeps the command's stdio (as with runc): files, not pipes
    with open(tmp_path / "out", "w") as out:
        proc = subprocess.run(_cmd(root, "create", "--bundle", bundle.path, "--pid-file",
                                   str(tmp_path / "pid"), cid),
                              stdout=out, stderr=out, stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 0, (tmp_path / "out").read_text()
    pid = int((tmp_path / "pid").read_text())

    state = json.loads(pallet_runc("state", cid, root=root).stdout)
    assert state["status"] == "created" and state["pid"] == pid and state["id"] == cid
    assert state["bundle"] == bundle.path and state["rootfs"] == bundle.rootfs

    assert pallet_runc("start", cid, root=root).returncode == 0
    listed = pallet_runc("list", root=root).stdout.split("\n")
    assert listed[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert listed[1].split()[:4] == [cid, str(pid), "running", bundle.path]
    as_json = json.loads(pallet_runc("list", "--format", "json", root=root).stdout)
    assert [c["id"] for c in as_json] == [cid] and as_json[0]["owner"] == "root"

    bad = pallet_runc("kill", cid, "BADSIG", root=root)
    assert bad.returncode == 1 and 'msg="unknown signal \\"BADSIG\\""' in bad.stderr
    busy = pallet_runc("delete", cid, root=root)
    assert busy.returncode == 1 and "that is not stopped: running" in busy.stderr
    assert pallet_runc("kill", cid, "KILL", root=root).returncode == 0
    # the container's parent is this test process (the subreaper): reap it
    assert wait_status(pid) == 128 + 9
    state = json.loads(pallet_runc("state", cid, root=root).stdout)
    assert state["status"] == "stopped" and state["pid"] == 0
    notrunning = pallet_runc("kill", cid, "9", root=root)
    assert notrunning.returncode == 1 and "container not running" in notrunning.stderr
    assert pallet_runc("delete", cid, root=root).returncode == 0
    assert pallet_runc("list", "-q", root=root).stdout == ""


def test_run_detached_then_delete_force(root, bundle, tmp_path):
    bundle.write(["sleep", "30"])
    cid = new_id()
    with open(tmp_path / "out", "w") as out:
        proc = subprocess.run(_cmd(root, "run", "-d", "-b", bundle.path, cid), stdout=out,
                              stderr=out, stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 0, (tmp_path / "out").read_text()
    state = json.loads(pallet_runc("state", cid, root=root).stdout)
    assert state["status"] == "running"
    assert pallet_runc("delete", "-f", cid, root=root).returncode == 0
    wait_status(state["pid"])
    assert pallet_runc("list", "-q", root=root).stdout == ""


def test_cli_starts_fast(root, tmp_path):
    """No heavy import on the way to a command (grpc, aiohttp, the full
    kernel's stevedore and pluggy): the kernel's fast path answers once its
    cache is warm."""
    code = ("import sys; sys.argv=['pallet-runc','--root',%r,'list','-q'];"
            "from pallet.commands.runc import main; main();"
            "bad=[m for m in ('grpc','aiohttp','pluggy','stevedore','attrs','pallet.core.kernel')"
            " if m in sys.modules]; print(bad)" % root)
    for _ in range(2):  # the first run may fill the cache
        proc = subprocess.run([_python(), "-c", code], capture_output=True, text=True,
                              timeout=30, cwd=str(tmp_path))
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    start = time.monotonic()
    pallet_runc("list", "-q", root=root, check=True)
    assert time.monotonic() - start < 2.0


def _python():
    import sys
    return sys.executable


def _cmd(root, *args):
    script = os.path.join(os.path.dirname(_python()), "pallet-runc")
    base = [script] if os.path.exists(script) else [_python(), "-m", "pallet.commands.runc"]
    return base + ["--root", root, *args]


def test_exec(root, bundle, tmp_path):
    bundle.spec["hostname"] = "cli-exec"
    bundle.write(["sleep", "30"])
    cid = new_id()
    with open(tmp_path / "out", "w") as out:
        proc = subprocess.run(_cmd(root, "run", "-d", "-b", bundle.path, cid), stdout=out,
                              stderr=out, stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 0, (tmp_path / "out").read_text()
    done = pallet_runc("exec", "--cwd", "/tmp", "-e", "A=1", "-e", "B=2", "-u", "1000:1000", cid,
                       "sh", "-c", "hostname; pwd; echo $A$B; id -u; exit 4", root=root)
    assert done.returncode == 4, done.stderr
    assert done.stdout.split() == ["cli-exec", "/tmp", "12", "1000"]
    missing = pallet_runc("exec", cid, "nope", root=root)
    assert missing.returncode == 255 and "executable file not found in $PATH" in missing.stderr
    unknown = pallet_runc("exec", "no-such-container", "true", root=root)
    assert unknown.returncode == 255 and 'msg="exec failed: container does not exist"' in \
        unknown.stderr
    _no_traceback(unknown)
    state = json.loads(pallet_runc("state", cid, root=root).stdout)
    assert pallet_runc("delete", "-f", cid, root=root).returncode == 0
    wait_status(state["pid"])


def test_run_with_terminal_in_the_foreground(root, bundle):
    """terminal: true without --console-socket: pallet-runc holds the pty and
    copies it to its own stdio, as runc does."""
    import pexpect

    bundle.write(["sh", "-c", "tty; read line; echo got:$line; exit 6"], terminal=True)
    cmd = _cmd(root, "run", "-b", bundle.path, new_id())
    child = pexpect.spawn(cmd[0], cmd[1:], timeout=20)
    try:
        child.expect(r"/dev/pts/\d+")
        child.sendline("hello")
        child.expect("got:hello")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 6


# --- the rest of runc's commands ----------------------------------------------------------------

def test_features_follow_the_schema(root):
    from pallet.plugins.runtime_ns.validate import validate_features
    done = pallet_runc("features", root=root)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    validate_features(doc)
    assert "user" in doc["linux"]["namespaces"] and doc["linux"]["seccomp"]["enabled"]
    assert "rbind" in doc["mountOptions"] and "poststop" in doc["hooks"]


def test_systemd_cgroup_is_a_clear_error(root, bundle):
    bundle.write(["true"])
    done = pallet_runc("--systemd-cgroup", "create", "-b", bundle.path, new_id(), root=root)
    assert done.returncode == 1 and ("systemd not running on this host" in done.stderr or
                                     "cgroupfs only" in done.stderr)
    _no_traceback(done)


def test_spec_rootless(tmp_path, root):
    done = pallet_runc("spec", "--rootless", "--bundle", str(tmp_path), root=root)
    assert done.returncode == 0, done.stderr
    spec = json.loads((tmp_path / "config.json").read_text())
    kinds = [ns["type"] for ns in spec["linux"]["namespaces"]]
    assert "user" in kinds and "network" not in kinds
    assert spec["linux"]["uidMappings"][0]["hostID"] == os.geteuid()
    from pallet.plugins.runtime_ns.validate import validate_config
    validate_config(spec)


def test_invalid_bundle_is_one_line(root, bundle):
    bundle.spec["process"]["args"] = "sh"
    bundle.write()
    done = pallet_runc("create", "-b", bundle.path, new_id(), root=root)
    assert done.returncode == 1
    assert ("json: cannot unmarshal string into Go struct field Process.process.args of type "
            "[]string") in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    _no_traceback(done)
    exists = new_id()
    bundle.write(["sleep", "30"])
    assert _run_detached(root, bundle, exists) == 0
    again = pallet_runc("create", "-b", bundle.path, exists, root=root)
    assert again.returncode == 1 and "container with given ID already exists" in again.stderr
    start = pallet_runc("start", exists, root=root)
    assert start.returncode == 1 and "cannot start an already running container" in start.stderr
    notpaused = pallet_runc("resume", exists, root=root)
    assert notpaused.returncode == 1 and "container not paused" in notpaused.stderr
    state = json.loads(pallet_runc("state", exists, root=root).stdout)
    pallet_runc("delete", "-f", exists, root=root)
    wait_status(state["pid"])


def _run_detached(root, bundle, cid, *extra):
    with open(os.devnull, "w") as out:
        return subprocess.run(_cmd(root, "run", "-d", *extra, "-b", bundle.path, cid), stdout=out,
                              stderr=out, stdin=subprocess.DEVNULL, timeout=30).returncode


def test_update_events_ps_pause(root, bundle, tmp_path):
    top = f"/pallet-test-{new_id()}"
    bundle.spec["linux"]["cgroupsPath"] = top
    bundle.spec["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    bundle.write(["sh", "-c", "sleep 30 & sleep 31"])
    cid = new_id()
    assert _run_detached(root, bundle, cid) == 0
    state = json.loads(pallet_runc("state", cid, root=root).stdout)
    try:
        done = pallet_runc("update", "--memory", "128m", "--pids-limit", "20", "--cpu-share", "256",
                           cid, root=root)
        assert done.returncode == 0, done.stderr
        from pallet.plugins.runtime_ns import cgroups
        mem = cgroups.mounts()["memory"] + top
        assert open(mem + "/memory.limit_in_bytes").read().strip() == str(128 << 20)
        done = pallet_runc("update", "-r", "-", cid, root=root,
                           input=json.dumps({"pids": {"limit": 33}}))
        assert done.returncode == 0, done.stderr
        assert open(cgroups.mounts()["pids"] + top + "/pids.max").read().strip() == "33"
        bad = pallet_runc("update", "-r", "-", cid, root=root, input='{"pids": {"limit": "x"}}')
        assert bad.returncode == 1 and "json: cannot unmarshal string into Go struct field " \
            "LinuxPids.pids.limit of type int64" in bad.stderr

        ev = pallet_runc("events", "--stats", cid, root=root)
        assert ev.returncode == 0, ev.stderr
        event = json.loads(ev.stdout)
        assert event["type"] == "stats" and event["id"] == cid
        assert event["data"]["memory"]["usage"]["limit"] == 128 << 20
        assert event["data"]["pids"]["limit"] == 33

        # two processes: sh's two sleeps (sh exec'd the last one)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = json.loads(pallet_runc("ps", "--format", "json", cid, root=root).stdout)
            if len(pids) == 2:
                break
            time.sleep(0.05)
        assert state["pid"] in pids and len(pids) == 2
        table = pallet_runc("ps", cid, "-o", "pid,comm", root=root).stdout.splitlines()
        assert table[0].split() == ["PID", "COMMAND"]
        assert sorted(int(line.split()[0]) for line in table[1:]) == sorted(pids)
        assert all(line.split()[1] == "sleep" for line in table[1:])

        assert pallet_runc("pause", cid, root=root).returncode == 0
        paused = json.loads(pallet_runc("state", cid, root=root).stdout)
        assert paused["status"] == "paused"
        assert pallet_runc("resume", cid, root=root).returncode == 0
        # a stream of events ends once the container is gone (deleted, as with runc)
        stream = subprocess.Popen(_cmd(root, "events", "--interval", "100ms", cid),
                                  stdout=subprocess.PIPE, text=True)
        first = json.loads(stream.stdout.readline())
        assert first["type"] == "stats"
        assert pallet_runc("kill", "--all", cid, "KILL", root=root).returncode == 0
        wait_status(state["pid"])
        assert pallet_runc("delete", cid, root=root).returncode == 0
        stream.wait(timeout=10)
    finally:
        pallet_runc("delete", "-f", cid, root=root)


def test_exec_flags(root, bundle, tmp_path):
    bundle.write(["sleep", "30"])
    cid = new_id()
    assert _run_detached(root, bundle, cid) == 0
    state = json.loads(pallet_runc("state", cid, root=root).stdout)
    try:
        done = pallet_runc("exec", "--additional-gids", "2000", "-u", "1000", "--cap", "CAP_CHOWN",
                           "--no-new-privs", cid, "sh", "-c",
                           "id -G; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status", root=root)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.split("\n")
        assert lines[0] == "0 2000" or lines[0].split() == ["0", "2000"]
        process = dict(json.loads((open(os.path.join(bundle.path, "config.json")).read()))["process"],
                       args=["sh", "-c", "echo from-process-file $X"], env=["PATH=/bin", "X=1"])
        (tmp_path / "proc.json").write_text(json.dumps(process))
        done = pallet_runc("exec", "--process", str(tmp_path / "proc.json"), cid, root=root)
        assert done.returncode == 0 and done.stdout == "from-process-file 1\n", done.stderr
        pidfile = tmp_path / "exec.pid"
        done = pallet_runc("exec", "-d", "--pid-file", str(pidfile), cid, "sleep", "1", root=root)
        assert done.returncode == 0, done.stderr
        assert int(pidfile.read_text()) > 0
        badcap = pallet_runc("exec", "--cap", "CAP_NOPE", cid, "true", root=root)
        assert badcap.returncode == 0 and "ignoring unknown or unavailable capabilities: " \
            "[CAP_NOPE]" in badcap.stderr
        _no_traceback(badcap)
    finally:
        pallet_runc("delete", "-f", cid, root=root)
        wait_reaping(state["pid"])


def test_user_namespace_and_seccomp_through_the_cli(root, applets, tmp_path):
    import shutil
    import tempfile

    from rt_helpers import Bundle
    top = tempfile.mkdtemp(prefix="pl-cli-uns-")
    try:
        os.chmod(top, 0o755)
        os.mkdir(os.path.join(top, "b"))
        bundle = Bundle(os.path.join(top, "b"), applets)
        bundle.spec["linux"]["namespaces"].append({"type": "user"})
        bundle.spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
        bundle.spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
        bundle.spec["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
        bundle.write(["sh", "-c", "cat /proc/self/uid_map; hostname x || echo denied"])
        done = pallet_runc("run", "-b", bundle.path, new_id(), root=root)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0].split() == ["0", "300000", "65536"] and lines[-1] == "denied"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_state_is_creating_while_hooks_run(root, bundle, tmp_path):
    """While create runs (here: inside its createRuntime hook) the container's
    status is "creating"; then created, running, stopped."""
    script = tmp_path / "hook.sh"
    seen = tmp_path / "seen.json"
    cmd = " ".join(_cmd(root, "state", "$ID"))
    script.write_text(f"#!/bin/sh\n{cmd} > {seen}\n")
    script.chmod(0o755)
    cid = new_id()
    bundle.spec["hooks"] = {"createRuntime": [{"path": str(script), "env": [f"ID={cid}"]}]}
    bundle.write(["true"])
    # the container keeps create's stdio: a file, not a pipe waited on for EOF
    with open(tmp_path / "err", "w") as err:
        done = subprocess.run(_cmd(root, "create", "-b", bundle.path, cid), stdout=err,
                              stderr=err, timeout=30)
    assert done.returncode == 0, (tmp_path / "err").read_text()
    during = json.loads(seen.read_text())
    assert during["status"] == "creating" and during["pid"] == 0
    state = json.loads(pallet_runc("state", cid, root=root).stdout)
    assert state["status"] == "created"
    from pallet.plugins.runtime_ns.validate import validate_state
    validate_state(state)      # the OCI state schema (runc adds rootfs, created, owner)
    assert pallet_runc("start", cid, root=root).returncode == 0
    wait_status(state["pid"])
    assert json.loads(pallet_runc("state", cid, root=root).stdout)["status"] == "stopped"
    assert pallet_runc("delete", cid, root=root).returncode == 0
    assert not os.path.exists(os.path.join(root, cid))
