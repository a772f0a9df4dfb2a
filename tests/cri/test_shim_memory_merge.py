"""The kernel's same-page merging of pallet-shim's memory (``[containerd]
shim-memory-merge``): the zygote's private writable mappings are marked
mergeable, the shims forked from it inherit the mark, the containers'
processes (past their execve) never carry it; "on" starts ksmd, which then
really merges the shims' pages; "mark" leaves ksmd to the host, "off" marks
nothing, anything else is refused when pallet-containerd starts."""
from __future__ import annotations

import glob
import os
import subprocess
import time

import pytest

from cri_helpers import CriDaemon, needs_crictl, needs_root
from engines import KSM, HostKsm, ksm_value
from pallet.linux import ksm

pytestmark = needs_root + [needs_crictl,
                           pytest.mark.skipif(not os.path.exists(os.path.join(KSM, "run")),
                                              reason="the kernel has no KSM")]


class MergeDaemon(CriDaemon):
    """pallet-containerd with ``shim-memory-merge`` set (None: the default)."""

    def __init__(self, setting: str | None = None):
        super().__init__()
        self.setting = setting

    def config_text(self) -> str:
        head = f'[containerd]\nshim-memory-merge = "{self.setting}"\n\n' if self.setting else ""
        return head + super().config_text()


def shim_of(d, cid: str) -> int:
    path, = glob.glob(os.path.join(d.state, "io.containerd.runtime.v2.task", "k8s.io", cid,
                                   "shim.pid"))
    with open(path) as f:
        return int(f.read())


def zygote_of(d) -> int:
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if cmd.startswith(b"pallet-shim zygote ") and d.state.encode() in cmd:
            return int(entry)
    raise AssertionError("no zygote")


@pytest.fixture
def ksm_stopped():
    """ksmd stopped for the test, put back as it was after it."""
    ksm = HostKsm()
    with open(os.path.join(KSM, "run"), "w") as f:
        f.write("0")
    yield
    ksm.restore()


def _pod(d, name: str) -> tuple[int, int]:
    """A pod running ``sleep``: (its shim's pid, the container's pid)."""
    pod = d.run_pod(name)
    cid = d.run_container(pod, name, "c", ["sleep", "1000"])
    return shim_of(d, cid), d.inspect(cid)["info"]["pid"]


def test_on_merges_the_shims_pages_and_never_the_containers(busybox_tar, ksm_stopped):
    d = MergeDaemon()   # the default: "on"
    try:
        d.start()
        d.import_image(busybox_tar)
        shims = [_pod(d, f"m{i}") for i in range(2)]
        assert ksm_value("run") == "1"        # ksmd started
        zygote = zygote_of(d)
        marked = ksm.marked_mappings(zygote)
        assert "[heap]" in marked and marked.count("[anon]") >= 2
        assert "[stack]" not in marked
        for shim, container in shims:
            assert set(ksm.marked_mappings(shim)) >= {"[heap]", "[anon]"}
            assert ksm.marked_mappings(container) == []   # execve dropped the mark
        # ksmd goes over the zygote and the two shims in a few seconds: the
        # pages the shims copied by running are merged again
        deadline = time.monotonic() + 120
        merged = 0
        while time.monotonic() < deadline:
            merged = min(ksm.merging_pages(shim) for shim, _c in shims)
            if merged > 0:
                break
            time.sleep(0.5)
        assert merged > 0
        # the containers work as ever
        assert all(os.path.exists(f"/proc/{c}") for _s, c in shims)
    finally:
        d.stop()


def test_mark_leaves_ksmd_to_the_host_and_off_marks_nothing(busybox_tar, ksm_stopped):
    for setting in ("mark", "off"):
        d = MergeDaemon(setting)
        try:
            d.start()
            d.import_image(busybox_tar)
            shim, container = _pod(d, setting)
            assert ksm_value("run") == "0"
            assert bool(ksm.marked_mappings(shim)) == (setting == "mark")
            assert bool(ksm.marked_mappings(zygote_of(d))) == (setting == "mark")
            assert ksm.marked_mappings(container) == []
        finally:
            d.stop()


def test_a_bad_setting_is_refused_at_start():
    d = MergeDaemon("yes")
    try:
        d.config_path = os.path.join(d.base, "config.toml")
        with open(d.config_path, "w") as f:
            f.write(d.config_text())
        r = subprocess.run(d.command(), capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines()[-1] == (
            "pallet-containerd: configuration: [containerd] shim-memory-merge must be one of "
            "'on', 'mark', 'off', not 'yes'")
        assert "Traceback" not in r.stderr
    finally:
        d.stop()
