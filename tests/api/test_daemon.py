"""palletd as a process: flags, configuration errors, socket, pid file, signals."""
from __future__ import annotations

import os
import stat
import subprocess

import pytest

from api_harness import Palletd
from engines import VENV_BIN

PALLETD = os.path.join(VENV_BIN, "palletd")


def test_list_plugins():
    r = subprocess.run([PALLETD, "--list-plugins"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "ROLE"]
    assert any(line.split()[:2] == ["api_rest", "client_protocol"] for line in lines)


@pytest.mark.parametrize("content, needle", [
    ("this is = = not toml", "parse configuration"),
    ('[roles]\nruntime = "no_such_plugin"\n', "no_such_plugin"),
])
def test_config_error_is_one_line(tmp_path, content, needle):
    cfg = tmp_path / "pallet.toml"
    cfg.write_text(content)
    r = subprocess.run([PALLETD, "--config", str(cfg), "--data-root", str(tmp_path / "d"),
                        "--exec-root", str(tmp_path / "r"), "-H", f"unix://{tmp_path}/s.sock"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("palletd: ") and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_missing_config_file(tmp_path):
    r = subprocess.run([PALLETD, "--config", str(tmp_path / "nope.toml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("palletd: ")


def test_bad_host_flag(tmp_path):
    r = subprocess.run([PALLETD, "-H", "http://nowhere", "--data-root", str(tmp_path / "d"),
                        "--exec-root", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("palletd: ") and "-H" in r.stderr


@pytest.mark.root
def test_socket_pidfile_and_sigterm(busybox_tar):
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    d = Palletd(os.environ.get("PALLET_API_CONTAINERD", "pallet"))
    try:
        d.start()
        st = os.stat(d.sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        with open(os.path.join(d.exec_root, "palletd.pid")) as f:
            assert int(f.read()) == d.proc.pid
        children = []
        if d.mode != "real":
            with open(os.path.join(d.exec_root, "containerd", "pallet-containerd.pid")) as f:
                children.append(int(f.read()))
        d.stop_daemon()
        assert d.proc.returncode == 0
        assert not os.path.exists(d.sock)
        assert not os.path.exists(os.path.join(d.exec_root, "palletd.pid"))
        for pid in children:  # pallet-containerd stopped with it, in order
            assert not os.path.exists(f"/proc/{pid}") or \
                open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    finally:
        d.cleanup()
