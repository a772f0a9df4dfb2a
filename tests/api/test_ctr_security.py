"""Docker's default security and what changes it: capabilities, seccomp,
masked and read-only /proc paths, --privileged, --security-opt, --read-only,
--user, and the resource flags (--memory, --cpus, --pids-limit, --ulimit,
--shm-size) as the container sees them."""
from __future__ import annotations

import json
import os

import pytest

from ctr_helpers import inspect, out

pytestmark = pytest.mark.root

DEFAULT_CAPS = 0xa80425fb   # docker's default set: chown ... audit_write
CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW = 1 << 21, 1 << 12, 1 << 13


def _status(d, *args) -> dict:
    r = d.docker("run", "--rm", *args, "busybox", "cat", "/proc/self/status")
    return dict(line.split(":\t", 1) for line in r.stdout.decode().splitlines() if ":\t" in line)


def test_default_caps_and_seccomp(d):
    st = _status(d)
    assert int(st["CapEff"], 16) == DEFAULT_CAPS and int(st["CapBnd"], 16) == DEFAULT_CAPS
    assert st["Seccomp"].strip() == "2" and st["NoNewPrivs"].strip() == "0"
    r = d.docker("run", "--rm", "busybox", "sh", "-c", "unshare -U true", check=False)
    assert r.returncode != 0 and b"Operation not permitted" in r.stderr
    r = d.docker("run", "--rm", "busybox", "sh", "-c", "unshare -m true", check=False)
    assert r.returncode != 0
    info = json.loads(d.api("GET", "/v1.43/info")[2])
    assert any(o.startswith("name=seccomp") for o in info["SecurityOptions"])


def test_masked_and_readonly_paths(d):
    r = d.docker("run", "--rm", "busybox", "sh", "-c",
                 "wc -c < /proc/timer_list; (echo 1 > /proc/sys/kernel/domainname) 2>&1; "
                 "grep ' /proc/sys ' /proc/mounts")
    lines = r.stdout.decode().splitlines()
    assert lines[0].strip() == "0"
    assert "Read-only file system" in lines[1] and " ro," in lines[2]
    r = d.docker("run", "--rm", "--security-opt", "systempaths=unconfined", "busybox", "sh",
                 "-c", "grep -c ' /proc/sys ' /proc/mounts || true")
    assert out(r) == "0", r


def test_cap_add_drop_and_privileged(d):
    st = _status(d, "--cap-add", "NET_ADMIN", "--cap-drop", "NET_RAW")
    caps = int(st["CapEff"], 16)
    assert caps & CAP_NET_ADMIN and not caps & CAP_NET_RAW and not caps & CAP_SYS_ADMIN
    st = _status(d, "--cap-drop", "ALL")
    assert int(st["CapEff"], 16) == 0
    r = d.docker("run", "--rm", "--cap-add", "NOPE", "busybox", "true", check=False)
    assert r.returncode != 0 and b"capability" in r.stderr.lower()
    st = _status(d, "--privileged")
    assert int(st["CapEff"], 16) & CAP_SYS_ADMIN and st["Seccomp"].strip() == "0"
    r = d.docker("run", "--rm", "--privileged", "busybox", "sh", "-c",
                 "ls /dev | wc -l; grep ' /sys ' /proc/mounts; grep -c /proc/timer_list "
                 "/proc/mounts || true")
    lines = r.stdout.decode().splitlines()
    assert int(lines[0]) > 15 and " rw," in lines[1] and lines[2].strip() == "0"


def test_security_opts(d):
    st = _status(d, "--security-opt", "no-new-privileges")
    assert st["NoNewPrivs"].strip() == "1"
    st = _status(d, "--security-opt", "no-new-privileges=false")
    assert st["NoNewPrivs"].strip() == "0"
    r = d.docker("run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "sh", "-c",
                 "grep Seccomp: /proc/self/status; unshare -U true && echo ok")
    assert r.stdout.decode().split() == ["Seccomp:", "0", "ok"]
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    status, _, body = d.api("POST", "/v1.43/containers/create", {
        "Image": "busybox", "Cmd": ["mkdir", "/x"],
        "HostConfig": {"SecurityOpt": ["seccomp=" + json.dumps(profile)]}})
    cid = json.loads(body)["Id"]
    d.docker("start", "-a", cid, check=False)
    assert inspect(d, cid)["State"]["ExitCode"] == 1
    assert b"Operation not permitted" in d.docker("logs", cid).stderr
    d.docker("rm", cid)
    r = d.docker("run", "--rm", "--security-opt", "seccomp={bad", "busybox", "true",
                 check=False)
    assert r.returncode != 0
    r = d.docker("run", "--rm", "--security-opt", "bogus", "busybox", "true", check=False)
    assert r.returncode != 0 and b"security-opt" in r.stderr


def test_read_only_and_user(d):
    r = d.docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", "busybox", "sh", "-c",
                 "touch /x 2>&1; touch /tmp/y && echo tmp-ok")
    assert b"Read-only file system" in r.stdout and r.stdout.endswith(b"tmp-ok\n")
    r = d.docker("run", "--rm", "--user", "1234:5678", "busybox", "id")
    assert r.stdout.startswith(b"uid=1234 gid=5678")
    r = d.docker("run", "--rm", "-u", "nobody", "busybox", "id", "-u")
    assert r.stdout == b"65534\n"
    r = d.docker("run", "--rm", "-u", "pa-nouser", "busybox", "id", check=False)
    assert r.returncode != 0 and b"unable to find user" in r.stderr


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory"), reason="cgroup v1 layout")
def test_resources(d):
    r = d.docker("run", "--rm", "--memory", "32m", "--cpus", "1.5", "--cpu-shares", "512",
                 "--pids-limit", "64", "--ulimit", "nofile=1024:2048", "--shm-size", "16m",
                 "busybox", "sh", "-c",
                 "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                 "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes "
                 "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us "
                 "/sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/pids/pids.max; "
                 "ulimit -n; ulimit -Hn; df -k /dev/shm | tail -1")
    lines = r.stdout.decode().split("\n")
    assert lines[:6] == [str(32 << 20), str(64 << 20), "150000", "100000", "512", "64"]
    assert lines[6:8] == ["1024", "2048"]
    assert lines[8].split()[1] == "16384"
    cid = out(d.docker("create", "--memory", "32m", "busybox", "true"))
    host = inspect(d, cid)["HostConfig"]
    assert host["Memory"] == 32 << 20 and host["MemorySwap"] == 64 << 20
    d.docker("rm", cid)
    # the kernel's OOM killer shows in the state
    r = d.docker("run", "--name", "sec-oom", "--memory", "8m", "--memory-swap", "8m",
                 "busybox", "sh", "-c", "x=a; while true; do x=$x$x; done", check=False)
    st = inspect(d, "sec-oom")["State"]
    assert st["OOMKilled"] is True and st["ExitCode"] == 137
    d.docker("rm", "sec-oom")
    r = d.docker("run", "--rm", "--ulimit", "nofile=2:1", "busybox", "true", check=False)
    assert r.returncode != 0


def test_dockerpy_security(d):
    client = d.client()
    try:
        logs = client.containers.run("busybox", ["sh", "-c", "grep CapEff /proc/self/status"],
                                     cap_drop=["ALL"], cap_add=["CHOWN"], remove=True)
        assert int(logs.split()[-1], 16) == 1
        logs = client.containers.run("busybox", ["sh", "-c", "ulimit -n"], remove=True,
                                     ulimits=[__import__("docker").types.Ulimit(
                                         name="nofile", soft=100, hard=200)])
        assert logs == b"100\n"
    finally:
        client.close()
