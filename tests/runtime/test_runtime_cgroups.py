"""cgroup v1 limits from linux.resources, seen from inside and outside."""
from __future__ import annotations

import os

import pytest

from pallet.plugins.runtime_ns import cgroups
from rt_helpers import new_id, run_container

pytestmark = pytest.mark.root


@pytest.fixture
def cgroup_top():
    top = f"/pallet-test-{new_id()}"
    yield top
    # belt and braces: the runtime's delete removes these already
    for point in set(cgroups.mounts().values()):
        path = point + top
        if os.path.isdir(path):
            for sub in sorted((d for d, _, _ in os.walk(path)), key=len, reverse=True):
                try:
                    os.rmdir(sub)
                except OSError:
                    pass


def test_limits_applied_and_removed(runtime, bundle, output, cgroup_top):
    path = f"{cgroup_top}/c"
    bundle.spec["linux"]["cgroupsPath"] = path
    bundle.spec["linux"]["resources"] = {
        "memory": {"limit": 64 * 1024 * 1024},
        "pids": {"limit": 42},
        "cpu": {"shares": 512, "period": 100000, "quota": 50000},
        "devices": [{"allow": False, "access": "rwm"}],
    }
    bundle.write(["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                              "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares "
                              "/sys/fs/cgroup/cpu/cpu.cfs_quota_us; "
                              "grep -E ':(memory|pids):' /proc/self/cgroup | cut -d: -f3; "
                              "cat /sys/fs/cgroup/cpuset/cpuset.cpus"])
    assert run_container(runtime, bundle.path, output) == 0
    out = output.read().split()
    assert out[:4] == [str(64 * 1024 * 1024), "42", "512", "50000"]
    assert out[4:6] == [path, path]
    with open("/sys/fs/cgroup/cpuset/cpuset.cpus") as f:
        assert out[6] == f.read().strip()   # copied from the parent
    # runc removes the container's own cgroup, not the parents it made
    for point in set(cgroups.mounts().values()):
        assert not os.path.exists(point + path)


