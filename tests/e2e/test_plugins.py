"""Plugins are found through entry points: a third-party one joins, a broken
configuration is refused, and the core can be embedded without palletd."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engines import Pallet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))

pytestmark = pytest.mark.root


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True,
                   stdout=subprocess.DEVNULL)


@pytest.fixture
def hello_plugin():
    pip("install", "--no-deps", "--no-build-isolation", os.path.join(REPO, "examples", "hello_plugin"))
    try:
        yield
    finally:
        pip("uninstall", "-y", "pallet-hello")


def test_list_plugins_shows_roles_and_distributions():
    out = subprocess.run([os.path.join(VENV_BIN, "palletd"), "--list-plugins"],
                         capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert rows["runtime_ns"][:2] == ["runtime", "pallet"]
    assert rows["api_rest"][:2] == ["client_protocol", "pallet"]
    assert "hello" not in rows


def test_hello_plugin_is_called_on_container_start(hello_plugin, busybox_tar, tmp_path):
    out = subprocess.run([os.path.join(VENV_BIN, "palletd"), "--list-plugins"],
                         capture_output=True, text=True, check=True).stdout
    assert any(l.split()[:3] == ["hello", "extension", "pallet-hello"] for l in out.splitlines())
    log = tmp_path / "hello.log"
    engine = Pallet(config=f'[plugins.hello]\npath = "{log}"\n')
    try:
        engine.start()
        engine.docker("load", "-i", busybox_tar)
        cid = engine.docker("run", "-d", "--name", "greeted", "busybox", "true").stdout.decode().strip()
        engine.docker("wait", cid)
    finally:
        engine.stop()
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and cid in lines[0] and "greeted" in lines[0]


def test_daemon_runs_without_the_plugin(pallet_engine):
    # (pallet_engine runs with no hello plugin installed)
    assert pallet_engine.docker("run", "--rm", "busybox", "echo", "ok").stdout == b"ok\n"


@pytest.mark.parametrize("roles, needle", [
    ('runtime = "crun"', "role runtime: configured crun, which is not installed; "
                         "installed candidates: [runtime_ns, runtime_oci]"),
    ('init = ""', "role init is left empty; installed candidates: [init_exec, init_tini]"),
    ('network = ["net_bridge", "net_bridge2"]', "role network is filled twice"),
])
def test_bad_roles_stop_the_daemon_with_one_line(tmp_path, roles, needle):
    conf = tmp_path / "pallet.toml"
    conf.write_text(f"[roles]\n{roles}\n")
    r = subprocess.run([os.path.join(VENV_BIN, "palletd"), "--config", str(conf),
                        "-H", f"unix://{tmp_path}/s.sock", "--data-root", str(tmp_path / "d"),
                        "--exec-root", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [f"palletd: {needle}"] or \
        (needle in r.stderr and len(r.stderr.strip().splitlines()) == 1), r.stderr
    assert "Traceback" not in r.stderr


def test_embed_example_runs_a_container(busybox_tar):
    r = subprocess.run([sys.executable, os.path.join(REPO, "examples", "embed.py"), busybox_tar,
                        "sh", "-c", "echo embedded $$ $(hostname); exit 3"],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout == "embedded 1 embedded\n", r.stderr
    assert r.returncode == 3
