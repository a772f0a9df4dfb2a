"""The cgroup v2 driver, on the host's v2 hierarchy.

This machine has cgroup v1 controllers with an (almost) empty v2 hierarchy
beside it (/sys/fs/cgroup/unified): the runtime is pointed at it, and the
v2 code runs for real there -- cgroup.procs, cgroup.freeze, the eBPF
device program, hugetlb when that controller sits on v2.  On a pure v2 host
the same tests use /sys/fs/cgroup.
"""
from __future__ import annotations

import os
import signal

import pytest

from rt_helpers import new_id, run_container, wait_status

pytestmark = pytest.mark.root


def _v2_root():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    return None


V2 = _v2_root()
pytestmark = [pytest.mark.root, pytest.mark.skipif(V2 is None, reason="no cgroup v2 mount")]


@pytest.fixture
def v2_runtime(runtime):
    runtime.cgroup_v2_root = V2
    return runtime


@pytest.fixture
def top():
    top = f"/pallet-test-{new_id()}"
    # the runtime enables controllers on the way down, as runc does: the host's
    # root gets back the set it had
    with open(V2 + "/cgroup.subtree_control") as f:
        before = set(f.read().split())
    yield top
    path = V2 + top
    if os.path.isdir(path):
        for sub in sorted((d for d, _, _ in os.walk(path)), key=len, reverse=True):
            try:
                os.rmdir(sub)
            except OSError:
                pass
    with open(V2 + "/cgroup.subtree_control") as f:
        added = set(f.read().split()) - before
    for name in added:
        try:
            with open(V2 + "/cgroup.subtree_control", "w") as f:
                f.write(f"-{name}")
        except OSError:
            pass  # another test's cgroup still uses it


def test_join_freeze_pids_and_remove(v2_runtime, bundle, output, top):
    rt = v2_runtime
    bundle.spec["linux"]["cgroupsPath"] = f"{top}/c"
    bundle.write(["sh", "-c", "sleep 30 & wait"])
    cid = new_id()
    pid = rt.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    with open(f"/proc/{pid}/cgroup") as f:
        assert f"0::{top}/c\n" in f.read()
    rt.start(cid)
    import time
    deadline = time.monotonic() + 5
    while len(rt.pids(cid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pid in rt.pids(cid) and len(rt.pids(cid)) == 2
    rt.pause(cid)
    assert rt.state(cid)["status"] == "paused"
    assert open(V2 + top + "/c/cgroup.freeze").read().strip() == "1"
    rt.resume(cid)
    assert rt.state(cid)["status"] == "running"
    assert "cpu" in rt.stats(cid)
    rt.pause(cid)
    rt.delete(cid, force=True)   # frozen, and still killed
    assert wait_status(pid) == 128 + signal.SIGKILL
    assert not os.path.exists(V2 + top + "/c")   # the parent stays, as with runc


def _with_syslog(bundle):
    # reading /dev/kmsg needs CAP_SYSLOG (dmesg_restrict); the cgroup decides the rest
    caps = bundle.spec["process"]["capabilities"]
    for key in ("bounding", "effective", "permitted"):
        caps[key].append("CAP_SYSLOG")


def test_ebpf_device_program(v2_runtime, bundle, output, top):
    _with_syslog(bundle)
    bundle.spec["linux"]["cgroupsPath"] = f"{top}/dev"
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
    assert run_container(v2_runtime, bundle.path, output) == 0
    assert output.read().split() == ["kmsg-read", "3"]


def test_device_program_update_replaces_the_old_one(v2_runtime, bundle, output, top):
    rt = v2_runtime
    _with_syslog(bundle)
    bundle.spec["linux"]["cgroupsPath"] = f"{top}/upd"
    bundle.spec["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    bundle.spec["linux"]["devices"] = [
        {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o644}]
    bundle.write(["sleep", "30"])
    cid = new_id()
    pid = rt.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    rt.start(cid)
    probe = dict(bundle.spec["process"], args=["dd", "if=/dev/kmsg", "bs=1", "count=0"])
    try:
        epid = rt.exec(cid, probe, stdout=output.fd, stderr=output.fd)
        assert wait_status(epid) == 1
        rt.update(cid, {"devices": [{"allow": True, "type": "c", "major": 1, "minor": 11,
                                     "access": "rwm"}]})
        epid = rt.exec(cid, probe, stdout=output.fd, stderr=output.fd)
        assert wait_status(epid) == 0
        from pallet.plugins.runtime_ns import cgroups2
        fd = os.open(V2 + top + "/upd", os.O_RDONLY)
        try:
            assert len(cgroups2._attached(fd)) == 1
        finally:
            os.close(fd)
    finally:
        rt.delete(cid, force=True)
        wait_status(pid)


def test_hugetlb_limit_when_on_v2(v2_runtime, bundle, output, top):
    with open(V2 + "/cgroup.controllers") as f:
        if "hugetlb" not in f.read().split():
            pytest.skip("hugetlb is not a v2 controller here")
    bundle.spec["linux"]["cgroupsPath"] = f"{top}/huge"
    bundle.spec["linux"]["resources"] = {"hugepageLimits": [{"pageSize": "2MB",
                                                             "limit": 4 << 21}]}
    bundle.write(["sleep", "30"])
    cid = new_id()
    pid = v2_runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    try:
        assert open(V2 + top + "/huge/hugetlb.2MB.max").read().strip() == str(4 << 21)
        assert "2MB" in v2_runtime.stats(cid).get("hugetlb", {})
    finally:
        v2_runtime.delete(cid, force=True)
        wait_status(pid)


def test_missing_controller_is_a_clear_error(v2_runtime, bundle, top):
    with open(V2 + "/cgroup.controllers") as f:
        if "pids" in f.read().split():
            pytest.skip("pids is a v2 controller here")
    bundle.spec["linux"]["cgroupsPath"] = f"{top}/nopids"
    bundle.spec["linux"]["resources"] = {"pids": {"limit": 5}}
    bundle.write(["true"])
    with pytest.raises(Exception, match=r"error setting cgroup config for procHooks process: "
                                        r"openat2 .*pids.max: no such file or directory"):
        v2_runtime.create(new_id(), bundle.path)
    assert not os.path.exists(V2 + top + "/nopids")


def test_device_program_semantics():
    """The program's verdicts, checked by the kernel's own loader (it must
    verify) and by reading it back: last matching rule wins."""
    from pallet.plugins.runtime_ns.cgroups2 import device_program
    prog = device_program([{"allow": False, "access": "rwm"},
                           {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}])
    assert len(prog) % 8 == 0 and len(prog) // 8 > 10
