"""pallet-containerd against Debian's containerd 1.6 CRI plugin on the same
requests: what a container sees of its pod (hostname, resolv.conf, hosts,
environment, user and groups), exit codes and reasons, and the gRPC status
codes and messages of bad requests."""
from __future__ import annotations

import re

import grpc
import pytest

from cri_helpers import needs_containerd, needs_crictl, needs_root

pytestmark = needs_root + [needs_crictl, needs_containerd]

SCRIPT = ("hostname; echo ---; cat /etc/hostname; echo ---; cat /etc/resolv.conf; echo ---; "
          "cat /etc/hosts; echo ---; env | sort; echo ---; id; echo ---; pwd; echo ---; "
          "cat /proc/self/status | grep -E '^(Cap(Prm|Eff|Bnd)|NoNewPrivs|Seccomp):'")


def _run(d, name: str, container: dict, pod: dict) -> tuple[str, str]:
    pod_cfg = d.pod_config(name, **pod)
    pid = d.crictl("runp", d.write(f"{name}.pod.json", pod_cfg)).stdout.strip()
    ctr = d.container_config("c", **container)
    cid = d.crictl("create", pid, d.write(f"{name}.c.json", ctr),
                   d.write(f"{name}.pod.json", pod_cfg)).stdout.strip()
    d.crictl("start", cid)
    return pid, cid


def _exec(d, cid: str, script: str):
    c = d.client()
    try:
        r = c.runtime.ExecSync(c.pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", script]),
                               timeout=60)
        return r.exit_code, r.stdout.decode(), r.stderr.decode()
    finally:
        c.close()


