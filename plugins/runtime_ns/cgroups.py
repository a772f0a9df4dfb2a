"""cgroup v1 (and hybrid) for a container, as runc 1.1's fs driver does it.

Paths: with ``linux.cgroupsPath`` absolute, below each hierarchy's root;
relative (or, without one, the container's id -- runc gives every container
a cgroup of its own), below the caller's own cgroup in that hierarchy.  Every
mounted hierarchy of runc's subsystems is used, ``name=systemd`` included,
and in hybrid mode (a cgroup2 mount beside the v1 ones) the unified
hierarchy too (key ``""``), so that the container's /proc/self/cgroup reads
as under runc.

The parent creates the directories and writes the limits in runc's order
(cpuset, devices, memory, cpu, pids, blkio, hugetlb, net_cls, net_prio),
with runc's write sequences (memory before or after swap, a period that the
parent's quota refuses retried after the quota) and its messages
(``failed to write "9": write <path>: <errno>``); the devices cgroup goes
from its current rules to the target with the fewest writes (runc's
emulator, ``devices.py``).  The container process joins the directories
itself before entering its namespaces.
"""
from __future__ import annotations

import errno
import os
import time

from pallet.linux.cgroupfs import by_controller, cgroup_mounts, read_keyed as _flat

#: runc's subsystems in the order its fs driver sets them
SUBSYSTEMS = ("cpuset", "devices", "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb",
              "net_cls", "net_prio", "perf_event", "freezer", "rdma", "name=systemd", "misc")
#: kept for callers that list controllers (the cgroup mount in the container)
CONTROLLERS = SUBSYSTEMS

_mounts: dict[str, tuple[str, str]] | None = None


class CgroupError(Exception):
    """Creating or configuring a cgroup failed (runc's message)."""


class ApplyError(CgroupError):
    """A limit runc writes as it places the process (cpuset, realtime), not
    with the others: its failure is worded apart.  ``before_memory``: runc
    had not made the memory cgroup yet (cpuset comes first)."""

    def __init__(self, message: str, before_memory: bool = False):
        super().__init__(message)
        self.before_memory = before_memory


def _scan() -> dict[str, tuple[str, str]]:
    """subsystem -> (mount point, root of the mount); "" for the unified
    hierarchy when v1 hierarchies sit beside it (hybrid)."""
    found: dict[str, tuple[str, str]] = {}
    unified = None
    for kind, options, root, point in cgroup_mounts():
        if kind == "cgroup2":
            unified = unified or (point, root)
            continue
        for opt in options:
            if opt in SUBSYSTEMS and opt not in found:
                found[opt] = (point, root)
    if found and unified:
        found[""] = unified
    return found


def mounts() -> dict[str, str]:
    """subsystem -> mount point of its hierarchy (read once per process)."""
    global _mounts
    if _mounts is None:
        _mounts = _scan()
    return {k: v[0] for k, v in _mounts.items()}


def normalize(cgroups_path: str) -> str:
    """``cgroupsPath`` cleaned as runc's CleanPath does (a relative path stays
    relative).  The systemd form ``slice:prefix:name`` is a plain name here, as
    for runc's cgroupfs driver (only --systemd-cgroup reads it otherwise)."""
    if not cgroups_path:
        return ""
    path = os.path.normpath(cgroups_path)
    if not path.startswith("/"):
        path = os.path.relpath(os.path.normpath("/" + path), "/")
    return path


def paths_for(cgroups_path: str) -> dict[str, str]:
    """subsystem -> absolute directory of the container's cgroup."""
    mounts()
    path = normalize(cgroups_path)
    own = None
    out = {}
    for name, (point, root) in _mounts.items():
        if path.startswith("/"):
            rel = path
        else:
            if own is None:
                own = by_controller()
            mine = own.get(name, "/")
            mine = "/" + os.path.relpath(mine, root) if root != "/" else mine
            rel = os.path.join(mine, path)
        out[name] = os.path.normpath(point + "/" + rel.lstrip("/"))
    return out


