"""cgroup v1 for a container: create, limit, join, freeze, list, remove.

Only ``linux.cgroupsPath`` and ``linux.resources`` of the OCI spec are used.
The path is made under each mounted v1 hierarchy of the controllers below;
an absolute path starts at the hierarchy's root, a relative one below the
caller's own cgroup (as runc's fs driver does), and the systemd form
``slice:prefix:name`` is mapped to ``/slice/prefix-name.scope`` without
systemd.

The parent creates the directories and writes the limits; the container
process joins them itself (writing 0 to ``cgroup.procs``) before it enters
its namespaces, so nothing of it ever runs outside its limits.
"""
from __future__ import annotations

import os
import time

CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio",
               "hugetlb")

#: runc's AllowedDevices, appended after the spec's device rules so that the
#: default nodes can be created and used (libcontainer/specconv)
DEFAULT_DEVICE_RULES = (
    "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
)

_mounts: dict[str, str] | None = None


class CgroupError(Exception):
    """Creating or configuring a cgroup failed (the message names the file)."""


def mounts() -> dict[str, str]:
    """controller -> mount point of its v1 hierarchy (read once per process)."""
    global _mounts
    if _mounts is None:
        found: dict[str, str] = {}
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f.read().decode(errors="replace").splitlines():
                left, _, right = line.partition(" - ")
                rf = right.split()
                if len(rf) < 3 or rf[0] != "cgroup":
                    continue
                point = left.split()[4]
                for opt in rf[2].split(","):
                    if opt in CONTROLLERS and opt not in found:
                        found[opt] = point
        _mounts = found
    return _mounts


def _own_paths() -> dict[str, str]:
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _id, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(","):
                out[name] = path
    return out


def normalize(cgroups_path: str) -> str:
    """The systemd form ``slice:prefix:name`` as a plain path, others unchanged."""
    if ":" in cgroups_path and not cgroups_path.startswith("/"):
        parts = cgroups_path.split(":")
        if len(parts) == 3:
            slice_, prefix, name = parts
            return "/" + "/".join(p for p in (slice_ or "system.slice", f"{prefix}-{name}.scope") if p)
    return cgroups_path


def paths_for(cgroups_path: str) -> dict[str, str]:
    """controller -> absolute directory of the container's cgroup."""
    path = normalize(cgroups_path)
    own = None
    out = {}
    for name, point in mounts().items():
        if path.startswith("/"):
            rel = path
        else:
            if own is None:
                own = _own_paths()
            rel = os.path.join(own.get(name, "/"), path)
        out[name] = os.path.normpath(point + "/" + rel.lstrip("/"))
    return out


def _write(path: str, value) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"open {path}: {os.strerror(e.errno).lower()}") from None
    try:
        os.write(fd, str(value).encode())
    except OSError as e:
        raise CgroupError(f"write {value} to {path}: {os.strerror(e.errno).lower()}") from None
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode().strip()


def _mkdirs(path: str, point: str, cpuset: bool, created: list[str]) -> None:
    """mkdir -p below the hierarchy root; cpuset levels inherit cpus and mems
    from their parent, since a cpuset with empty ones refuses tasks (cpusets(7))."""
    rel = os.path.relpath(path, point)
    current = point
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        parent, current = current, os.path.join(current, part)
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            continue
        created.append(current)
        if cpuset:
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not _read(os.path.join(current, name)):
                    _write(os.path.join(current, name), _read(os.path.join(parent, name)))


def create(cgroups_path: str, resources: dict | None) -> tuple[dict[str, str], list[str]]:
    """Make the container's cgroups and apply ``resources``.

    Returns (controller -> directory, directories created); on failure the
    directories made so far are removed again.
    """
    paths = paths_for(cgroups_path)
    created: list[str] = []
    try:
        done = set()
        for name, path in paths.items():
            if path in done:  # co-mounted controllers share a directory
                continue
            done.add(path)
            _mkdirs(path, mounts()[name], name == "cpuset" or
                    mounts().get("cpuset") == mounts()[name], created)
        apply(paths, resources or {})
    except BaseException:
        remove_dirs(created, leaves=set(paths.values()))
        raise
    return paths, created


def _device_rule(rule: dict) -> str:
    kind = rule.get("type") or "a"
    if kind == "a":
        return "a"

    def num(v):
        return "*" if v is None or v == -1 else str(v)
    return f"{kind} {num(rule.get('major'))}:{num(rule.get('minor'))} {rule.get('access') or 'rwm'}"


