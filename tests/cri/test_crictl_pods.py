"""Pods and containers as the CRI describes them, through crictl: DNS,
/etc/hosts, hostname, sysctls, labels and annotations, port mappings, the
host's namespaces, a shared PID namespace without an image, the security
context, mounts, devices, resources, OOM kills, logs and their reopening."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
import urllib.request

import pytest

from cri_helpers import CRICTL, free_port, needs_crictl, needs_root

pytestmark = needs_root + [needs_crictl]


def sh(cri, cid, script: str) -> str:
    """stdout of ``sh -c script`` run with ExecSync (exact bytes: crictl's
    ``exec -s`` adds newlines); the script must succeed."""
    c = cri.client()
    try:
        r = c.runtime.ExecSync(c.pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", script]),
                               timeout=60)
    finally:
        c.close()
    assert r.exit_code == 0, (script, r.stderr)
    return r.stdout.decode()


def test_dns_hosts_hostname_sysctls_labels(cri):
    pod = cri.run_pod("dns", dns_config={"servers": ["10.96.0.10", "10.96.0.11"],
                                         "searches": ["ns.svc.cluster.local", "svc.cluster.local"],
                                         "options": ["ndots:5"]},
                      labels={"app": "web"}, annotations={"note": "kept as given"},
                      linux={"sysctls": {"net.ipv4.ip_local_port_range": "20000 30000",
                                         "kernel.shmmax": "123456789"}})
    cid = cri.run_container(pod, "dns", "c", ["sleep", "1000"],
                            pod=cri.pod_config("dns"), labels={"tier": "front"},
                            annotations={"a": "b"})
    assert sh(cri, cid, "cat /etc/resolv.conf") == (
        "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\n"
        "nameserver 10.96.0.11\noptions ndots:5\n")
    with open("/etc/hosts") as f:
        assert sh(cri, cid, "cat /etc/hosts") == f.read()
    assert sh(cri, cid, "hostname; cat /etc/hostname; echo $HOSTNAME").split() == ["dns"] * 3
    assert sh(cri, cid, "cat /proc/sys/net/ipv4/ip_local_port_range").split() == \
        ["20000", "30000"]
    assert sh(cri, cid, "cat /proc/sys/kernel/shmmax").strip() == "123456789"
    p = cri.inspectp(pod)["status"]
    assert p["labels"] == {"app": "web"} and p["annotations"] == {"note": "kept as given"}
    c = cri.inspect(cid)["status"]
    assert c["labels"] == {"tier": "front"} and c["annotations"] == {"a": "b"}
    assert [x["id"] for x in json.loads(cri.crictl("pods", "--label", "app=web", "-o",
                                                   "json").stdout)["items"]] == [pod]
    assert not json.loads(cri.crictl("pods", "--label", "app=db", "-o", "json").stdout)["items"]
    cri.crictl("rmp", "-f", pod)


def test_host_namespaces(cri):
    pod = cri.run_pod("host", linux={"security_context": {"namespace_options": {
        "network": 2, "pid": 2, "ipc": 2}}})
    cid = cri.run_container(pod, "host", "c", ["sleep", "1000"], pod=cri.pod_config(
        "host", linux={"security_context": {"namespace_options": {"network": 2, "pid": 2,
                                                                   "ipc": 2}}}),
        linux={"security_context": {"namespace_options": {"network": 2, "pid": 2, "ipc": 2}}})
    assert cri.inspectp(pod)["status"]["network"]["ip"] == ""
    assert cri.net.bridge in sh(cri, cid, "ls /sys/class/net")
    assert sh(cri, cid, "hostname").strip() == socket.gethostname()
    assert sh(cri, cid, "cat /proc/1/comm").strip() == open("/proc/1/comm").read().strip()
    ino = os.stat("/proc/self/ns/ipc").st_ino
    assert sh(cri, cid, "readlink /proc/self/ns/ipc").strip() == f"ipc:[{ino}]"
    cri.crictl("rmp", "-f", pod)


def test_shared_pid_namespace_without_image_and_removal(cri):
    pod = cri.run_pod("share")           # pid POD is the CRI's default
    a = cri.run_container(pod, "share", "a", ["sleep", "1001"])
    b = cri.run_container(pod, "share", "b", ["sleep", "1002"])
    ps = sh(cri, b, "ps -o pid,args")
    assert "sleep 1001" in ps and "sleep 1002" in ps
    assert sh(cri, a, "cat /proc/1/cmdline | tr '\\0' ' '").startswith(
        "/tmp") or "pallet-pause" in sh(cri, a, "cat /proc/1/cmdline")
    # an orphan of the pod ends up with the holder, which reaps it
    sh(cri, a, "(sleep 0.2 &) ; true")
    time.sleep(1)
    assert "defunct" not in sh(cri, a, "ps -o stat,args") and "Z " not in \
        sh(cri, a, "ps -o stat | grep -v STAT")
    cri.crictl("stopp", pod)
    assert {c["state"] for c in json.loads(cri.crictl(
        "ps", "-a", "-p", pod, "-o", "json").stdout)["containers"]} == {"CONTAINER_EXITED"}
    cri.crictl("rmp", pod)   # removes every container of the pod
    assert not cri.crictl("ps", "-a", "-q", "-p", pod, check=False).stdout.strip()


def test_failed_network_leaves_nothing_behind(cri):
    """The pod's network fails (a conflist naming a plugin that is nowhere)
    while its loopback, added at the same time, and its record, made
    meanwhile, succeed: RunPodSandbox fails and leaves no record, cached
    attachment, pinned namespace or pod directory, and the name is free again."""
    cri_root = os.path.join(cri.root, "io.containerd.grpc.v1.cri")
    dirs = [os.path.join(cri_root, "cni", "results"), os.path.join(cri_root, "sandboxes"),
            os.path.join(cri.state, "io.containerd.grpc.v1.cri", "ns")]

    def state():
        records = subprocess.run(
            [os.path.join(os.path.dirname(cri.command()[0]), "pallet-ctr"), "-a", cri.address,
             "-n", "k8s.io", "containers", "ls", "-q"], capture_output=True, text=True)
        assert records.returncode == 0, records.stderr
        return ([sorted(os.listdir(d)) if os.path.isdir(d) else [] for d in dirs],
                sorted(records.stdout.split()))

    before = state()
    broken = os.path.join(cri.net.conf_dir, "00-broken.conflist")
    with open(broken, "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": "broken",
                   "plugins": [{"type": "pallet-no-such-plugin"}]}, f)
    try:
        r = cri.crictl("runp", cri.write("netfail.pod.json", cri.pod_config("netfail")),
                       check=False)
    finally:
        os.unlink(broken)
    assert r.returncode != 0 and "pallet-no-such-plugin" in r.stderr
    assert state() == before
    pod = cri.run_pod("netfail")          # the name was released
    cri.crictl("rmp", "-f", pod)
    assert state() == before


def test_port_mapping_to_the_pod(cri):
    host_port = free_port()
    pod = cri.run_pod("web", port_mappings=[{"container_port": 8080, "host_port": host_port}])
    cri.run_container(pod, "web", "httpd", ["sh", "-c", "echo served > /tmp/i.html; "
                                                         "exec httpd -f -p 8080 -h /tmp"],
                      pod=cri.pod_config("web", port_mappings=[
                          {"container_port": 8080, "host_port": host_port}]))
    ip = cri.inspectp(pod)["status"]["network"]["ip"]
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://{cri.net.gateway}:{host_port}/i.html",
                                        timeout=5) as r:
                assert r.read() == b"served\n"
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with urllib.request.urlopen(f"http://{ip}:8080/i.html", timeout=5) as r:
        assert r.read() == b"served\n"
    cri.crictl("rmp", "-f", pod)


def test_security_context(cri):
    pod = cri.run_pod("sec")
    sc = {"run_as_user": {"value": 1000}, "run_as_group": {"value": 2000},
          "supplemental_groups": [3000], "readonly_rootfs": True, "no_new_privs": True,
          "capabilities": {"drop_capabilities": ["ALL"], "add_capabilities": ["NET_RAW"]},
          "masked_paths": ["/proc/timer_list"], "readonly_paths": ["/proc/sys"],
          "seccomp": {"profile_type": 0}}
    cid = cri.run_container(pod, "sec", "c", ["sleep", "1000"], linux={"security_context": sc})
    assert sh(cri, cid, "id").strip() == "uid=1000 gid=2000 groups=2000,3000"
    status = sh(cri, cid, "cat /proc/self/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
    assert int(fields["CapBnd"], 16) == 1 << 13     # CAP_NET_RAW alone
    r = cri.crictl("exec", "-s", cid, "touch", "/rootfs-is-readonly", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert sh(cri, cid, "wc -c < /proc/timer_list").strip() == "0"
    user = cri.inspect(cid)["status"]["user"]["linux"]
    assert (int(user["uid"]), int(user["gid"])) == (1000, 2000)
    named = cri.run_container(pod, "sec", "named", ["sleep", "1000"], linux={
        "security_context": {"run_as_username": "nobody"}})
    assert sh(cri, named, "id -un").strip() == "nobody"
    c = cri.client()
    try:
        bad = c.pb.CreateContainerRequest(pod_sandbox_id=pod, config=c.pb.ContainerConfig(
            metadata=c.pb.ContainerMetadata(name="aa"), image=c.pb.ImageSpec(image="busybox"),
            linux=c.pb.LinuxContainerConfig(security_context=c.pb.LinuxContainerSecurityContext(
                apparmor=c.pb.SecurityProfile(profile_type=c.pb.SecurityProfile.RuntimeDefault)))))
        assert c.code(c.runtime.CreateContainer, bad) == "INVALID_ARGUMENT"
        priv = c.pb.CreateContainerRequest(pod_sandbox_id=pod, config=c.pb.ContainerConfig(
            metadata=c.pb.ContainerMetadata(name="priv"), image=c.pb.ImageSpec(image="busybox"),
            linux=c.pb.LinuxContainerConfig(security_context=c.pb.LinuxContainerSecurityContext(
                privileged=True))))
        assert c.code(c.runtime.CreateContainer, priv) == "INVALID_ARGUMENT"
    finally:
        c.close()
    cri.crictl("rmp", "-f", pod)


def test_mounts_devices_env_workdir(cri, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "f.txt").write_text("from the host\n")
    single = tmp_path / "single.conf"
    single.write_text("one file\n")
    pod = cri.run_pod("mnt")
    cid = cri.run_container(pod, "mnt", "c", None, args=["sh", "-c", "sleep 1000"],
                            working_dir="/tmp",
                            envs=[{"key": "GREETING", "value": "hello"},
                                  {"key": "PATH", "value": "/bin:/usr/bin"}],
                            mounts=[{"container_path": "/data", "host_path": str(src),
                                     "readonly": True},
                                    {"container_path": "/etc/single.conf",
                                     "host_path": str(single)}],
                            devices=[{"container_path": "/dev/mynull", "host_path": "/dev/null",
                                      "permissions": "rw"}])
    assert sh(cri, cid, "cat /data/f.txt; cat /etc/single.conf") == \
        "from the host\none file\n"
    r = cri.crictl("exec", "-s", cid, "touch", "/data/new", check=False)
    assert r.returncode != 0
    assert sh(cri, cid, "echo ok > /dev/mynull && echo written").strip() == "written"
    assert sh(cri, cid, "pwd; echo $GREETING; echo $PATH").split() == \
        ["/tmp", "hello", "/bin:/usr/bin"]
    env = sh(cri, cid, "env").splitlines()
    assert "HOSTNAME=mnt" in env
    c = cri.client()
    try:
        missing = c.pb.CreateContainerRequest(pod_sandbox_id=pod, config=c.pb.ContainerConfig(
            metadata=c.pb.ContainerMetadata(name="missing"),
            image=c.pb.ImageSpec(image="busybox"),
            mounts=[c.pb.Mount(container_path="/x", host_path=str(tmp_path / "nope"))]))
        assert c.code(c.runtime.CreateContainer, missing) == "NOT_FOUND"
    finally:
        c.close()
    cri.crictl("rmp", "-f", pod)


def _cgroup_file(cid: str, ctrl: str, name: str) -> str:
    for dirpath, dirs, files in os.walk(f"/sys/fs/cgroup/{ctrl}"):
        if os.path.basename(dirpath) == cid and name in files:
            with open(os.path.join(dirpath, name)) as f:
                return f.read().strip()
    raise AssertionError(f"no cgroup {ctrl}/{cid}")


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory"), reason="cgroup v1 memory")
def test_resources_update_and_oom(cri):
    pod = cri.run_pod("res")
    cid = cri.run_container(pod, "res", "c", ["sleep", "1000"], linux={"resources": {
        "memory_limit_in_bytes": 64 << 20, "cpu_shares": 256, "cpu_quota": 50000,
        "cpu_period": 100000}})
    assert int(_cgroup_file(cid, "memory", "memory.limit_in_bytes")) == 64 << 20
    assert _cgroup_file(cid, "cpu", "cpu.shares") == "256"
    assert _cgroup_file(cid, "cpu", "cpu.cfs_quota_us") == "50000"
    cri.crictl("update", "--memory", str(96 << 20), "--cpu-quota", "20000", cid)
    assert int(_cgroup_file(cid, "memory", "memory.limit_in_bytes")) == 96 << 20
    assert _cgroup_file(cid, "cpu", "cpu.cfs_quota_us") == "20000"
    oom = cri.run_container(pod, "res", "oom", ["dd", "if=/dev/zero", "of=/dev/null",
                                                "bs=64M", "count=1"],
                            linux={"resources": {"memory_limit_in_bytes": 16 << 20}})
    st = cri.wait_state(oom, "CONTAINER_EXITED")["status"]
    assert st["reason"] == "OOMKilled" and st["exitCode"] == 137
    cri.crictl("rmp", "-f", pod)


def test_logs_follow_and_reopen(cri):
    pod = cri.run_pod("logs")
    cid = cri.run_container(pod, "logs", "c", ["sh", "-c", "for i in 1 2 3; do echo line$i; "
                                                           "sleep 0.3; done; sleep 1000"])
    proc = subprocess.Popen([CRICTL, "--config", cri.crictl_config, "logs", "-f", cid],
                            stdout=subprocess.PIPE, text=True)
    try:
        got = [proc.stdout.readline().strip() for _ in range(3)]
        assert got == ["line1", "line2", "line3"]
    finally:
        proc.kill()
        proc.wait()
    path = cri.inspect(cid)["status"]["logPath"]
    os.rename(path, path + ".1")
    cri.crictl("logs", "--reopen", cid)
    sh(cri, cid, "echo after > /proc/1/fd/1 || true")
    cri.crictl("exec", "-s", cid, "sh", "-c", "kill -0 1")
    # the container writes to its stdout (the FIFO): the new file gets it
    cid2 = cri.run_container(pod, "logs", "long", ["sh", "-c", f"printf '%020000d' 0; echo; "
                                                              "printf tail"])
    st = cri.wait_state(cid2, "CONTAINER_EXITED")["status"]
    with open(st["logPath"]) as f:
        lines = f.read().splitlines()
    tags = [line.split(" ")[2] for line in lines]
    assert tags == ["P", "F", "P"]
    assert len(lines[0].split(" ", 3)[3]) == 16384
    assert lines[-1].endswith(" tail")
    assert os.path.exists(path)
    cri.crictl("rmp", "-f", pod)