CASES = {
    "plain": ({"command": ["sleep", "1000"]}, {}),
    "dns-and-env": ({"command": ["sleep", "1000"], "working_dir": "/tmp",
                     "envs": [{"key": "A", "value": "1"}, {"key": "PATH", "value": "/bin"},
                              {"key": "HOSTNAME", "value": "override"}]},
                    {"dns_config": {"servers": ["10.96.0.10"], "searches": ["a.svc", "svc"],
                                    "options": ["ndots:5", "edns0"]}}),
    "user": ({"command": ["sleep", "1000"], "linux": {"security_context": {
        "run_as_user": {"value": 65534}, "run_as_group": {"value": 100},
        "supplemental_groups": [4000], "no_new_privs": True,
        "capabilities": {"add_capabilities": ["NET_ADMIN"], "drop_capabilities": ["CHOWN"]}}}},
             {}),
    "username": ({"command": ["sleep", "1000"], "linux": {"security_context": {
        "run_as_username": "nobody", "seccomp": {"profile_type": 1}}}}, {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_what_the_container_sees(both, case):
    container, pod = CASES[case]
    seen = {}
    for kind, d in both.items():
        name = f"same-{case}"
        pid, cid = _run(d, name, container, pod)
        try:
            code, out, err = _exec(d, cid, SCRIPT)
            assert code == 0, err
            # the pod's IP differs (its own subnet): the last line of /etc/hosts names it
            seen[kind] = out
        finally:
            d.crictl("rmp", "-f", pid, check=False)
    assert "uid=" in seen["pallet"] and seen["pallet"] == seen["containerd"]


@pytest.mark.parametrize("script,code,reason", [
    ("exit 0", 0, "Completed"), ("exit 3", 3, "Error"), ("kill -9 $$", 137, "Error"),
    ("kill -TERM $$", 143, "Error")])
def test_exit_codes(both, script, code, reason):
    got = {}
    for kind, d in both.items():
        name = f"exit-{code}"
        pid, cid = _run(d, name, {"command": ["sh", "-c", script]}, {})
        try:
            st = d.wait_state(cid, "CONTAINER_EXITED")["status"]
            got[kind] = (st["exitCode"], st["reason"])
        finally:
            d.crictl("rmp", "-f", pid, check=False)
    assert got["pallet"] == got["containerd"] == (code, reason)


def _bad_requests(d):
    """Each bad request of the list and the (code, message) it got; ids are masked."""
    c = d.client()
    pb = c.pb
    out = {}

    def call(name, fn, req):
        try:
            fn(req, timeout=60)
            out[name] = ("OK", "")
        except grpc.RpcError as e:
            out[name] = (e.code().name, re.sub(r"[0-9a-f]{64}", "ID", e.details()))
    try:
        call("runp no metadata", c.runtime.RunPodSandbox,
             pb.RunPodSandboxRequest(config=pb.PodSandboxConfig()))
        call("runp unknown handler", c.runtime.RunPodSandbox, pb.RunPodSandboxRequest(
            config=pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="h", namespace="n",
                                                                      uid="u")),
            runtime_handler="nosuch"))
        for what, fn, req in (
                ("stopp", c.runtime.StopPodSandbox, pb.StopPodSandboxRequest),
                ("podstatus", c.runtime.PodSandboxStatus, pb.PodSandboxStatusRequest),
                ("rmp", c.runtime.RemovePodSandbox, pb.RemovePodSandboxRequest)):
            call(f"{what} unknown", fn, req(pod_sandbox_id="nope"))
        for what, fn, req in (
                ("start", c.runtime.StartContainer, pb.StartContainerRequest),
                ("stop", c.runtime.StopContainer, pb.StopContainerRequest),
                ("status", c.runtime.ContainerStatus, pb.ContainerStatusRequest),
                ("rm", c.runtime.RemoveContainer, pb.RemoveContainerRequest)):
            call(f"{what} unknown", fn, req(container_id="nope"))
            call(f"{what} empty", fn, req(container_id=""))
        cc = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="y"),
                                image=pb.ImageSpec(image="busybox"), command=["sleep", "100"])
        call("create in unknown pod", c.runtime.CreateContainer,
             pb.CreateContainerRequest(pod_sandbox_id="nope", config=cc))
        podcfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="bad", namespace="n", uid="u"),
            linux=pb.LinuxPodSandboxConfig(cgroup_parent=d.cgroup_parent))
        pid = c.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=podcfg),
                                      timeout=60).pod_sandbox_id
        call("runp same name", c.runtime.RunPodSandbox, pb.RunPodSandboxRequest(config=podcfg))
        call("create no metadata", c.runtime.CreateContainer, pb.CreateContainerRequest(
            pod_sandbox_id=pid, config=pb.ContainerConfig(image=pb.ImageSpec(image="busybox")),
            sandbox_config=podcfg))
        call("create unknown image", c.runtime.CreateContainer, pb.CreateContainerRequest(
            pod_sandbox_id=pid, sandbox_config=podcfg, config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="x"), image=pb.ImageSpec(image="nosuch:1"))))
        cid = c.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pid, config=cc, sandbox_config=podcfg), timeout=60).container_id
        call("create same name", c.runtime.CreateContainer, pb.CreateContainerRequest(
            pod_sandbox_id=pid, config=cc, sandbox_config=podcfg))
        call("exec created", c.runtime.Exec, pb.ExecRequest(container_id=cid, cmd=["ls"],
                                                            stdout=True))
        call("execsync created", c.runtime.ExecSync, pb.ExecSyncRequest(container_id=cid,
                                                                        cmd=["ls"]))
        call("reopen created", c.runtime.ReopenContainerLog,
             pb.ReopenContainerLogRequest(container_id=cid))
        c.runtime.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
        call("start running", c.runtime.StartContainer, pb.StartContainerRequest(
            container_id=cid))
        call("exec no streams", c.runtime.Exec, pb.ExecRequest(container_id=cid, cmd=["ls"]))
        call("exec tty and stderr", c.runtime.Exec, pb.ExecRequest(
            container_id=cid, cmd=["ls"], tty=True, stdout=True, stderr=True))
        c.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid), timeout=60)
        call("create in stopped pod", c.runtime.CreateContainer, pb.CreateContainerRequest(
            pod_sandbox_id=pid, sandbox_config=podcfg, config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="z"), image=pb.ImageSpec(image="busybox"))))
        call("exec exited", c.runtime.Exec, pb.ExecRequest(container_id=cid, cmd=["ls"],
                                                           stdout=True))
        call("port-forward stopped pod", c.runtime.PortForward,
             pb.PortForwardRequest(pod_sandbox_id=pid))
        call("update exited", c.runtime.UpdateContainerResources,
             pb.UpdateContainerResourcesRequest(container_id=cid,
                                                linux=pb.LinuxContainerResources(cpu_shares=9)))
        call("image status unknown", c.images.ImageStatus,
             pb.ImageStatusRequest(image=pb.ImageSpec(image="nosuch:1")))
        call("rmi unknown", c.images.RemoveImage,
             pb.RemoveImageRequest(image=pb.ImageSpec(image="nosuch:1")))
        c.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pid), timeout=60)
    finally:
        c.close()
    return out


def test_bad_requests_get_containerd_codes(both):
    got = {kind: _bad_requests(d) for kind, d in both.items()}
    # one message names the request's id where containerd's names nothing
    got["containerd"]["podstatus unknown"] = \
        (got["containerd"]["podstatus unknown"][0],
         got["containerd"]["podstatus unknown"][1].replace("sandbox:", 'sandbox "nope":'))
    assert got["pallet"] == got["containerd"]