def apply(paths: dict[str, str], res: dict) -> None:
    """Write ``linux.resources`` (memory, pids, cpu, cpuset, blkio, devices)."""
    def put(controller, name, value):
        if controller in paths and value is not None:
            _write(os.path.join(paths[controller], name), value)

    mem = res.get("memory") or {}
    swap = mem.get("swap")
    if swap is not None and not ("memory" in paths and os.path.exists(
            os.path.join(paths["memory"], "memory.memsw.limit_in_bytes"))):
        swap = None  # no swap accounting on this kernel
    if mem.get("limit") is not None:
        try:
            put("memory", "memory.limit_in_bytes", mem["limit"])
        except CgroupError:
            if swap is None:
                raise
            # a new limit above the current memsw limit: raise memsw first
            put("memory", "memory.memsw.limit_in_bytes", swap)
            put("memory", "memory.limit_in_bytes", mem["limit"])
    if swap is not None:
        put("memory", "memory.memsw.limit_in_bytes", swap)
    put("memory", "memory.soft_limit_in_bytes", mem.get("reservation"))
    if mem.get("swappiness") is not None and mem["swappiness"] >= 0:
        put("memory", "memory.swappiness", mem["swappiness"])
    if mem.get("disableOOMKiller"):
        put("memory", "memory.oom_control", 1)

    pids = res.get("pids") or {}
    if pids.get("limit") is not None:
        put("pids", "pids.max", "max" if pids["limit"] <= 0 else pids["limit"])

    cpu = res.get("cpu") or {}
    if cpu.get("shares"):
        put("cpu", "cpu.shares", cpu["shares"])
    # the period goes first: a quota is checked against the current period
    if cpu.get("period"):
        put("cpu", "cpu.cfs_period_us", cpu["period"])
    if cpu.get("quota"):
        put("cpu", "cpu.cfs_quota_us", cpu["quota"])
    if cpu.get("cpus"):
        put("cpuset", "cpuset.cpus", cpu["cpus"])
    if cpu.get("mems"):
        put("cpuset", "cpuset.mems", cpu["mems"])

    blkio = res.get("blockIO") or {}
    if blkio.get("weight") and "blkio" in paths:
        # CFQ's blkio.weight, or BFQ's on kernels without CFQ (as runc does)
        for name in ("blkio.weight", "blkio.bfq.weight"):
            if os.path.exists(os.path.join(paths["blkio"], name)):
                put("blkio", name, blkio["weight"])
                break
        else:
            raise CgroupError("blockIO.weight: neither blkio.weight nor blkio.bfq.weight exists")

    for limit in res.get("hugepageLimits") or ():
        if "hugetlb" not in paths:
            raise CgroupError("hugepage limits need the hugetlb cgroup, which is not mounted")
        put("hugetlb", f"hugetlb.{limit['pageSize']}.limit_in_bytes", limit["limit"])

    rules = res.get("devices")
    if rules is not None and "devices" in paths:
        for rule in rules:
            name = "devices.allow" if rule.get("allow") else "devices.deny"
            put("devices", name, _device_rule(rule))
        for rule in DEFAULT_DEVICE_RULES:
            put("devices", "devices.allow", rule)


def join_self(paths: dict[str, str]) -> None:
    """Move the calling process into every cgroup (v1 accepts 0 for "me")."""
    done = set()
    for path in paths.values():
        if path not in done:
            done.add(path)
            _write(os.path.join(path, "cgroup.procs"), 0)


def pids(paths: dict[str, str]) -> list[int]:
    """Host pids of the processes in the container's cgroup."""
    for name in ("freezer", "pids", "memory", "cpu", "devices"):
        if name in paths:
            try:
                return [int(x) for x in _read(os.path.join(paths[name], "cgroup.procs")).split()]
            except FileNotFoundError:
                return []
    return []


def freeze(paths: dict[str, str], frozen: bool) -> None:
    """Pause (FROZEN) or resume (THAWED) every process of the cgroup."""
    if "freezer" not in paths:
        raise CgroupError("the freezer cgroup is not mounted")
    path = os.path.join(paths["freezer"], "freezer.state")
    want = "FROZEN" if frozen else "THAWED"
    _write(path, want)
    deadline = time.monotonic() + 5
    while _read(path) != want:
        if time.monotonic() > deadline:
            raise CgroupError(f"timeout waiting for {path} to become {want}")
        time.sleep(0.001)


def is_frozen(paths: dict[str, str]) -> bool:
    try:
        return _read(os.path.join(paths["freezer"], "freezer.state")) == "FROZEN"
    except (KeyError, OSError):
        return False


