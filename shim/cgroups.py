"""The shim's view of its container's cgroup (v1): metrics, updates, OOM events
(OOM kills also on v2).

The container's cgroup directories are read from ``/proc/<pid>/cgroup`` of
its PID 1 (so this works whichever runtime made them), minus the hierarchies
where the container sits in the shim's own cgroup (a container without a
cgroup of its own has no metrics and no OOM events, rather than the shim's).

Metrics follow containerd's cgroups module (``io.containerd.cgroups.v1.Metrics``:
the same files read into the same fields); updates take the OCI
``LinuxResources`` JSON that ``Tasks.Update`` carries; OOM events come from
``memory.oom_control`` through an eventfd registered in
``cgroup.event_control`` (Documentation/admin-guide/cgroup-v1/memory.rst,
"Memory thresholds" and "OOM Control"); and when the container's PID 1
exits, the ``oom_kill`` count (``memory.oom_control`` on v1,
``memory.events`` on v2) says whether the OOM killer struck in the cgroup
meanwhile, so that the OOM event goes out before the exit it caused.
"""
from __future__ import annotations

import os

from pallet.core import errors
from pallet.linux.cgroupfs import directories, read as _read, read_int, read_keyed as _keyed

from pallet.proto import shim_task as m

_USER_HZ = 100  # cpuacct.stat counts in USER_HZ ticks (proc(5))


def paths_of(pid: int) -> dict[str, str]:
    """controller -> directory of the cgroup of ``pid``, where it is not the shim's own."""
    try:
        theirs, ours = directories(pid), directories()
    except (OSError, ValueError):
        return {}
    return {name: d for name, d in theirs.items() if ours.get(name) != d}


def _int(path: str) -> int:
    return max(read_int(path), 0)


def _device_name(major: int, minor: int) -> str:
    try:
        for line in _read(f"/sys/dev/block/{major}:{minor}/uevent").splitlines():
            if line.startswith("DEVNAME="):
                return "/dev/" + line[len("DEVNAME="):]
    except OSError:
        pass
    return ""


def _blkio(path: str) -> list:
    entries = []
    try:
        text = _read(path)
    except OSError:
        return entries
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, minor = (int(x) for x in parts[0].split(":"))
        entries.append(m.BlkIOEntry(op=parts[1], device=_device_name(major, minor), major=major,
                                    minor=minor, value=int(parts[2])))
    return entries


def _memory_entry(d: str, prefix: str):
    if not os.path.exists(os.path.join(d, prefix + "usage_in_bytes")):
        return None
    return m.MemoryEntry(limit=_int(os.path.join(d, prefix + "limit_in_bytes")),
                         usage=_int(os.path.join(d, prefix + "usage_in_bytes")),
                         max=_int(os.path.join(d, prefix + "max_usage_in_bytes")),
                         failcnt=_int(os.path.join(d, prefix + "failcnt")))


def metrics(paths: dict[str, str]):
    """The container's cgroup statistics as ``io.containerd.cgroups.v1.Metrics``."""
    out = m.Metrics()
    if "pids" in paths:
        out.pids = m.PidsStat(current=_int(os.path.join(paths["pids"], "pids.current")),
                              limit=_int(os.path.join(paths["pids"], "pids.max")))
    cpu_dir = paths.get("cpuacct")
    if cpu_dir:
        stat = _keyed(os.path.join(cpu_dir, "cpuacct.stat"))
        try:
            per_cpu = [int(x) for x in _read(os.path.join(cpu_dir, "cpuacct.usage_percpu")).split()]
        except (OSError, ValueError):
            per_cpu = []
        tick = 1_000_000_000 // _USER_HZ
        usage = m.CPUUsage(total=_int(os.path.join(cpu_dir, "cpuacct.usage")),
                           kernel=stat.get("system", 0) * tick, user=stat.get("user", 0) * tick,
                           per_cpu=per_cpu)
        throttle = None
        if "cpu" in paths:
            t = _keyed(os.path.join(paths["cpu"], "cpu.stat"))
            throttle = m.Throttle(periods=t.get("nr_periods", 0),
                                  throttled_periods=t.get("nr_throttled", 0),
                                  throttled_time=t.get("throttled_time", 0))
        out.cpu = m.CPUStat(usage=usage, throttling=throttle or m.Throttle())
    mem_dir = paths.get("memory")
    if mem_dir:
        raw = _keyed(os.path.join(mem_dir, "memory.stat"))
        mem = m.MemoryStat()
        for key, field in zip(m.MEMORY_STAT_KEYS, m.MEMORY_FIELDS):
            setattr(mem, field, raw.get(key, 0))
            if hasattr(mem, "total_" + field):
                setattr(mem, "total_" + field, raw.get("total_" + key, 0))
        mem.usage = _memory_entry(mem_dir, "memory.")
        mem.swap = _memory_entry(mem_dir, "memory.memsw.")
        mem.kernel = _memory_entry(mem_dir, "memory.kmem.")
        mem.kernel_tcp = _memory_entry(mem_dir, "memory.kmem.tcp.")
        out.memory = mem
        oc = _keyed(os.path.join(mem_dir, "memory.oom_control"))
        out.memory_oom_control = m.MemoryOomControl(
            oom_kill_disable=oc.get("oom_kill_disable", 0), under_oom=oc.get("under_oom", 0),
            oom_kill=oc.get("oom_kill", 0))
    blk_dir = paths.get("blkio")
    if blk_dir:
        def pick(name):
            entries = _blkio(os.path.join(blk_dir, f"blkio.{name}"))
            return entries or _blkio(os.path.join(blk_dir, f"blkio.throttle.{name}"))
        out.blkio = m.BlkIOStat(
            io_service_bytes_recursive=pick("io_service_bytes_recursive"),
            io_serviced_recursive=pick("io_serviced_recursive"),
            io_queued_recursive=_blkio(os.path.join(blk_dir, "blkio.io_queued_recursive")),
            io_service_time_recursive=_blkio(os.path.join(blk_dir,
                                                          "blkio.io_service_time_recursive")),
            io_wait_time_recursive=_blkio(os.path.join(blk_dir, "blkio.io_wait_time_recursive")),
            io_merged_recursive=_blkio(os.path.join(blk_dir, "blkio.io_merged_recursive")),
            io_time_recursive=_blkio(os.path.join(blk_dir, "blkio.io_time_recursive")),
            sectors_recursive=_blkio(os.path.join(blk_dir, "blkio.sectors_recursive")))
    return out


