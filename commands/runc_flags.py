"""pallet-runc's flags for ``update`` and ``events``: sizes, durations and the
``linux.resources`` object they make (runc's update flags)."""
from __future__ import annotations


def _size(text: str) -> int:
    """runc's RAMInBytes: 512, 64k, 100m, 1g (binary units); -1 stays -1."""
    t = text.strip().lower()
    if t == "-1":
        return -1
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    num = t.rstrip("bkmgti")
    suffix = t[len(num):].rstrip("ib") or "b"
    if not num or suffix not in units:
        raise RuntimeError(f"invalid size: {text!r}")
    try:
        return int(float(num) * units[suffix])
    except ValueError:
        raise RuntimeError(f"invalid size: {text!r}") from None


def _int_flag(opts: dict, key: str, flag: str):
    if opts.get(key) is None:
        return None
    try:
        return int(opts[key])
    except ValueError:
        raise RuntimeError(f'invalid value "{opts[key]}" for flag --{flag}') from None


def resources_from_flags(opts: dict) -> dict:
    res: dict = {}
    mem = {}
    for key, name in (("memory", "limit"), ("memory_reservation", "reservation"),
                      ("memory_swap", "swap"), ("kernel_memory", "kernel"),
                      ("kernel_memory_tcp", "kernelTCP")):
        if opts.get(key):
            mem[name] = _size(opts[key])
    if mem:
        res["memory"] = mem
    cpu = {}
    for key, name, flag in (("cpu_share", "shares", "cpu-share"), ("cpu_quota", "quota", "cpu-quota"),
                            ("cpu_period", "period", "cpu-period"),
                            ("cpu_rt_period", "realtimePeriod", "cpu-rt-period"),
                            ("cpu_rt_runtime", "realtimeRuntime", "cpu-rt-runtime")):
        value = _int_flag(opts, key, flag)
        if value is not None:
            cpu[name] = value
    if opts.get("cpuset_cpus"):
        cpu["cpus"] = opts["cpuset_cpus"]
    if opts.get("cpuset_mems"):
        cpu["mems"] = opts["cpuset_mems"]
    if cpu:
        res["cpu"] = cpu
    weight = _int_flag(opts, "blkio_weight", "blkio-weight")
    if weight is not None:
        res["blockIO"] = {"weight": weight}
    pids = _int_flag(opts, "pids_limit", "pids-limit")
    if pids is not None:
        res["pids"] = {"limit": pids}
    return res


def duration(text: str) -> float:
    """Go's time.Duration text for --interval: 500ms, 5s, 1m."""
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            try:
                value = float(text[:-len(suffix)]) * scale
            except ValueError:
                break
            if value <= 0:
                raise RuntimeError("duration interval must be greater than 0")
            return value
    raise RuntimeError(f'invalid value "{text}" for flag -interval: parse error')