# --- files, as runc's cgroups.WriteFile reports them ---------------------------------------

def write(directory: str, name: str, value) -> None:
    path = os.path.join(directory, name)
    data = str(value)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"openat2 {path}: {os.strerror(e.errno).lower()}") from None
    try:
        os.write(fd, data.encode())
    except OSError as e:
        raise CgroupError(f'failed to write "{data}": write {path}: '
                          f"{os.strerror(e.errno).lower()}") from e
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode().strip()


def exists(paths: dict[str, str]) -> bool:
    return os.path.isdir(paths.get("devices") or next(iter(paths.values()), ""))


def all_pids(paths: dict[str, str]) -> list[int]:
    """Every pid in the container's cgroup and below (runc's GetAllPids of the
    devices hierarchy, walked in lexical order)."""
    top = paths.get("devices") or paths.get("freezer") or next(iter(paths.values()), None)
    out: list[int] = []
    if not top:
        return out
    for directory, dirs, _files in os.walk(top):
        dirs.sort()
        try:
            out.extend(int(p) for p in _read(os.path.join(directory, "cgroup.procs")).split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


pids = all_pids


def check_unused(paths: dict[str, str]) -> list[str]:
    """What runc checks of a cgroup before a container goes in: warnings for
    processes already there; a frozen one is an error."""
    warnings = []
    if exists(paths):
        found = all_pids(paths)
        if found:
            warnings = [f"container's cgroup is not empty: {len(found)} process(es) found",
                        "DEPRECATED: running container in a non-empty cgroup won't be supported "
                        "in runc 1.2; https://github.com/opencontainers/runc/issues/3132"]
    if freezer_state(paths) == "FROZEN":
        raise CgroupError("container's cgroup unexpectedly frozen")
    return warnings


def create(cgroups_path: str, resources: dict | None, devices=None):
    """Make the container's cgroups and apply ``resources`` (``devices``: the
    rules of the devices cgroup, the defaults included).  Returns (subsystem ->
    directory, directories created); a failure removes what it made."""
    paths = paths_for(cgroups_path)
    created: list[str] = []
    try:
        done = set()
        for name, path in paths.items():
            if path in done:  # co-mounted subsystems share a directory
                continue
            done.add(path)
            _mkdirs(path, _mounts[name][0], "cpuset" in paths and paths["cpuset"] == path,
                    created)
        apply(paths, resources or {}, devices)
    except BaseException:
        remove_dirs(created, leaves=set(paths.values()))
        raise
    return paths, created


def _mkdirs(path: str, point: str, cpuset: bool, created: list[str]) -> None:
    """mkdir -p below the mount point; a new cpuset level gets its parent's cpus
    and mems, without which it refuses tasks (cpusets(7))."""
    current = point
    for part in os.path.relpath(path, point).split("/"):
        if part in ("", "."):
            continue
        parent, current = current, os.path.join(current, part)
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            continue
        except OSError as e:
            raise CgroupError(f"mkdir {current}: {os.strerror(e.errno).lower()}") from None
        created.append(current)
        if cpuset:
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not _read(os.path.join(current, name)):
                    write(current, name, _read(os.path.join(parent, name)))


def apply(paths: dict[str, str], res: dict, devices=None) -> None:
    """runc's fs Set: every subsystem in order (``devices`` None: untouched,
    as on update)."""
    if res.get("unified"):
        raise CgroupError("invalid configuration: cannot use unified on cgroup v1")
    cpu = res.get("cpu") or {}
    if "cpuset" in paths:
        try:
            if cpu.get("cpus"):
                write(paths["cpuset"], "cpuset.cpus", cpu["cpus"])
            if cpu.get("mems"):
                write(paths["cpuset"], "cpuset.mems", cpu["mems"])
        except CgroupError as e:
            raise ApplyError(str(e), before_memory=True) from None
    if "devices" in paths and devices is not None:
        from pallet.plugins.runtime_ns.devices import set_v1
        set_v1(paths["devices"], devices)
    if "memory" in paths:
        _set_memory(paths["memory"], res.get("memory") or {})
    if "cpu" in paths:
        _set_cpu(paths["cpu"], cpu)
    if "pids" in paths and (res.get("pids") or {}).get("limit"):
        limit = res["pids"]["limit"]
        write(paths["pids"], "pids.max", limit if limit > 0 else "max")
    if "blkio" in paths:
        _set_blkio(paths["blkio"], res.get("blockIO") or {})
    for limit in res.get("hugepageLimits") or ():
        _needs(paths, "hugetlb")
        write(paths["hugetlb"], f"hugetlb.{limit['pageSize']}.limit_in_bytes", limit["limit"])
    net = res.get("network") or {}
    if net.get("classID"):
        _needs(paths, "net_cls")
    if net.get("priorities"):
        _needs(paths, "net_prio")
    if res.get("rdma"):
        _needs(paths, "rdma")
    if "net_cls" in paths and net.get("classID"):
        write(paths["net_cls"], "net_cls.classid", net["classID"])
    if "net_prio" in paths:
        for prio in net.get("priorities") or ():
            write(paths["net_prio"], "net_prio.ifpriomap", f"{prio['name']} {prio['priority']}")


def _needs(paths: dict, name: str) -> None:
    """A limit of a subsystem this host has no v1 hierarchy of: runc's error."""
    if name not in paths:
        raise CgroupError(f"cannot set {name} limit: container could not join or create cgroup")


def _set_memory(path: str, mem: dict) -> None:
    """runc's setMemoryAndSwap and the rest of the memory subsystem."""
    limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
    memsw = os.path.exists(os.path.join(path, "memory.memsw.limit_in_bytes"))
    if limit == -1 and swap == 0 and memsw:
        swap = -1
    if limit and swap:
        current = int(_read(os.path.join(path, "memory.limit_in_bytes")))
        if swap == -1 or current < swap:
            _set_swap(path, swap)
            _set_limit(path, limit)
            swap = 0
            limit = 0
    _set_limit(path, limit)
    _set_swap(path, swap)
    if mem.get("reservation"):
        write(path, "memory.soft_limit_in_bytes", mem["reservation"])
    if mem.get("disableOOMKiller"):
        write(path, "memory.oom_control", "1")
    swappiness = mem.get("swappiness")
    if swappiness is not None and swappiness != -1:
        if swappiness > 100:
            raise CgroupError(f"invalid memory swappiness value: {swappiness} (valid range is "
                              "0-100)")
        write(path, "memory.swappiness", swappiness)


def _set_limit(path: str, value: int) -> None:
    if not value:
        return
    try:
        write(path, "memory.limit_in_bytes", value)
    except CgroupError as e:
        if getattr(e.__cause__, "errno", None) != errno.EBUSY:
            raise
        usage = _read(os.path.join(path, "memory.usage_in_bytes"))
        peak = _read(os.path.join(path, "memory.max_usage_in_bytes"))
        raise CgroupError(f"unable to set memory limit to {value} (current usage: {usage}, "
                          f"peak usage: {peak})") from None


def _set_swap(path: str, value: int) -> None:
    if value:
        write(path, "memory.memsw.limit_in_bytes", value)


def _set_cpu(path: str, cpu: dict) -> None:
    """Shares read back and checked; the period first, retried after the quota
    when the parent's quota refuses it (EINVAL), as runc does."""
    if cpu.get("shares"):
        write(path, "cpu.shares", cpu["shares"])
        got = int(_read(os.path.join(path, "cpu.shares")))
        if cpu["shares"] > got:
            raise CgroupError(f"the maximum allowed cpu-shares is {got}")
        if cpu["shares"] < got:
            raise CgroupError(f"the minimum allowed cpu-shares is {got}")
    period = None
    if cpu.get("period"):
        try:
            write(path, "cpu.cfs_period_us", cpu["period"])
        except CgroupError as e:
            if getattr(e.__cause__, "errno", None) != errno.EINVAL or not cpu.get("quota"):
                raise
            period = cpu["period"]
    if cpu.get("quota"):
        write(path, "cpu.cfs_quota_us", cpu["quota"])
        if period is not None:
            write(path, "cpu.cfs_period_us", period)
    try:  # runc writes these when it places the process, before the other limits
        if cpu.get("realtimePeriod"):
            write(path, "cpu.rt_period_us", cpu["realtimePeriod"])
        if cpu.get("realtimeRuntime"):
            write(path, "cpu.rt_runtime_us", cpu["realtimeRuntime"])
    except CgroupError as e:
        raise ApplyError(str(e)) from None


def _set_blkio(path: str, blkio: dict) -> None:
    """CFQ's blkio.weight where the kernel has it, else BFQ's file (runc's choice)."""
    bfq = not os.path.exists(os.path.join(path, "blkio.weight"))
    if blkio.get("weight"):
        write(path, "blkio.bfq.weight" if bfq else "blkio.weight", blkio["weight"])
    if blkio.get("leafWeight"):
        write(path, "blkio.leaf_weight", blkio["leafWeight"])
    for dev in blkio.get("weightDevice") or ():
        if dev.get("weight"):
            write(path, "blkio.bfq.weight_device" if bfq else "blkio.weight_device",
                  f"{dev['major']}:{dev['minor']} {dev['weight']}")
    for key, name in (("throttleReadBpsDevice", "read_bps_device"),
                      ("throttleWriteBpsDevice", "write_bps_device"),
                      ("throttleReadIOPSDevice", "read_iops_device"),
                      ("throttleWriteIOPSDevice", "write_iops_device")):
        for dev in blkio.get(key) or ():
            write(path, f"blkio.throttle.{name}", f"{dev['major']}:{dev['minor']} {dev['rate']}")


def join_self(paths: dict[str, str]) -> None:
    """Move the calling process into every cgroup (0 means "me")."""
    done = set()
    for path in paths.values():
        if path not in done:
            done.add(path)
            write(path, "cgroup.procs", 0)


# --- the freezer ---------------------------------------------------------------------------

def freezer_state(paths: dict[str, str]) -> str:
    try:
        return _read(os.path.join(paths["freezer"], "freezer.state"))
    except (KeyError, OSError):
        return "THAWED"


def is_frozen(paths: dict[str, str]) -> bool:
    return freezer_state(paths) == "FROZEN"


def freeze(paths: dict[str, str], frozen: bool) -> None:
    """runc's FreezerGroup.Set: FROZEN is written until the kernel says so
    (FREEZING means retry), with a thaw now and then; never left half frozen."""
    if "freezer" not in paths:
        return
    path = paths["freezer"]
    if not frozen:
        write(path, "freezer.state", "THAWED")
        return
    try:
        for i in range(1000):
            if i % 50 == 49:
                write(path, "freezer.state", "THAWED")
                time.sleep(0.01)
            write(path, "freezer.state", "FROZEN")
            state = _read(os.path.join(path, "freezer.state"))
            if state == "FROZEN":
                return
            if state != "FREEZING":
                raise CgroupError(f"unexpected state {state} after writing FROZEN")
        raise CgroupError("unable to freeze")
    except BaseException:
        try:
            write(path, "freezer.state", "THAWED")
        except CgroupError:
            pass
        raise


def remove_dirs(dirs, leaves=None, timeout: float = 2.0) -> None:
    """rmdir each directory and what is below it, deepest first.

    A leaf (the container's own cgroup) whose last task is still exiting is
    busy for a moment (EBUSY): retry until ``timeout``.  A parent made by the
    same create may hold other containers by now: leave it if busy.
    ``leaves=None`` treats every directory as a leaf.
    """
    deadline = time.monotonic() + timeout
    for path in sorted(dirs, key=len, reverse=True):
        leaf = leaves is None or path in leaves
        below = []
        if leaf:
            for sub, subdirs, _files in os.walk(path):
                below.extend(os.path.join(sub, d) for d in subdirs)
        for target in sorted(below, key=len, reverse=True) + [path]:
            while True:
                try:
                    os.rmdir(target)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                        raise CgroupError(f"remove cgroup {target}: "
                                          f"{os.strerror(e.errno).lower()}") from None
                    if not leaf:
                        break
                    if time.monotonic() > deadline:
                        raise CgroupError(f"remove cgroup {target}: "
                                          f"{os.strerror(e.errno).lower()}") from None
                    time.sleep(0.005)


def remove_container(paths: dict[str, str], created=(), log=None) -> None:
    """runc's RemovePaths: the container's own directory in each hierarchy,
    sub-cgroups first -- not the parents it made -- tried five times 10, 20,
    40 and 80 ms apart, with runc's warning, error and final message."""
    left = {k: v for k, v in paths.items()}
    delay = 0.01
    for attempt in range(5):
        if attempt:
            time.sleep(delay)
            delay *= 2
        for name, path in sorted(left.items()):
            why = _remove_path(path)
            if why and log is not None and attempt in (0, 4):
                log("warning" if attempt == 0 else "error",
                    "Failed to remove cgroup (will retry)" if attempt == 0 else
                    "Failed to remove cgroup", fields=(("error", why),))
            if not os.path.exists(path):
                del left[name]
        if not left:
            return
    raise CgroupError("Failed to remove paths: map[" +
                      " ".join(f"{k}:{v}" for k, v in sorted(left.items())) + "]")


def _remove_path(path: str) -> str | None:
    """rmdir ``path``, its sub-cgroups first (runc's RemovePath); why not, or None."""
    try:
        os.rmdir(path)
        return None
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        subs = [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return None
    for sub in subs:
        why = _remove_path(sub)
        if why:
            return why
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        return f"rmdir {path}: {os.strerror(e.errno).lower()}"
    return None


# --- events --stats ------------------------------------------------------------------------

def _ints(path: str) -> list[int]:
    try:
        return [int(x) for x in _read(path).split()]
    except (OSError, ValueError):
        return []


def _int(path: str) -> int:
    v = _ints(path)
    return v[0] if v else 0


def _nonzero(d: dict) -> dict:
    """Go's omitempty on the numbers of runc's stats types."""
    return {k: v for k, v in d.items() if v not in (0, [], None)}


def stats(paths: dict[str, str]) -> dict:
    """runc's ``events --stats`` data (types.Stats, its keys in its order)."""
    out = {"cpu": _cpu_stats(paths), "cpuset": _cpuset_stats(paths.get("cpuset")),
           "memory": _memory_stats(paths.get("memory")), "pids": {}, "blkio": {},
           "hugetlb": {}, "intel_rdt": {}, "network_interfaces": None}
    if "pids" in paths:
        limit = _read_or(os.path.join(paths["pids"], "pids.max"), "max")
        out["pids"] = _nonzero({"current": _int(os.path.join(paths["pids"], "pids.current")),
                                "limit": 0 if limit == "max" else int(limit)})
    if "blkio" in paths:
        out["blkio"] = _blkio_stats(paths["blkio"])
    if "hugetlb" in paths:
        for name in sorted(os.listdir(paths["hugetlb"])):
            if name.startswith("hugetlb.") and name.endswith(".usage_in_bytes"):
                size = name[len("hugetlb."):-len(".usage_in_bytes")]
                base = os.path.join(paths["hugetlb"], f"hugetlb.{size}.")
                entry = _nonzero({"usage": _int(base + "usage_in_bytes"),
                                  "max": _int(base + "max_usage_in_bytes")})
                entry["failcnt"] = _int(base + "failcnt")
                out["hugetlb"][size] = entry
    return out


def _read_or(path: str, default: str) -> str:
    try:
        return _read(path)
    except OSError:
        return default


def _cpu_stats(paths: dict[str, str]) -> dict:
    usage: dict = {}
    acct = paths.get("cpuacct")
    if acct:
        per_kernel, per_user = [], []
        try:
            for line in _read(os.path.join(acct, "cpuacct.usage_all")).splitlines()[1:]:
                _cpu, user, system = line.split()
                per_user.append(int(user))
                per_kernel.append(int(system))
        except (OSError, ValueError):
            pass
        tick = 10_000_000  # USER_HZ (100) in nanoseconds
        st = _flat(os.path.join(acct, "cpuacct.stat"))
        usage = _nonzero({"total": _int(os.path.join(acct, "cpuacct.usage")),
                          "percpu": _ints(os.path.join(acct, "cpuacct.usage_percpu")),
                          "percpu_kernel": per_kernel, "percpu_user": per_user})
        usage.update(kernel=st.get("system", 0) * tick, user=st.get("user", 0) * tick)
    throttling = {}
    if "cpu" in paths:
        thr = _flat(os.path.join(paths["cpu"], "cpu.stat"))
        throttling = _nonzero({"periods": thr.get("nr_periods", 0),
                               "throttledPeriods": thr.get("nr_throttled", 0),
                               "throttledTime": thr.get("throttled_time", 0)})
    return {"usage": usage or {"kernel": 0, "user": 0}, "throttling": throttling}


def _cpuset_stats(path: str | None) -> dict:
    def ranges(text: str) -> list[int]:
        out = []
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-")
                out.extend(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
        return out
    stat = {"cpus": [], "cpu_exclusive": 0, "mems": [], "mem_hardwall": 0, "mem_exclusive": 0,
            "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
            "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0}
    if path:
        for key in stat:
            raw = _read_or(os.path.join(path, f"cpuset.{key}"), "")
            stat[key] = ranges(raw) if key in ("cpus", "mems") else int(raw or 0)
    return {k: v for k, v in stat.items() if v != [] or k not in ("cpus", "mems")}


def _memory_stats(path: str | None) -> dict:
    if not path:
        return {"usage": {"limit": 0, "failcnt": 0}, "swap": {"limit": 0, "failcnt": 0},
                "kernel": {"limit": 0, "failcnt": 0}, "kernelTCP": {"limit": 0, "failcnt": 0}}

    def entry(prefix: str) -> dict:
        j = lambda name: os.path.join(path, f"{prefix}{name}")  # noqa: E731
        out = {"limit": _int(j("limit_in_bytes"))}
        out.update(_nonzero({"usage": _int(j("usage_in_bytes")),
                             "max": _int(j("max_usage_in_bytes"))}))
        out["failcnt"] = _int(j("failcnt"))
        return out
    raw = _flat(os.path.join(path, "memory.stat"))
    out = _nonzero({"cache": raw.get("cache", 0)})
    out.update(usage=entry("memory."), swap=entry("memory.memsw."), kernel=entry("memory.kmem."),
               kernelTCP=entry("memory.kmem.tcp."))
    if raw:
        out["raw"] = dict(sorted(raw.items()))
    return out


def _blkio_stats(path: str) -> dict:
    out = {}
    for key, name in (("ioServiceBytesRecursive", "io_service_bytes_recursive"),
                      ("ioServicedRecursive", "io_serviced_recursive"),
                      ("ioQueueRecursive", "io_queued_recursive"),
                      ("ioServiceTimeRecursive", "io_service_time_recursive"),
                      ("ioWaitTimeRecursive", "io_wait_time_recursive"),
                      ("ioMergedRecursive", "io_merged_recursive"),
                      ("ioTimeRecursive", "time_recursive"),
                      ("sectorsRecursive", "sectors_recursive")):
        entries = []
        for line in _read_or(os.path.join(path, f"blkio.{name}"), "").splitlines():
            parts = line.split()
            if len(parts) >= 2 and ":" in parts[0]:
                major, minor = parts[0].split(":")
                op = parts[1] if len(parts) == 3 else ""
                value = int(parts[-1]) if parts[-1].isdigit() else 0
                entries.append(_nonzero({"major": int(major), "minor": int(minor), "op": op,
                                         "value": value}))
        if entries:
            out[key] = entries
    return out
