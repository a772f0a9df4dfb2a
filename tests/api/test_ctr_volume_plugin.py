"""Volume plugins: a real plugin process (volplugin_server.py, docker's plugin
protocol over a unix socket) found in palletd's ``volume-plugin-dirs``, driven
through the docker CLI: create with options, mount and unmount by container,
``--volume-driver`` and ``--mount ...,volume-driver=``, list filters, remove,
the driver's errors, and the volumes known again after palletd restarts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from api_harness import Palletd
from engines import wait_socket

pytestmark = pytest.mark.root

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "volplugin_server.py")
DRIVER = "pa-vol"


class Plugged:
    def __init__(self, root):
        self.plugins = os.path.join(root, "plugins")
        self.data = os.path.join(root, "data")
        self.calls_path = os.path.join(root, "calls.jsonl")
        os.makedirs(self.plugins)
        os.makedirs(self.data)
        sock = os.path.join(self.plugins, f"{DRIVER}.sock")
        self.log = open(os.path.join(root, "plugin.log"), "wb")
        self.proc = subprocess.Popen([sys.executable, SERVER, sock, self.data, self.calls_path],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_socket(sock, self.proc, self.log.name)
        self.d = Palletd(os.environ.get("PALLET_API_CONTAINERD", "pallet"),
                         config=f'[engine]\nvolume-plugin-dirs = ["{self.plugins}"]\n')

    def calls(self, method: str) -> list[dict]:
        try:
            with open(self.calls_path) as f:
                lines = [json.loads(x) for x in f]
        except FileNotFoundError:
            return []
        return [x["body"] for x in lines if x["method"] == method]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def plugged(busybox_tar, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    p = Plugged(str(tmp_path_factory.mktemp("volplug")))
    try:
        p.d.start()
        p.d.docker("load", "-i", busybox_tar)
        yield p
    finally:
        try:
            p.d.cleanup()
        finally:
            p.stop()


def _inspect(d, name):
    return json.loads(d.docker("volume", "inspect", name).stdout)[0]


def test_plugin_volume_create_mount_unmount(plugged):
    d = plugged.d
    d.docker("volume", "create", "-d", DRIVER, "-o", "size=1", "--label", "k=v", "pv1")
    info = _inspect(d, "pv1")
    assert info["Driver"] == DRIVER and info["Scope"] == "global"
    assert info["Mountpoint"] == os.path.join(plugged.data, "pv1")
    assert info["Labels"] == {"k": "v"} and info["Options"] == {"size": "1"}
    assert plugged.calls("Plugin.Activate")
    assert {"Name": "pv1", "Opts": {"size": "1"}} in plugged.calls("VolumeDriver.Create")
    # a container writes through the plugin's directory
    cid = d.docker("run", "-d", "-v", "pv1:/data", "busybox", "sh", "-c",
                   "echo through-the-plugin > /data/f").stdout.decode().strip()
    assert d.docker("wait", cid).stdout.strip() == b"0"
    with open(os.path.join(plugged.data, "pv1", "f")) as f:
        assert f.read() == "through-the-plugin\n"
    mounts = [c for c in plugged.calls("VolumeDriver.Mount") if c["Name"] == "pv1"]
    assert mounts and mounts[-1]["ID"] == cid
    unmounts = [c for c in plugged.calls("VolumeDriver.Unmount") if c["Name"] == "pv1"]
    assert unmounts and unmounts[-1]["ID"] == cid
    c = json.loads(d.docker("inspect", cid).stdout)[0]
    m = [m for m in c["Mounts"] if m["Destination"] == "/data"][0]
    assert m["Driver"] == DRIVER and m["Name"] == "pv1"
    # in use: not removed; then removed through the plugin
    r = d.docker("volume", "rm", "pv1", check=False)
    assert r.returncode != 0 and b"volume is in use" in r.stderr
    d.docker("rm", cid)
    d.docker("volume", "rm", "pv1")
    assert {"Name": "pv1"} in plugged.calls("VolumeDriver.Remove")
    assert not os.path.exists(os.path.join(plugged.data, "pv1"))
    assert b"pv1" not in d.docker("volume", "ls", "-q").stdout


def test_volume_driver_flags_and_filters(plugged):
    d = plugged.d
    d.docker("run", "--rm", "--volume-driver", DRIVER, "-v", "pv2:/d", "busybox",
             "sh", "-c", "echo two > /d/x")
    d.docker("run", "--rm", "--mount", f"type=volume,src=pv3,dst=/d,volume-driver={DRIVER}",
             "busybox", "sh", "-c", "echo three > /d/x")
    for name, text in (("pv2", "two\n"), ("pv3", "three\n")):
        assert _inspect(d, name)["Driver"] == DRIVER
        with open(os.path.join(plugged.data, name, "x")) as f:
            assert f.read() == text
    d.docker("volume", "create", "pv-local")
    mine = d.docker("volume", "ls", "-q", "--filter", f"driver={DRIVER}").stdout.split()
    assert b"pv2" in mine and b"pv3" in mine and b"pv-local" not in mine
    d.docker("volume", "rm", "pv2", "pv3", "pv-local")


def test_driver_errors(plugged):
    d = plugged.d
    r = d.docker("volume", "create", "-d", "pa-nodriver", "x1", check=False)
    assert r.returncode != 0 and b'plugin "pa-nodriver" not found' in r.stderr
    r = d.docker("volume", "create", "-d", DRIVER, "-o", "fail=1", "pv9", check=False)
    assert r.returncode != 0 and b"refusing to create pv9" in r.stderr
    assert b"pv9" not in d.docker("volume", "ls", "-q").stdout
    r = d.docker("run", "--rm", "--volume-driver", "pa-nodriver", "-v", "x2:/d", "busybox",
                 "true", check=False)
    assert r.returncode != 0 and b'plugin "pa-nodriver" not found' in r.stderr


def test_plugin_volumes_survive_a_daemon_restart(plugged):
    d = plugged.d
    d.docker("volume", "create", "-d", DRIVER, "pv4")
    d.stop_daemon()
    d.start()
    assert _inspect(d, "pv4")["Driver"] == DRIVER
    out = d.docker("run", "--rm", "-v", "pv4:/d", "busybox", "sh", "-c",
                   "echo again > /d/y; cat /d/y").stdout
    assert out == b"again\n"
    d.docker("volume", "rm", "pv4")
