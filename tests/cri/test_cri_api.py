"""The RPCs crictl does not reach, through a Python client generated from
the same proto: the Stream* lists, metrics, events, runtime configuration,
pod resources, checkpoints, log reopening, and the WebSocket port-forward
protocol with ports in the query (kubelet's older one)."""
from __future__ import annotations

import json
import os
import socket
import threading
import time

import grpc
import pytest

from cri_helpers import needs_crictl, needs_root

pytestmark = needs_root + [needs_crictl]


@pytest.fixture
def client(cri):
    c = cri.client()
    yield c
    c.close()


def test_runtime_rpcs(cri, client):
    pb = client.pb
    v = client.runtime.Version(pb.VersionRequest(version="v1"))
    assert (v.runtime_name, v.runtime_api_version) == ("pallet", "v1")
    st = client.runtime.Status(pb.StatusRequest(verbose=True))
    assert {c.type: c.status for c in st.status.conditions} == \
        {"RuntimeReady": True, "NetworkReady": True}
    assert json.loads(st.info["config"])["cni"]["confDir"] == cri.net.conf_dir
    assert [h.name for h in st.runtime_handlers][:1] == [""]
    rc = client.runtime.RuntimeConfig(pb.RuntimeConfigRequest())
    assert rc.linux.cgroup_driver == pb.CGROUPFS
    client.runtime.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.244.0.0/24"))))
    st = client.runtime.Status(pb.StatusRequest(verbose=True))
    assert json.loads(st.info["cniconfig"])["PodCIDR"] == "10.244.0.0/24"
    fs = client.images.ImageFsInfo(pb.ImageFsInfoRequest())
    assert fs.image_filesystems[0].used_bytes.value > 0
    assert fs.image_filesystems[0].fs_id.mountpoint.startswith(cri.root)


def test_events_streams_metrics_and_more(cri, client):
    pb = client.pb
    events = []
    stream = client.runtime.GetContainerEvents(pb.GetEventsRequest())
    def read():
        try:
            for e in stream:
                events.append(e)
        except grpc.RpcError:
            pass   # cancelled at the end of the test
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.3)
    pod = cri.run_pod("api")
    cid = cri.run_container(pod, "api", "c", ["sleep", "1000"])
    sizes = [len(r.pod_sandboxes) for r in client.runtime.StreamPodSandboxes(
        pb.StreamPodSandboxesRequest())]
    assert sum(sizes) == len(client.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items)
    assert any(c.id == cid for r in client.runtime.StreamContainers(pb.StreamContainersRequest())
               for c in r.containers)
    assert any(s.attributes.id == cid for r in client.runtime.StreamContainerStats(
        pb.StreamContainerStatsRequest()) for s in r.container_stats)
    assert any(s.attributes.id == pod for r in client.runtime.StreamPodSandboxStats(
        pb.StreamPodSandboxStatsRequest()) for s in r.pod_sandbox_stats)
    assert any(i.repo_tags for r in client.images.StreamImages(pb.StreamImagesRequest())
               for i in r.images)
    names = {d.name for d in client.runtime.ListMetricDescriptors(
        pb.ListMetricDescriptorsRequest()).descriptors}
    assert "container_memory_working_set_bytes" in names
    metrics = client.runtime.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest()).pod_metrics
    mine = [m for m in metrics if m.pod_sandbox_id == pod][0]
    assert {m.name for cm in mine.container_metrics for m in cm.metrics} >= \
        {"container_memory_usage_bytes", "container_processes"}
    assert sum(len(r.pod_sandbox_metrics) for r in client.runtime.StreamPodSandboxMetrics(
        pb.StreamPodSandboxMetricsRequest())) == len(metrics)
    client.runtime.UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
        pod_sandbox_id=pod, resources=pb.LinuxContainerResources(cpu_shares=1024)))
    assert client.code(client.runtime.CheckpointContainer, pb.CheckpointContainerRequest(
        container_id=cid)) == "UNIMPLEMENTED"
    client.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))
    status = client.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod))
    assert [c.id for c in status.containers_statuses] == [cid]
    client.runtime.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0))
    client.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    cri.crictl("rmp", "-f", pod)
    deadline = time.monotonic() + 10
    want = [(cid, pb.CONTAINER_CREATED_EVENT), (cid, pb.CONTAINER_STARTED_EVENT),
            (cid, pb.CONTAINER_STOPPED_EVENT), (cid, pb.CONTAINER_DELETED_EVENT)]
    while time.monotonic() < deadline:
        # events reach the reader thread through the stream, after the calls return
        got = [(e.container_id, e.container_event_type) for e in events if e.container_id == cid]
        pod_events = {e.container_event_type for e in events if e.container_id == pod}
        if got == want and pb.CONTAINER_DELETED_EVENT in pod_events:
            break
        time.sleep(0.05)
    assert got == want
    stopped = [e for e in events if e.container_id == cid and
               e.container_event_type == pb.CONTAINER_STOPPED_EVENT][0]
    assert stopped.containers_statuses[0].state == pb.CONTAINER_EXITED
    assert stopped.pod_sandbox_status.id == pod
    assert pb.CONTAINER_DELETED_EVENT in pod_events
    stream.cancel()


def test_crictl_events(cri):
    import subprocess

    from cri_helpers import CRICTL

    proc = subprocess.Popen([CRICTL, "--config", cri.crictl_config, "events", "-o", "json"],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        pod = cri.run_pod("ev")
        cid = cri.run_container(pod, "ev", "c", ["true"])
        seen = ""
        deadline = time.monotonic() + 10
        while "CONTAINER_STOPPED_EVENT" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert cid in seen and "CONTAINER_STARTED_EVENT" in seen
    finally:
        proc.kill()
        proc.wait()
    cri.crictl("rmp", "-f", pod)


def test_websocket_port_forward_with_ports_in_the_query(cri, client):
    from pallet.streaming import channels, websocket as ws

    pod = cri.run_pod("wspf")
    cri.run_container(pod, "wspf", "srv", ["sh", "-c", "while true; do echo hello | "
                                                       "nc -l -p 9090; done"])
    time.sleep(0.5)
    url = client.runtime.PortForward(client.pb.PortForwardRequest(pod_sandbox_id=pod)).url
    host, path = url[len("http://"):].split("/", 1)
    h, p = host.rsplit(":", 1)
    s = socket.create_connection((h, int(p)), timeout=10)
    try:
        s.sendall((f"GET /{path}?port=9090 HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n"
                   "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        head, rest = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101") and b"v4.channel.k8s.io" in head
        reader = ws.Reader(require_mask=False)
        msgs = reader.feed(rest)
        data = b""
        deadline = time.monotonic() + 10
        while b"hello" not in data and time.monotonic() < deadline:
            for m in msgs:
                if m.data[:1] == b"\x00":
                    data += m.data[1:]
            if b"hello" in data:
                break
            msgs = reader.feed(s.recv(4096))
        # each channel first says which port it is for
        assert data.startswith(channels.port_prefix(9090)) and b"hello\n" in data
    finally:
        s.close()
    cri.crictl("rmp", "-f", pod)
