"""palletd with ``[roles] network = "net_cni"``: containers run by the docker
CLI get their network from a CNI configuration list (Debian's bridge,
host-local and portmap plugins), with docker's view of it (inspect, network
ls), published ports, and the network released when they stop."""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import tempfile
import urllib.request

import pytest

from cni_helpers import Network, needs_plugins

pytestmark = [pytest.mark.root, needs_plugins,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture(scope="module")
def engine(busybox_tar):
    from engines import DOCKER_CLI, Pallet

    if not shutil.which(DOCKER_CLI):
        pytest.skip("needs the docker CLI")
    base = tempfile.mkdtemp(prefix="plcni-d-", dir="/tmp")
    net = Network(base)
    e = Pallet(config=f'[roles]\nnetwork = "net_cni"\n[plugins.net_cni]\n'
                      f'conf_dir = "{net.conf_dir}"\nbin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]\n')
    try:
        e.start()
        e.docker("load", "-i", busybox_tar)
        e.cni = net
        yield e
    finally:
        e.stop()
        net.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_run_inspect_publish_and_release(engine):
    e = engine
    cid = e.docker("run", "-d", "-p", "127.0.0.1::8080", "busybox", "sh", "-c",
                   "echo cni > /tmp/i; exec httpd -f -p 8080 -h /tmp").stdout.decode().strip()
    try:
        info = json.loads(e.docker("inspect", cid).stdout)[0]
        ns = info["NetworkSettings"]
        ip = ns["IPAddress"]
        assert ipaddress.ip_address(ip) in e.cni.subnet
        assert list(ns["Networks"]) == [e.cni.name]
        port = ns["Ports"]["8080/tcp"][0]["HostPort"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/i", timeout=10) as r:
            assert r.read() == b"cni\n"
        out = e.docker("exec", cid, "cat", "/etc/hosts").stdout.decode()
        assert ip in out
        names = e.docker("network", "ls", "--format", "{{.Name}}").stdout.decode().split()
        assert set(names) >= {e.cni.name, "host", "none"}
        hosted = e.docker("run", "--rm", "--network", "host", "busybox", "ls",
                          "/sys/class/net").stdout.decode().split()
        assert e.cni.bridge in hosted
    finally:
        e.docker("rm", "-f", cid)
    leases = os.listdir(os.path.join(e.cni.ipam_dir, e.cni.name))
    assert not [n for n in leases if n[0].isdigit()]