def test_pause_and_resume(runtime, bundle, output, cgroup_top):
    import signal
    import time

    from rt_helpers import wait_status

    bundle.spec["linux"]["cgroupsPath"] = f"{cgroup_top}/c"
    bundle.write(["sleep", "30"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    runtime.pause(cid)
    assert runtime.state(cid)["status"] == "paused"
    runtime.resume(cid)
    assert runtime.state(cid)["status"] == "running"
    runtime.pause(cid)
    runtime.delete(cid, force=True)   # a frozen container must still die
    assert wait_status(pid) == 128 + signal.SIGKILL
    time.sleep(0)


def test_shared_parent_cgroup(runtime, bundle, output, cgroup_top):
    """Two containers under one parent (as /docker/<id>): removing the first
    leaves the parent to the second, at once and without an error."""
    import time

    from rt_helpers import wait_status

    bundle.write(["sleep", "30"])
    pids = {}
    for name in ("a", "b"):
        bundle.spec["linux"]["cgroupsPath"] = f"{cgroup_top}/{name}"
        bundle.write()
        cid = new_id()
        pids[cid] = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
        runtime.start(cid)
    first, second = list(pids)
    start = time.monotonic()
    runtime.delete(first, force=True)
    assert time.monotonic() - start < 1.5
    memory = cgroups.mounts()["memory"]
    assert os.path.isdir(memory + cgroup_top + "/b") and not os.path.exists(memory + cgroup_top + "/a")
    runtime.delete(second, force=True)
    for pid in pids.values():
        wait_status(pid)


def test_update_stats_swap_reservation_cpuset_relative_path(runtime, bundle, output, cgroup_top):
    from rt_helpers import wait_status

    # a relative cgroupsPath lands below our own cgroup, as with runc's fs driver
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(","):
                own[name] = path
    rel = cgroup_top.lstrip("/") + "/rel"
    bundle.spec["linux"]["cgroupsPath"] = rel
    bundle.spec["linux"]["resources"] = {
        "memory": {"limit": 96 << 20, "reservation": 32 << 20, "swap": 128 << 20},
        "cpu": {"cpus": "0", "mems": "0"},
    }
    bundle.write(["sleep", "30"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    mem = cgroups.mounts()["memory"] + os.path.join(own["memory"], rel)
    cpuset = cgroups.mounts()["cpuset"] + os.path.join(own["cpuset"], rel)
    try:
        assert open(mem + "/memory.limit_in_bytes").read().strip() == str(96 << 20)
        assert open(mem + "/memory.soft_limit_in_bytes").read().strip() == str(32 << 20)
        assert open(mem + "/memory.memsw.limit_in_bytes").read().strip() == str(128 << 20)
        assert open(cpuset + "/cpuset.cpus").read().strip() == "0"
        runtime.start(cid)
        # update raises the limit above the old memsw limit: swap goes first
        runtime.update(cid, {"memory": {"limit": 256 << 20, "swap": 512 << 20},
                             "pids": {"limit": 17}})
        assert open(mem + "/memory.limit_in_bytes").read().strip() == str(256 << 20)
        pids_dir = cgroups.mounts()["pids"] + os.path.join(own["pids"], rel)
        assert open(pids_dir + "/pids.max").read().strip() == "17"
        stats = runtime.stats(cid)
        assert stats["memory"]["usage"]["limit"] == 256 << 20
        assert stats["pids"] == {"current": 1, "limit": 17}
        assert stats["cpu"]["usage"]["total"] > 0
    finally:
        runtime.delete(cid, force=True)
        wait_status(pid)
    assert not os.path.exists(mem)


def test_devices_cgroup_v1(runtime, bundle, output, cgroup_top):
    # reading /dev/kmsg needs CAP_SYSLOG (dmesg_restrict); the cgroup decides the rest
    caps = bundle.spec["process"]["capabilities"]
    for key in ("bounding", "effective", "permitted"):
        caps[key].append("CAP_SYSLOG")
    bundle.spec["linux"]["cgroupsPath"] = f"{cgroup_top}/dev"
    bundle.spec["linux"]["resources"] = {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]}
    bundle.spec["linux"]["devices"] = [
        {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o644},
        {"path": "/dev/mem", "type": "c", "major": 1, "minor": 1, "fileMode": 0o600}]
    bundle.write(["sh", "-c", "dd if=/dev/kmsg bs=1 count=0 2>/dev/null && echo kmsg-read; "
                              "echo x 2>/dev/null > /dev/kmsg && echo kmsg-write; "
                              "dd if=/dev/mem bs=1 count=0 2>/dev/null && echo mem-read; "
                              "head -c 3 /dev/zero | wc -c"])
    assert run_container(runtime, bundle.path, output) == 0
    assert output.read().split() == ["kmsg-read", "3"]


def test_warm_migration_moves_nothing_and_leaks_no_descriptor():
    """The kernel's wait before a move between cgroups is paid by a no-op
    move of the caller (pallet.linux.cgroupfs.warm_migration): the caller
    stays in every cgroup it was in, and a child forked while the move is
    under way holds no descriptor of it (a container's process never sees
    the host's cgroupfs)."""
    import json
    import subprocess
    import sys
    code = (
        "import json, os, time\n"
        "from pallet.linux import cgroupfs\n"
        "before = open('/proc/self/cgroup').read()\n"
        "cgroupfs.warm_migration()\n"
        "started = bool(cgroupfs._in_flight)\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    links = []\n"
        "    for fd in os.listdir('/proc/self/fd'):\n"
        "        try:\n"
        "            links.append(os.readlink('/proc/self/fd/' + fd))\n"
        "        except OSError:\n"
        "            pass\n"
        "    os.write(w, json.dumps(links).encode())\n"
        "    os._exit(0)\n"
        "os.close(w)\n"
        "child = json.loads(os.read(r, 65536))\n"
        "os.waitpid(pid, 0)\n"
        "while cgroupfs._in_flight:\n"  # the move ends within a grace period or so
        "    time.sleep(0.01)\n"
        "print(json.dumps([started, open('/proc/self/cgroup').read() == before, child]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    started, unmoved, child = json.loads(out.stdout)
    assert unmoved
    assert started, "no move was started (no writable cgroupfs?)"
    assert not [link for link in child if link.endswith("cgroup.procs")], child
