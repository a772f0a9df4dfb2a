"""pallet.linux.cgroupfs.directories: a process's cgroup directories from its
/proc/<pid>/cgroup and this host's cgroup mounts (whatever their layout:
v1, v2, or both as on this hybrid host)."""
from __future__ import annotations

import os
import subprocess

import pytest

from pallet.linux.cgroupfs import by_controller, cgroup_mounts, directories, mount_points


def _listed(directory: str, pid: int) -> bool:
    with open(os.path.join(directory, "cgroup.procs")) as f:
        return str(pid) in f.read().split()


def test_every_mounted_hierarchy_gives_the_directory_that_lists_the_process():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        dirs = directories(proc.pid)
        points = mount_points()
        mounted = [name for name in by_controller(proc.pid) if name in points]
        assert mounted and sorted(dirs) == sorted(mounted)
        for name, d in dirs.items():
            assert d.startswith(points[name].rstrip("/") + "/") or d == points[name]
            assert _listed(d, proc.pid), (name, d)
    finally:
        proc.kill()
        proc.wait()


def test_cgroup_v2_is_under_its_own_mount_point():
    """On a hybrid host the v2 hierarchy is mounted below /sys/fs/cgroup (at
    unified/ here), not at it: its directory comes from the mount."""
    v2 = [point for kind, _o, _r, point in cgroup_mounts() if kind == "cgroup2"]
    if not v2:
        pytest.skip("no cgroup2 mount on this host")
    d = directories()[""]
    assert d.startswith(v2[0])
    assert _listed(d, os.getpid())


def test_a_process_that_is_gone():
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(OSError):
        directories(proc.pid)
