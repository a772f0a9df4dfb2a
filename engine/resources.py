"""A container's resources: ``HostConfig`` (``--memory``, ``--cpus``,
``--cpu-shares``, ``--pids-limit``, ``--ulimit``, blkio...) checked as dockerd
checks them, and turned into the OCI ``linux.resources`` and
``process.rlimits`` (config-linux.md "Control groups", config.md "POSIX
process rlimits").  ``docker update`` goes through the same functions."""
from __future__ import annotations

import os

from pallet.core.errors import InvalidArgument

MIN_MEMORY = 6 * 1024 * 1024   # dockerd's linuxMinMemory
CPU_PERIOD = 100_000           # the CFS period dockerd uses for --cpus

RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
           "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")

#: the HostConfig fields ``docker update`` may change
UPDATABLE = ("BlkioWeight", "CpuShares", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod",
             "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "Memory", "MemoryReservation",
             "MemorySwap", "KernelMemory", "NanoCpus", "PidsLimit", "RestartPolicy",
             "KernelMemoryTCP", "MemorySwappiness", "OomKillDisable", "Ulimits", "Devices",
             "DeviceCgroupRules", "DeviceRequests", "BlkioWeightDevice", "BlkioDeviceReadBps",
             "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
             "CgroupParent", "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth")

_INT_FIELDS = ("Memory", "MemoryReservation", "MemorySwap", "KernelMemory", "NanoCpus",
               "CpuShares", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime",
               "PidsLimit", "BlkioWeight", "OomScoreAdj", "MemorySwappiness", "ShmSize",
               "CpuCount", "CpuPercent")


def swap_limit_supported() -> bool:
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") or \
        os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _int(host: dict, key: str) -> int:
    v = host.get(key)
    return int(v) if v is not None else 0


def check(host: dict, *, updating: bool = False) -> list[str]:
    """Refuse impossible resources with dockerd's messages; returns warnings."""
    warnings: list[str] = []
    for key in _INT_FIELDS:
        v = host.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise InvalidArgument(f"invalid HostConfig.{key}: {v!r}")
    for key in ("CpusetCpus", "CpusetMems"):
        v = host.get(key)
        if v is not None and not isinstance(v, str):
            raise InvalidArgument(f"invalid HostConfig.{key}: {v!r}")
    memory = _int(host, "Memory")
    if memory < 0:
        raise InvalidArgument("invalid memory limit: it must not be negative")
    if 0 < memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    swap = _int(host, "MemorySwap")
    if swap > 0 and not memory and not updating:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap "
                              "limit, see usage")
    if swap > 0 and memory and swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
    reservation = _int(host, "MemoryReservation")
    if 0 < reservation < MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory and reservation and memory < reservation:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation "
                              "limit, see usage")
    swappiness = host.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness range is "
                              "0-100")
    if host.get("KernelMemory"):
        warnings.append("Specifying a kernel memory limit is deprecated and will be removed in "
                        "a future release.")
    nano = _int(host, "NanoCpus")
    if nano and (_int(host, "CpuPeriod") or _int(host, "CpuQuota")):
        which = "Period" if _int(host, "CpuPeriod") else "Quota"
        raise InvalidArgument(f"Conflicting options: Nano CPUs and CPU {which} cannot both be "
                              "set")
    ncpu = os.cpu_count() or 1
    if nano < 0 or nano > ncpu * 1_000_000_000:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                              f"{ncpu} CPUs available")
    if _int(host, "CpuShares") < 0:
        raise InvalidArgument(f"invalid CPU shares ({host['CpuShares']}): value must be a "
                              "positive integer")
    period = _int(host, "CpuPeriod")
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                              "than 1s (i.e. 1000000)")
    quota = _int(host, "CpuQuota")
    if quota and 0 < quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    weight = _int(host, "BlkioWeight")
    if weight and not 10 <= weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    oom = _int(host, "OomScoreAdj")
    if not -1000 <= oom <= 1000:
        raise InvalidArgument(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    for key in ("CpusetCpus", "CpusetMems"):
        v = host.get(key) or ""
        if v and not _cpuset_ok(v):
            what = "cpuset cpus" if key == "CpusetCpus" else "cpuset mems"
            raise InvalidArgument(f"Invalid value {v} for {what}")
    check_ulimits(host.get("Ulimits"))
    for key in ("BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
                "BlkioDeviceWriteIOps", "BlkioWeightDevice"):
        v = host.get(key)
        if v is None:
            continue
        if not isinstance(v, list) or not all(isinstance(d, dict) and
                                              isinstance(d.get("Path"), str) for d in v):
            raise InvalidArgument(f"invalid HostConfig.{key}: a list of {{Path, Rate}} is "
                                  "expected")
    return warnings


def _cpuset_ok(text: str) -> bool:
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and (not hi.isdigit() or int(hi) < int(lo))):
            return False
    return True


def check_ulimits(ulimits) -> None:
    if ulimits is None:
        return
    if not isinstance(ulimits, list):
        raise InvalidArgument("invalid HostConfig.Ulimits: a list is expected")
    seen = set()
    for u in ulimits:
        if not isinstance(u, dict):
            raise InvalidArgument(f"invalid ulimit: {u!r}")
        name = u.get("Name")
        if not isinstance(name, str) or name not in RLIMITS:
            raise InvalidArgument(f"invalid ulimit type: {name}")
        soft, hard = u.get("Soft"), u.get("Hard")
        for v in (soft, hard):
            if isinstance(v, bool) or not isinstance(v, int):
                raise InvalidArgument(f"invalid ulimit {name}: soft and hard limits must be "
                                      "integers")
        if soft > hard and hard >= 0 and soft >= 0:
            raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard "
                                  f"limit: {soft} > {hard}")
        if name in seen:
            raise InvalidArgument(f"duplicate ulimit: {name}")
        seen.add(name)