def pids(paths: dict[str, str], fallback: int) -> list[int]:
    """The pids of the container's cgroup, or just ``fallback`` (its PID 1) without one."""
    for name in ("pids", "freezer", "memory", "cpu", "devices", "cpuacct"):
        d = paths.get(name)
        if d:
            try:
                return sorted(int(x) for x in _read(os.path.join(d, "cgroup.procs")).split())
            except (OSError, ValueError):
                return []
    return [fallback] if fallback and os.path.exists(f"/proc/{fallback}") else []


def _write(d: str, name: str, value) -> None:
    path = os.path.join(d, name)
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise errors.PalletError(
            f"write {value} to {path}: {(e.strerror or str(e)).lower()}") from None


def update(paths: dict[str, str], res: dict) -> None:
    """Apply OCI LinuxResources (the part cgroup v1 has) to the container's cgroup."""
    if not paths:
        raise errors.FailedPrecondition("the container has no cgroup of its own to update")
    mem, cpu = res.get("memory") or {}, res.get("cpu") or {}
    d = paths.get("memory")
    if d and mem:
        limit, swap = mem.get("limit"), mem.get("swap")
        current = _int(os.path.join(d, "memory.limit_in_bytes"))
        # memsw must stay >= the memory limit: raise it first when growing
        if swap is not None and limit is not None and limit > current:
            _write(d, "memory.memsw.limit_in_bytes", swap)
            _write(d, "memory.limit_in_bytes", limit)
        else:
            if limit is not None:
                _write(d, "memory.limit_in_bytes", limit)
            if swap is not None and os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
                _write(d, "memory.memsw.limit_in_bytes", swap)
        if mem.get("reservation") is not None:
            _write(d, "memory.soft_limit_in_bytes", mem["reservation"])
        if mem.get("swappiness") is not None and int(mem["swappiness"]) >= 0:
            _write(d, "memory.swappiness", mem["swappiness"])
    d = paths.get("cpu")
    if d and cpu:
        for key, name in (("shares", "cpu.shares"), ("period", "cpu.cfs_period_us"),
                          ("quota", "cpu.cfs_quota_us"), ("realtimePeriod", "cpu.rt_period_us"),
                          ("realtimeRuntime", "cpu.rt_runtime_us")):
            if cpu.get(key) not in (None, 0):
                _write(d, name, cpu[key])
    d = paths.get("cpuset")
    if d and cpu:
        if cpu.get("cpus"):
            _write(d, "cpuset.cpus", cpu["cpus"])
        if cpu.get("mems"):
            _write(d, "cpuset.mems", cpu["mems"])
    d = paths.get("pids")
    if d and res.get("pids"):
        limit = res["pids"].get("limit", 0)
        _write(d, "pids.max", limit if limit and limit > 0 else "max")
    d = paths.get("blkio")
    if d and (res.get("blockIO") or {}).get("weight"):
        _write(d, "blkio.weight", res["blockIO"]["weight"])


def oom_kills(paths: dict[str, str]) -> int:
    """How many processes the OOM killer has killed in the memory cgroup so
    far (``oom_kill``: memory.oom_control on v1, memory.events on v2)."""
    for d, name in ((paths.get("memory"), "memory.oom_control"),
                    (paths.get(""), "memory.events")):
        if d:
            count = _keyed(os.path.join(d, name)).get("oom_kill")
            if count is not None:
                return count
    return 0


class OOMWatch:
    """Calls ``on_oom()`` from the loop whenever the memory cgroup hits its limit."""

    def __init__(self, loop, memory_dir: str, on_oom):
        self.loop, self.dir, self.on_oom = loop, memory_dir, on_oom
        self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        control = os.open(os.path.join(memory_dir, "memory.oom_control"),
                          os.O_RDONLY | os.O_CLOEXEC)
        try:
            fd = os.open(os.path.join(memory_dir, "cgroup.event_control"),
                         os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, f"{self.efd} {control}".encode())
            finally:
                os.close(fd)
        except OSError:
            os.close(self.efd)
            raise
        finally:
            os.close(control)
        loop.add_reader(self.efd, self._readable)

    def poll(self) -> None:
        """Deliver an OOM the kernel signalled but the loop has not read yet."""
        if self.efd >= 0:
            self._readable()

    def _readable(self) -> None:
        try:
            os.eventfd_read(self.efd)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        # the eventfd is signalled too when the cgroup goes away
        if not os.path.isdir(self.dir):
            self.close()
            return
        self.on_oom()

    def close(self) -> None:
        if self.efd >= 0:
            self.loop.forget(self.efd)
            os.close(self.efd)
            self.efd = -1