def remove_dirs(dirs, leaves=None, timeout: float = 2.0) -> None:
    """rmdir each directory, deepest first.

    A leaf (the container's own cgroup) whose last task is still exiting is
    busy for a moment (EBUSY): retry until ``timeout``.  A parent made by the
    same create may hold other containers by now: leave it if busy.
    ``leaves=None`` treats every directory as a leaf.
    """
    deadline = time.monotonic() + timeout
    for path in sorted(dirs, key=len, reverse=True):
        leaf = leaves is None or path in leaves
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno not in (16, 39):  # EBUSY, ENOTEMPTY
                    raise CgroupError(f"remove cgroup {path}: {os.strerror(e.errno).lower()}") from None
                if not leaf:
                    break
                if time.monotonic() > deadline:
                    raise CgroupError(f"remove cgroup {path}: {os.strerror(e.errno).lower()}") from None
                time.sleep(0.005)


def _ints(path: str) -> list[int]:
    try:
        return [int(x) for x in _read(path).split()]
    except (OSError, ValueError):
        return []


def _int(path: str) -> int:
    v = _ints(path)
    return v[0] if v else 0


def _flat(path: str) -> dict[str, int]:
    out = {}
    try:
        for line in _read(path).splitlines():
            key, _, value = line.partition(" ")
            try:
                out[key] = int(value)
            except ValueError:
                pass
    except OSError:
        pass
    return out


def stats(paths: dict[str, str]) -> dict:
    """runc's ``events --stats`` data from the v1 controllers."""
    out: dict = {}
    acct = paths.get("cpuacct")
    if acct:
        st = _flat(os.path.join(acct, "cpuacct.stat"))
        tick = 10_000_000  # USER_HZ 100 -> ns
        cpu = {"usage": {"total": _int(os.path.join(acct, "cpuacct.usage")),
                         "percpu": _ints(os.path.join(acct, "cpuacct.usage_percpu")),
                         "kernel": st.get("system", 0) * tick, "user": st.get("user", 0) * tick}}
        if "cpu" in paths:
            thr = _flat(os.path.join(paths["cpu"], "cpu.stat"))
            cpu["throttling"] = {"periods": thr.get("nr_periods", 0),
                                 "throttledPeriods": thr.get("nr_throttled", 0),
                                 "throttledTime": thr.get("throttled_time", 0)}
        out["cpu"] = cpu
    mem = paths.get("memory")
    if mem:
        def entry(prefix):
            j = lambda name: os.path.join(mem, f"{prefix}{name}")  # noqa: E731
            return {"limit": _int(j("limit_in_bytes")), "usage": _int(j("usage_in_bytes")),
                    "max": _int(j("max_usage_in_bytes")), "failcnt": _int(j("failcnt"))}
        out["memory"] = {"usage": entry("memory."), "swap": entry("memory.memsw."),
                         "kernel": entry("memory.kmem."),
                         "raw": _flat(os.path.join(mem, "memory.stat"))}
    if "pids" in paths:
        raw = ""
        try:
            raw = _read(os.path.join(paths["pids"], "pids.max"))
        except OSError:
            pass
        out["pids"] = {"current": _int(os.path.join(paths["pids"], "pids.current")),
                       "limit": 0 if raw in ("", "max") else int(raw)}
    if "blkio" in paths:
        out["blkio"] = {"ioServiceBytesRecursive": _blkio(
            os.path.join(paths["blkio"], "blkio.throttle.io_service_bytes_recursive"))}
    if "hugetlb" in paths:
        hug = {}
        for name in os.listdir(paths["hugetlb"]):
            if name.startswith("hugetlb.") and name.endswith(".usage_in_bytes"):
                size = name[len("hugetlb."):-len(".usage_in_bytes")]
                base = os.path.join(paths["hugetlb"], f"hugetlb.{size}.")
                hug[size] = {"usage": _int(base + "usage_in_bytes"),
                             "max": _int(base + "max_usage_in_bytes"),
                             "failcnt": _int(base + "failcnt")}
        out["hugetlb"] = hug
    return out


def _blkio(path: str) -> list[dict]:
    out = []
    try:
        for line in _read(path).splitlines():
            parts = line.split()
            if len(parts) == 3 and ":" in parts[0]:
                major, minor = parts[0].split(":")
                out.append({"major": int(major), "minor": int(minor), "op": parts[1],
                            "value": int(parts[2])})
    except (OSError, ValueError):
        pass
    return out
