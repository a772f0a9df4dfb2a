"""Cgroups under pallet-runc and runc 1.1: the cgroup every container gets,
pause/resume, ps, events, update, delete, devices, exec's cgroups."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from differential import Side, cgroup_dirs, cgroup_mounts, read_or_why, same

pytestmark = pytest.mark.root


def _proc_cgroup(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def _stats_shape(data, depth=0):
    """The keys of an events --stats document (values vary run to run)."""
    if isinstance(data, dict):
        return {k: _stats_shape(v, depth + 1) for k, v in data.items()
                if k != "raw" and not (depth == 1 and k in ("percpu", "percpu_kernel",
                                                            "percpu_user"))}
    if isinstance(data, list):
        return "list"
    return type(data).__name__


def test_default_cgroup_pause_resume_ps_events_update(diff_bundle, tmp_path):
    """Without linux.cgroupsPath runc gives the container a cgroup named after
    it, in every hierarchy (name=systemd and, in hybrid mode, the unified
    one): pause, resume, ps, events, update and exec all act on it."""
    diff_bundle.args("sh", "-c", "sleep 60 & exec sleep 61")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        pid = rt.pid()
        seen["cgroup"] = _proc_cgroup(pid)
        dirs = cgroup_dirs(rt)
        seen["dirs"] = sorted(k for k, d in dirs.items() if os.path.isdir(d))
        deadline = time.monotonic() + 5
        while len(rt("ps", "--format", "json", rt.id).json() or ()) < 2 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        seen["ps"] = len(rt("ps", "--format", "json", rt.id).json())
        table = rt("ps", rt.id).out.decode().splitlines()
        seen["ps_table"] = (table[0].split(), len(table))
        stats = rt("events", "--stats", rt.id)
        seen["stats"] = (stats.rc, stats.err, _stats_shape(stats.json()))
        seen["pause"] = rt("pause", rt.id).view()
        seen["paused"] = rt.norm_state()
        seen["freezer"] = read_or_why(dirs["freezer"] + "/freezer.state")
        seen["pause_again"] = rt("pause", rt.id).view()
        seen["exec_paused"] = rt("exec", rt.id, "true").view()
        seen["start_paused"] = rt("start", rt.id).view()
        seen["resume"] = rt("resume", rt.id).view()
        seen["resume_again"] = rt("resume", rt.id).view()
        seen["exec_cgroup"] = rt("exec", rt.id, "cat", "/proc/self/cgroup").view()
        seen["update"] = rt("update", rt.id, "--pids-limit", "10", "--memory", "64m").view()
        seen["limits"] = (read_or_why(dirs["pids"] + "/pids.max"),
                          read_or_why(dirs["memory"] + "/memory.limit_in_bytes"))
        seen["kill"] = rt("kill", rt.id, "KILL").view()
        seen["stopped"] = rt.wait_status("stopped")
        seen["kill_stopped"] = rt("kill", rt.id).view()
        seen["kill_all_stopped"] = rt("kill", "--all", rt.id, "9").view()
        seen["events_stopped"] = rt("events", rt.id).view()
        seen["delete"] = rt("delete", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_exec_ignore_paused(diff_bundle, tmp_path):
    diff_bundle.args("sleep", "60")

    # exec -d into a frozen cgroup returns only once resumed: run it aside
    def aside(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view(), "pause": rt("pause", rt.id).view()}
        out = open(os.path.join(rt.scratch, "exec.out"), "wb")
        proc = rt.popen("exec", "-d", "--ignore-paused", rt.id, "touch", "/tmp/ran",
                        stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        time.sleep(0.3)
        seen["frozen_yet"] = os.path.exists(rt.bundle.rootfs + "/tmp/ran")
        seen["resume"] = rt("resume", rt.id).view()
        proc.wait(timeout=20)
        out.close()
        seen["exec_rc"] = proc.returncode
        deadline = time.monotonic() + 10
        while not os.path.exists(rt.bundle.rootfs + "/tmp/ran") and time.monotonic() < deadline:
            time.sleep(0.02)
        seen["ran"] = os.path.exists(rt.bundle.rootfs + "/tmp/ran")
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, aside)


@pytest.mark.parametrize("how", ["paused", "subcgroups", "created", "stopped", "running"])
def test_delete(diff_bundle, tmp_path, how):
    """delete (--force) of containers in every state, with sub-cgroups too:
    nothing is left behind."""
    diff_bundle.args("sh", "-c", "sleep 60 & exec sleep 61")

    def scenario(rt: Side):
        seen = {}
        if how == "created":
            seen["create"] = rt("create", rt.id).view()
            seen["delete"] = rt("delete", rt.id).view()
            return seen
        seen["run"] = rt("run", "-d", rt.id).view()
        if how == "paused":
            seen["pause"] = rt("pause", rt.id).view()
        if how == "subcgroups":
            for d in set(cgroup_dirs(rt).values()):
                os.makedirs(os.path.join(d, "sub", "deeper"), exist_ok=True)
            seen["exec"] = rt("exec", "-d", rt.id, "sleep", "50").view()
        if how == "stopped":
            rt("kill", rt.id, "KILL")
            seen["stopped"] = rt.wait_status("stopped")
        if how == "running":
            seen["refused"] = rt("delete", rt.id).view()
        seen["delete"] = rt("delete", "--force", rt.id).view()
        seen["gone"] = rt.norm_state()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_refuses_a_frozen_cgroup_and_warns_of_a_busy_one(diff_bundle, tmp_path):
    diff_bundle.args("true")

    def scenario(rt: Side):
        dirs = cgroup_dirs(rt)
        os.makedirs(dirs["freezer"], exist_ok=True)
        with open(dirs["freezer"] + "/freezer.state", "w") as f:
            f.write("FROZEN")
        seen = {"frozen": rt("run", rt.id).view(), "state": rt.norm_state()}
        with open(dirs["freezer"] + "/freezer.state", "w") as f:
            f.write("THAWED")
        os.rmdir(dirs["freezer"])
        os.makedirs(dirs["devices"], exist_ok=True)
        squatter = subprocess.Popen(["sleep", "30"])
        try:
            with open(dirs["devices"] + "/cgroup.procs", "w") as f:
                f.write(str(squatter.pid))
            seen["busy"] = rt("run", rt.id).view()
        finally:
            squatter.kill()
            squatter.wait()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_unified_resources_on_cgroup_v1(diff_bundle, tmp_path):
    if "unified" in cgroup_mounts() and len(cgroup_mounts()) == 1:
        pytest.skip("a pure cgroup v2 host")
    diff_bundle.spec["linux"]["resources"]["unified"] = {"memory.max": "10000000"}
    diff_bundle.args("true")
    same(tmp_path, diff_bundle, lambda rt: [rt("run", rt.id).view(), rt.norm_state()])


def test_device_rules_deny_also_after_update(diff_bundle, tmp_path):
    """A device the spec creates but does not allow (/dev/kmsg) cannot be
    opened, before and after an update; the devices cgroup reads as runc
    leaves it."""
    diff_bundle.spec["linux"]["devices"] = [{"path": "/dev/kmsg", "type": "c", "major": 1,
                                             "minor": 11, "fileMode": 0o644}]
    diff_bundle.spec["linux"]["resources"]["devices"].append(
        {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "r"})
    diff_bundle.args("sleep", "60")
    probe = ("head -c1 /dev/kmsg >/dev/null 2>&1 && echo kmsg-open || echo kmsg-denied; "
             "head -c1 /dev/zero >/dev/null && echo zero-open")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        devices = cgroup_dirs(rt)["devices"] + "/devices.list"
        seen["list"] = read_or_why(devices)
        seen["before"] = rt("exec", rt.id, "sh", "-c", probe).view()
        seen["update"] = rt("update", "--memory", "100m", rt.id).view()
        seen["json_update"] = rt("update", "-r", "-", rt.id, input=json.dumps(
            {"devices": [{"allow": True, "access": "rwm"}], "pids": {"limit": 50}})).view()
        seen["after"] = rt("exec", rt.id, "sh", "-c", probe).view()
        seen["list_after"] = read_or_why(devices)
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("args", [
    ("{id}", "--memory", "32m", "--pids-limit", "7"),
    ("--memory=48m", "{id}", "--cpu-share", "512"),
    ("{id}", "--memory", "1.2.3"), ("{id}", "--memory", "x"), ("{id}", "--cpu-share", "1"),
    ("{id}", "--cpu-share", "300000"), ("{id}", "--cpu-period", "x"),
    ("{id}", "--cpu-quota", "-x"), ("{id}", "--cpuset-cpus", "99"),
    ("{id}", "--l3-cache-schema", "x"), ("{id}", "--mem-bw-schema", "x"),
    ("{id}", "--memory", "-1"), ("{id}", "--pids-limit", "-1"), ("{id}", "--blkio-weight", "5"),
    ("{id}", "--memory", "10m", "--memory-swap", "5m"), ("{id}", "--memory-reservation", "8m"),
    ("-r", "/nonexistent", "{id}"), ("{id}", "--cpu-rt-period", "1000"),
])
def test_update_flags(diff_bundle, tmp_path, args):
    """update's flags where runc's parser takes them, its values, its errors,
    and what reaches the cgroup files."""
    diff_bundle.args("sleep", "60")
    files = ("memory/memory.limit_in_bytes", "memory/memory.soft_limit_in_bytes",
             "memory/memory.memsw.limit_in_bytes", "pids/pids.max", "cpu/cpu.shares",
             "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us", "cpuset/cpuset.cpus")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        seen["update"] = rt("update", *[a.format(id=rt.id) for a in args]).view()
        dirs = cgroup_dirs(rt)
        seen["files"] = {f: read_or_why(dirs[f.split("/")[0]] + "/" + f.split("/")[1]) for f in files}
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("body", [
    '{"pids": {"limit": "x"}}', '{"pids": {"limit": 1.5}}', '{"cpu": {"shares": -1}}',
    '{"memory": {"limit": -1}}', "nope", '{"pids": {"limit": 7}} x', "",
    '{"cpu": {"quota": 30000, "period": 60000}}', '{"unified": {"memory.max": "1"}}',
    '{"memory": {"limit": 33554432, "reservation": 16777216}, "blockIO": {"weight": 100}}',
])
def test_update_from_json(diff_bundle, tmp_path, body):
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        seen["update"] = rt("update", "-r", "-", rt.id, input=body).view()
        dirs = cgroup_dirs(rt)
        seen["files"] = [read_or_why(dirs["pids"] + "/pids.max"),
                         read_or_why(dirs["memory"] + "/memory.limit_in_bytes"),
                         read_or_why(dirs["cpu"] + "/cpu.cfs_quota_us"),
                         read_or_why(dirs["cpu"] + "/cpu.cfs_period_us")]
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_cpu_updates_under_a_parent_with_its_own_limit(diff_bundle, tmp_path):
    """Period, quota and shares under a parent cgroup limited to half a CPU:
    a smaller period is refused by the kernel until the quota follows, which
    runc handles by writing the period again after the quota."""
    parent = f"/pallet-diff-{os.path.basename(str(tmp_path))[-8:]}"
    diff_bundle.spec["linux"]["resources"]["cpu"] = {"shares": 256, "period": 100000,
                                                     "quota": 20000}
    diff_bundle.args("sleep", "60")
    cpu_mount = cgroup_mounts()["cpu"] if "cpu" in cgroup_mounts() else None
    if cpu_mount is None:
        pytest.skip("no cgroup v1 cpu controller")

    def scenario(rt: Side):
        top = cpu_mount + parent
        os.makedirs(top, exist_ok=True)
        with open(top + "/cpu.cfs_quota_us", "w") as f:
            f.write("50000")
        rt.bundle.spec["linux"]["cgroupsPath"] = f"{parent}/{rt.id}"
        with open(os.path.join(rt.bundle.path, "config.json"), "w") as f:
            json.dump(rt.bundle.spec, f)
        leaf = top + "/" + rt.id
        read = lambda: [read_or_why(leaf + "/" + n) for n in  # noqa: E731
                        ("cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us")]
        seen = {"run": rt("run", "-d", rt.id).view(), "created": read()}
        for args in (("--cpu-period", "10000", "--cpu-quota", "5000"),
                     ("--cpu-quota", "4000"), ("--cpu-period", "20000"),
                     ("--cpu-share", "1024"), ("--cpu-quota", "90000"),
                     ("--cpu-period", "1000000", "--cpu-quota", "400000")):
            seen[" ".join(args)] = (rt("update", rt.id, *args).view(), read())
        seen["delete"] = rt("delete", "-f", rt.id).view()
        seen["leaf_gone"] = not os.path.exists(leaf)
        seen["parent_left"] = os.path.isdir(top)
        return seen
    try:
        same(tmp_path, diff_bundle, scenario, cgroup_extra=(parent,))
    finally:
        for point in set(cgroup_mounts().values()):
            try:
                os.rmdir(point + parent)
            except OSError:
                pass


def test_nested_cgroups_path_leaves_its_parents(diff_bundle, tmp_path):
    """runc removes the container's own cgroup only, not the parents it made."""
    parent = f"/pallet-diff-{os.path.basename(str(tmp_path))[-8:]}"
    diff_bundle.args("true")

    def scenario(rt: Side):
        rt.bundle.spec["linux"]["cgroupsPath"] = f"{parent}/mid/{rt.id}"
        with open(os.path.join(rt.bundle.path, "config.json"), "w") as f:
            json.dump(rt.bundle.spec, f)
        seen = {"run": rt("run", rt.id).view()}
        seen["left"] = sorted(name for name, point in cgroup_mounts().items()
                              if os.path.isdir(point + parent + "/mid"))
        for point in set(cgroup_mounts().values()):
            for d in (point + parent + "/mid", point + parent):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        return seen
    same(tmp_path, diff_bundle, scenario, cgroup_extra=(parent,))