def complete(host: dict) -> list[str]:
    """What dockerd fills in at create (adaptContainerSettings): the swap limit
    twice the memory one.  Returns warnings."""
    warnings = []
    memory = _int(host, "Memory")
    if memory > 0 and not _int(host, "MemorySwap"):
        if swap_limit_supported():
            host["MemorySwap"] = memory * 2
        else:
            warnings.append("Your kernel does not support swap limit capabilities or the cgroup "
                            "is not mounted. Memory limited without swap.")
            host["MemorySwap"] = -1
    return warnings


def _device_numbers(path: str, what: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument(f"{what} {path}: {(e.strerror or str(e)).lower()}") from None
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def linux_resources(host: dict) -> dict:
    """The OCI LinuxResources of a HostConfig (devices rules excepted)."""
    res: dict = {}
    memory: dict = {}
    if _int(host, "Memory"):
        memory["limit"] = _int(host, "Memory")
    if _int(host, "MemoryReservation"):
        memory["reservation"] = _int(host, "MemoryReservation")
    if host.get("MemorySwap"):
        memory["swap"] = int(host["MemorySwap"])
    if host.get("MemorySwappiness") is not None and host["MemorySwappiness"] >= 0:
        memory["swappiness"] = int(host["MemorySwappiness"])
    if host.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    if memory:
        res["memory"] = memory
    cpu: dict = {}
    if _int(host, "CpuShares"):
        cpu["shares"] = _int(host, "CpuShares")
    if _int(host, "NanoCpus"):
        cpu["period"] = CPU_PERIOD
        cpu["quota"] = _int(host, "NanoCpus") * CPU_PERIOD // 1_000_000_000
    else:
        if _int(host, "CpuPeriod"):
            cpu["period"] = _int(host, "CpuPeriod")
        if _int(host, "CpuQuota"):
            cpu["quota"] = _int(host, "CpuQuota")
    if _int(host, "CpuRealtimePeriod"):
        cpu["realtimePeriod"] = _int(host, "CpuRealtimePeriod")
    if _int(host, "CpuRealtimeRuntime"):
        cpu["realtimeRuntime"] = _int(host, "CpuRealtimeRuntime")
    if host.get("CpusetCpus"):
        cpu["cpus"] = host["CpusetCpus"]
    if host.get("CpusetMems"):
        cpu["mems"] = host["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    if host.get("PidsLimit") and host["PidsLimit"] > 0:
        res["pids"] = {"limit": int(host["PidsLimit"])}
    blkio: dict = {}
    if _int(host, "BlkioWeight"):
        blkio["weight"] = _int(host, "BlkioWeight")
    for key, field, value in (("BlkioWeightDevice", "weightDevice", "Weight"),
                              ("BlkioDeviceReadBps", "throttleReadBpsDevice", "Rate"),
                              ("BlkioDeviceWriteBps", "throttleWriteBpsDevice", "Rate"),
                              ("BlkioDeviceReadIOps", "throttleReadIOPSDevice", "Rate"),
                              ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice", "Rate")):
        for d in host.get(key) or ():
            major, minor = _device_numbers(d["Path"], "blkio device")
            entry = {"major": major, "minor": minor}
            entry["weight" if value == "Weight" else "rate"] = int(d.get(value) or 0)
            blkio.setdefault(field, []).append(entry)
    if blkio:
        res["blockIO"] = blkio
    return res


def rlimits(host: dict) -> list[dict]:
    """``--ulimit`` as OCI ``process.rlimits``."""
    return [{"type": "RLIMIT_" + u["Name"].upper(), "soft": int(u["Soft"]),
             "hard": int(u["Hard"])} for u in host.get("Ulimits") or ()]


def apply(spec: dict, host: dict) -> None:
    """Resources, rlimits and the OOM score of a container's spec."""
    linux = spec.setdefault("linux", {})
    res = linux.setdefault("resources", {})
    res.update(linux_resources(host))
    limits = rlimits(host)
    if limits:
        spec["process"]["rlimits"] = limits
    if host.get("OomScoreAdj"):
        spec["process"]["oomScoreAdj"] = int(host["OomScoreAdj"])


def merge_update(host: dict, body: dict) -> tuple[dict, list[str]]:
    """``POST /containers/{id}/update``: the new HostConfig (checked), warnings."""
    if not isinstance(body, dict):
        raise InvalidArgument("invalid update config: JSON object expected")
    new = dict(host)
    for key, value in body.items():
        if key not in UPDATABLE:
            continue  # dockerd ignores what UpdateConfig does not hold
        if key == "RestartPolicy":
            continue  # handled by the caller
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value == 0 and key in (
                "Memory", "MemorySwap", "MemoryReservation", "CpuShares", "NanoCpus",
                "CpuPeriod", "CpuQuota", "BlkioWeight", "KernelMemory"):
            continue  # zero means "unchanged" in UpdateConfig
        new[key] = value
    if body.get("NanoCpus"):
        new["CpuPeriod"] = 0
        new["CpuQuota"] = 0
    elif body.get("CpuPeriod") or body.get("CpuQuota"):
        new["NanoCpus"] = 0
    if body.get("Memory") and not body.get("MemorySwap") and host.get("MemorySwap") and \
            host["MemorySwap"] > 0 and body["Memory"] > host["MemorySwap"]:
        raise InvalidArgument("Memory limit should be smaller than already set memoryswap "
                              "limit, update the memoryswap at the same time")
    warnings = check(new, updating=True)
    return new, warnings
