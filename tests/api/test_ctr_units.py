"""Pure logic of the container operations: seccomp filtering, detach keys,
restart backoff, mount parsing, log rotation, resources, events filters."""
from __future__ import annotations

import asyncio
import json
import os

import pytest

from pallet.core.errors import InvalidArgument
from pallet.engine import detach, events, mounts, resources, restart, security
from pallet.engine.logs import ContainerLog, check_log_config, read_entries


def test_seccomp_default_filtered_by_caps_and_arch():
    profile = security.default_profile()
    plain = security.seccomp_for(profile, ["CAP_CHOWN"], arch="amd64", kernel=(6, 1))
    assert plain["defaultAction"] == "SCMP_ACT_ERRNO" and plain["defaultErrnoRet"] == 1
    assert plain["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = {n for r in plain["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
             for n in r["names"]}
    assert "read" in names and "arch_prctl" in names and "ptrace" in names
    assert "unshare" not in names and "mount" not in names and "s390_runtime_instr" not in names
    # clone is allowed only without namespace flags unless CAP_SYS_ADMIN
    assert any(r["names"] == ["clone"] and r.get("args") for r in plain["syscalls"])
    assert any(r["names"] == ["clone3"] and r["action"] == "SCMP_ACT_ERRNO"
               for r in plain["syscalls"])
    admin = security.seccomp_for(profile, ["CAP_SYS_ADMIN"], arch="amd64", kernel=(6, 1))
    admin_names = {n for r in admin["syscalls"] for n in r["names"]}
    assert "unshare" in admin_names and "mount" in admin_names
    assert not any(r["names"] == ["clone3"] and r["action"] == "SCMP_ACT_ERRNO"
                   for r in admin["syscalls"])
    old = security.seccomp_for(profile, [], arch="amd64", kernel=(4, 4))
    assert "ptrace" not in {n for r in old["syscalls"] for n in r["names"]}
    arm = security.seccomp_for(profile, [], arch="arm64", kernel=(6, 1))
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    with pytest.raises(InvalidArgument):
        security.seccomp_for({"syscalls": []}, [])