def test_exec_into_a_sub_cgroup(diff_bundle, tmp_path):
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        os.makedirs(cgroup_dirs(rt)["pids"] + "/sub", exist_ok=True)
        seen["exec"] = rt("exec", "--cgroup", "pids:sub", rt.id, "grep", "pids",
                          "/proc/self/cgroup").view()
        seen["bad"] = [rt("exec", "--cgroup", arg, rt.id, "true").masked()
                       for arg in ("a:b:c", "pids:a")]
        seen["twice"] = rt("exec", "--cgroup", "pids:a", "--cgroup", "pids:b", rt.id,
                           "true").masked()
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("signal", ["0", "KILL", "sigterm", "term", "99", "NOSIG", "-1"])
def test_kill_signals(diff_bundle, tmp_path, signal):
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view(), "kill": rt("kill", rt.id, signal).view()}
        time.sleep(0.1)
        seen["state"] = rt.wait_status("stopped", timeout=0.5 if signal in ("0", "99") else 10)
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_kill_all_of_a_paused_container_thaws_it(diff_bundle, tmp_path):
    diff_bundle.args("sh", "-c", "trap '' USR1; sleep 60 & exec sleep 61")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view(), "pause": rt("pause", rt.id).view()}
        seen["kill"] = rt("kill", "--all", rt.id, "USR2").view()
        seen["state"] = rt.wait_status("stopped", timeout=2)
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)
