"""``--metrics-addr``: palletd's Prometheus metrics scraped over loopback,
read with prometheus_client's parser; the ``engine_daemon_*`` families have
the names, types and labels of dockerd 20.10's."""
from __future__ import annotations

import socket
import urllib.request

import pytest

from ctr_helpers import out, start_palletd, wait_for
from dockerd_helpers import RealDocker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(addr: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families, name, suffix="", **labels) -> float:
    fam = families[name]
    total = 0.0
    for s in fam.samples:
        if s.name == name + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
    return total


@pytest.fixture(scope="module")
def metered(busybox_tar):
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root")
    addr = f"127.0.0.1:{free_port()}"
    d = start_palletd(busybox_tar, "--metrics-addr", addr)
    d.metrics_addr = addr
    try:
        yield d
    finally:
        d.cleanup()


def test_engine_and_pallet_metrics(metered):
    d, addr = metered, metered.metrics_addr
    before = scrape(addr)
    cid = out(d.docker("run", "-d", "--health-cmd", "exit 1", "--health-interval", "300ms",
                       "busybox", "sleep", "300"))
    net = out(d.docker("network", "create", "metrics-net"))
    d.docker("network", "connect", "metrics-net", cid)
    wait_for(lambda: value(scrape(addr), "engine_daemon_health_checks_failed", "_total") >= 2,
             30)
    m = scrape(addr)
    for action in ("create", "start"):
        assert value(m, "engine_daemon_container_actions_seconds", "_count", action=action) >= \
            value(before, "engine_daemon_container_actions_seconds", "_count",
                  action=action) + 1
    for action in ("create", "connect"):
        assert value(m, "engine_daemon_network_actions_seconds", "_count", action=action) >= 1
    assert value(m, "engine_daemon_container_states_containers", state="running") == 1
    assert value(m, "engine_daemon_events", "_total") > value(before, "engine_daemon_events",
                                                              "_total")
    assert value(m, "engine_daemon_health_checks", "_total") >= 2
    assert value(m, "engine_daemon_engine_cpus_cpus") >= 1
    assert value(m, "pallet_containerd_rpc_seconds", "_count", method="Tasks/Start") >= 1
    assert value(m, "pallet_containerd_rpc_seconds", "_count", method="Tasks/Create") >= 1
    assert value(m, "pallet_shims_running") >= 1
    assert "pallet_pull_bytes" in m
    d.docker("rm", "-f", cid)
    d.docker("network", "rm", net)
    m = scrape(addr)
    assert value(m, "engine_daemon_container_actions_seconds", "_count", action="delete") >= 1
    assert value(m, "engine_daemon_network_actions_seconds", "_count", action="delete") >= 1
    assert value(m, "engine_daemon_container_states_containers", state="running") == 0


def test_off_by_default_config_key_and_warning(busybox_tar):
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = start_palletd(busybox_tar)
    try:
        assert "metrics listen" not in d.log_text()
    finally:
        d.cleanup()
    from api_harness import Palletd
    port = free_port()
    d = Palletd("pallet", config=f'[daemon]\nmetrics-addr = "0.0.0.0:{port}"\n')
    try:
        d.start()
        assert "engine_daemon_engine_info" in scrape(f"127.0.0.1:{port}")
        assert "is not a loopback address: anyone who can reach it can read the metrics" \
            in d.log_text()
    finally:
        d.cleanup()


def test_engine_families_like_dockerd(metered, busybox_tar):
    import os
    if not RealDocker.available():
        pytest.skip("needs Debian's dockerd")
    addr = f"127.0.0.1:{free_port()}"
    docker = RealDocker("--metrics-addr", addr, "--experimental")
    try:
        docker.start()
        docker.docker("load", "-i", busybox_tar)
        docker.docker("run", "--rm", "busybox", "true")
        theirs = scrape(addr)
    finally:
        docker.cleanup()
    ours = scrape(metered.metrics_addr)
    mine = {n for n in ours if n.startswith("engine_daemon_")}
    assert mine <= set(theirs), mine - set(theirs)
    for name in mine:
        assert ours[name].type == theirs[name].type, name
        their_labels = {k for s in theirs[name].samples for k in s.labels if k != "le"}
        our_labels = {k for s in ours[name].samples for k in s.labels if k != "le"}
        assert our_labels == their_labels or not their_labels, name
    assert os.path.exists("/proc")