def test_security_opts():
    o = security.parse_security_opts(["no-new-privileges", "seccomp=unconfined",
                                      "apparmor=unconfined", "label=disable"])
    assert o["no_new_privileges"] and o["seccomp"] == "unconfined"
    o = security.parse_security_opts(["no-new-privileges:false",
                                      'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}'])
    assert not o["no_new_privileges"] and o["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    for bad in (["bogus"], ["x=y"], ["seccomp={"], ["no-new-privileges=maybe"], "str"):
        with pytest.raises(InvalidArgument):
            security.parse_security_opts(bad)


def test_detach_keys():
    assert detach.parse_keys(None) == b"\x10\x11"
    assert detach.parse_keys("ctrl-a,x,ctrl-@") == b"\x01x\x00"
    for bad in ("ctrl-", "ctrl-ab", "abc", "ctrl-1"):
        with pytest.raises(InvalidArgument):
            detach.parse_keys(bad)
    f = detach.EscapeFilter(b"\x10\x11")
    assert f.feed(b"ab\x10") == b"ab" and not f.detached
    assert f.feed(b"c") == b"\x10c"          # not the sequence after all
    assert f.feed(b"\x10\x10\x11tail") == b"\x10" and f.detached


def test_restart_policy_and_backoff():
    assert restart.check_policy({"RestartPolicy": {"Name": "on-failure",
                                                   "MaximumRetryCount": 2}}) == {
        "Name": "on-failure", "MaximumRetryCount": 2}
    for bad in ({"Name": "x"}, {"Name": "always", "MaximumRetryCount": 2},
                {"Name": "on-failure", "MaximumRetryCount": -1}):
        with pytest.raises(InvalidArgument):
            restart.check_policy({"RestartPolicy": bad})
    with pytest.raises(InvalidArgument):
        restart.check_policy({"RestartPolicy": {"Name": "always"}, "AutoRemove": True})
    p = {"Name": "on-failure", "MaximumRetryCount": 2}
    assert restart.should_restart(p, 1, False, 1) and not restart.should_restart(p, 1, False, 2)
    assert not restart.should_restart(p, 0, False, 0)
    assert restart.should_restart({"Name": "always"}, 0, True, 9)
    assert not restart.should_restart({"Name": "unless-stopped"}, 1, True, 0)
    t = 0.0
    seen = []
    for _ in range(12):
        t = restart.next_timeout(t, 0.5)
        seen.append(t)
    assert seen[:4] == [0.1, 0.2, 0.4, 0.8] and seen[-1] == 60.0
    assert restart.next_timeout(seen[-1], 10.0) == 0.1


def test_mount_parsing():
    b = mounts.parse_bind("/h:/c:ro,rslave")
    assert (b["Type"], b["Source"], b["Destination"], b["RW"], b["Propagation"]) == (
        "bind", "/h", "/c", False, "rslave")
    v = mounts.parse_bind("vol:/data:nocopy")
    assert v["Type"] == "volume" and v["Name"] == "vol" and not v["CopyData"]
    a = mounts.parse_bind("/anon")
    assert a["Anonymous"] and a["CopyData"]
    for bad in ("/h:/c:ro,rw", "/h:/c:bogus", "a:b:c:d", "/h:rel", "/h:/", "vol:/d:shared",
                "bad name:/x", "./rel:/x"):
        with pytest.raises(InvalidArgument):
            mounts.parse_bind(bad)
    t = mounts.parse_mount({"Type": "tmpfs", "Target": "/t",
                            "TmpfsOptions": {"SizeBytes": 1024, "Mode": 0o1777}})
    assert t["Options"] == ["noexec", "nosuid", "nodev", "size=1024", "mode=1777"]
    for bad in ({"Type": "tmpfs", "Target": "/t", "Source": "x"},
                {"Type": "volume", "Target": "/t", "BindOptions": {"Propagation": "shared"}},
                {"Type": "bind", "Target": "/t"}, {"Type": "nfs", "Target": "/t"},
                {"Type": "bind", "Source": "/", "Target": "rel"}):
        with pytest.raises(InvalidArgument):
            mounts.parse_mount(bad)
    assert mounts.tmpfs_options("rw,exec,size=1m") == ["nosuid", "nodev", "rw", "size=1048576"]
    pts = mounts.plan({"Binds": ["vol:/a"], "Tmpfs": {"/b": ""}}, {"/a": {}, "/b": {}, "/c": {}})
    assert [(p["Destination"], p["Type"], p["Anonymous"]) for p in pts] == [
        ("/a", "volume", False), ("/c", "volume", True)]
    oci = mounts.oci_mounts([mounts.parse_bind("/h:/x/y"), mounts.parse_bind("/h:/x")],
                            {"/t": "size=1k"}, {})
    assert [m["destination"] for m in oci] == ["/x", "/t", "/x/y"]
    merged = mounts.merge_into([{"destination": "/dev/shm"}, {"destination": "/proc"}],
                               [{"destination": "/dev/shm", "type": "tmpfs"}])
    assert merged == [{"destination": "/proc"}, {"destination": "/dev/shm", "type": "tmpfs"}]


def test_log_config_and_rotation(tmp_path):
    assert check_log_config({"Type": "none"}) == {"Type": "none", "Config": {}}
    # the create refuses drivers and option names; values wait for the start
    for bad in ({"Type": "gelf"}, {"Config": {"nope": "1"}}, {"Type": "local",
                                                               "Config": {"tag": "x"}}):
        with pytest.raises(InvalidArgument):
            check_log_config(bad)
    for fine in ({"Type": "none", "Config": {"max-size": "1k"}}, {"Config": {"max-file": "2"}},
                 {"Config": {"max-size": "0"}}, {"Config": {"max-file": "x", "max-size": "1k"}}):
        check_log_config(fine)
    path = str(tmp_path / "c-json.log")

    async def write():
        log = ContainerLog(path, max_size=300, max_file=3, compress=True)
        log.open()
        for i in range(30):
            log.write("stdout", f"line{i}\n".encode())
        log.close()
    asyncio.run(write())
    names = sorted(os.listdir(tmp_path))
    assert names == ["c-json.log", "c-json.log.1.gz", "c-json.log.2.gz"]
    lines = [e.data for e in read_entries(path)]
    assert lines[-1] == b"line29\n" and len(lines) < 30
    first = int(lines[0][4:-1])
    assert lines == [f"line{i}\n".encode() for i in range(first, 30)]
    none = ContainerLog("", driver="none")
    none.open()
    none.write("stdout", b"x\n")
    none.close()


def test_resources():
    host = {"Memory": 64 << 20, "NanoCpus": 1_500_000_000, "CpuShares": 512, "PidsLimit": 10,
            "Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 20}], "OomScoreAdj": 5}
    assert resources.check(dict(host)) == []
    res = resources.linux_resources(host)
    assert res["memory"] == {"limit": 64 << 20}
    assert res["cpu"] == {"shares": 512, "period": 100000, "quota": 150000}
    assert res["pids"] == {"limit": 10}
    assert resources.rlimits(host) == [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]
    for bad in ({"Memory": 100}, {"MemorySwap": 1 << 30}, {"Memory": 64 << 20,
                                                          "MemorySwap": 32 << 20},
                {"NanoCpus": 1, "CpuPeriod": 1000}, {"CpuQuota": 10}, {"BlkioWeight": 5000},
                {"OomScoreAdj": 5000}, {"CpusetCpus": "a-b"}, {"MemorySwappiness": 200},
                {"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}):
        with pytest.raises(InvalidArgument):
            resources.check(bad)
    new, _ = resources.merge_update({"Memory": 64 << 20, "MemorySwap": 128 << 20,
                                     "NanoCpus": 1_000_000_000}, {"CpuQuota": 50000,
                                                                 "Memory": 0})
    assert new["Memory"] == 64 << 20 and new["CpuQuota"] == 50000 and new["NanoCpus"] == 0


def test_event_message_and_filters():
    m = events.message("container", "die", "abc123", {"image": "busybox", "name": "x",
                                                      "exitCode": 3}, time_ns=1_700_000_000_000_000_005)
    assert m["status"] == "die" and m["from"] == "busybox" and m["Actor"]["Attributes"][
        "exitCode"] == "3"
    assert m["time"] == 1_700_000_000 and m["timeNano"] == 1_700_000_000_000_000_005
    v = events.message("volume", "create", "v1", {"driver": "local"})
    assert "status" not in v and v["Type"] == "volume"
    assert events.matches(m, {"container": ["abc"]}) and events.matches(m, {"container": ["x"]})
    assert not events.matches(m, {"container": ["zzz"]})
    assert events.matches(m, {"image": ["busybox"], "event": ["die", "start"]})
    assert not events.matches(v, {"type": ["container"]})
    e = events.message("container", "exec_start: sh -c true", "abc123", {})
    assert events.matches(e, {"event": ["exec_start"]})
    with pytest.raises(InvalidArgument):
        events.check_filters({"type": ["bogus"]})
    bus = events.EventBus(limit=2)
    for i in range(3):
        bus.publish("volume", "create", f"v{i}")
    backlog, q = bus.subscribe()
    assert [x["Actor"]["ID"] for x in backlog] == ["v1", "v2"] and bus.listeners == 1
    bus.publish("volume", "destroy", "v9")
    assert q.get_nowait()["Action"] == "destroy"
    bus.unsubscribe(q)
    assert json.dumps(backlog)
