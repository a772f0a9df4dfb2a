"""``docker stats`` and ``docker top``.

Stats are read straight from the container's cgroups (the directories its
PID 1 is in, from ``/proc/<pid>/cgroup``: v1 controllers or the v2 unified
hierarchy) and its network namespace (``/proc/<pid>/net/dev``), in the shape
of the Engine API's ContainerStatsResponse.  ``top`` runs the host's ``ps``
with the client's arguments and keeps the rows of the container's processes,
as dockerd does.
"""
from __future__ import annotations

import asyncio
import os

from pallet.core import errors
from pallet.linux.cgroupfs import read as _read, read_int as _int, read_keyed as _keyed

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def system_cpu_usage() -> int:
    """Host CPU time in nanoseconds (the ``cpu`` line of /proc/stat), as dockerd counts it."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu "):
                    ticks = sum(int(x) for x in line.split()[1:8])
                    return ticks * 1_000_000_000 // _CLK_TCK
    except (OSError, ValueError):
        pass
    return 0


def mem_total() -> int:
    """The host's memory in bytes (MemTotal of /proc/meminfo)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _blkio_v1(path: str) -> list[dict] | None:
    try:
        lines = _read(path).splitlines()
    except OSError:
        return None
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, minor = parts[0].split(":")
        try:
            out.append({"major": int(major), "minor": int(minor), "op": parts[1],
                        "value": int(parts[2])})
        except ValueError:
            continue
    return out


def _networks(pid: int) -> dict | None:
    try:
        lines = _read(f"/proc/{pid}/net/dev").splitlines()[2:]
    except OSError:
        return None
    out = {}
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if not name or name == "lo":
            continue
        f = [int(x) for x in rest.split()]
        if len(f) < 16:
            continue
        out[name] = {"rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2],
                     "rx_dropped": f[3], "tx_bytes": f[8], "tx_packets": f[9],
                     "tx_errors": f[10], "tx_dropped": f[11]}
    return out or None


def _cpu_v1(cg: dict) -> dict:
    d = cg.get("cpuacct") or cg.get("cpu")
    usage = {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}
    throttling = {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
    if d:
        usage["total_usage"] = _int(os.path.join(d, "cpuacct.usage"))
        try:
            usage["percpu_usage"] = [int(x) for x in
                                     _read(os.path.join(d, "cpuacct.usage_percpu")).split()]
        except (OSError, ValueError):
            pass
        st = _keyed(os.path.join(d, "cpuacct.stat"))
        tick = 1_000_000_000 // _CLK_TCK
        usage["usage_in_kernelmode"] = st.get("system", 0) * tick
        usage["usage_in_usermode"] = st.get("user", 0) * tick
    if cg.get("cpu"):
        t = _keyed(os.path.join(cg["cpu"], "cpu.stat"))
        throttling = {"periods": t.get("nr_periods", 0),
                      "throttled_periods": t.get("nr_throttled", 0),
                      "throttled_time": t.get("throttled_time", 0)}
    return {"cpu_usage": usage, "throttling_data": throttling}


def _cpu_v2(d: str) -> dict:
    st = _keyed(os.path.join(d, "cpu.stat"))
    return {"cpu_usage": {"total_usage": st.get("usage_usec", 0) * 1000,
                          "usage_in_kernelmode": st.get("system_usec", 0) * 1000,
                          "usage_in_usermode": st.get("user_usec", 0) * 1000},
            "throttling_data": {"periods": st.get("nr_periods", 0),
                                "throttled_periods": st.get("nr_throttled", 0),
                                "throttled_time": st.get("throttled_usec", 0) * 1000}}


def sample(pid: int, cgroups: dict[str, str]) -> dict:
    """One reading of a running container's figures (the parts that do not need
    a previous reading)."""
    out: dict = {"read": _now(), "num_procs": 0, "storage_stats": {}}
    unified = cgroups.get("unified") if "memory" not in cgroups else None
    ncpu = os.cpu_count() or 1
    if unified:
        cpu = _cpu_v2(unified)
        mem_stat = _keyed(os.path.join(unified, "memory.stat"))
        limit = _int(os.path.join(unified, "memory.max"), 0)
        memory = {"usage": _int(os.path.join(unified, "memory.current")),
                  "stats": mem_stat, "limit": limit}
        pids = {"current": _int(os.path.join(unified, "pids.current")),
                "limit": _int(os.path.join(unified, "pids.max"), 0)}
        blkio = {k: None for k in ("io_service_bytes_recursive", "io_serviced_recursive",
                                   "io_queue_recursive", "io_service_time_recursive",
                                   "io_wait_time_recursive", "io_merged_recursive",
                                   "io_time_recursive", "sectors_recursive")}
    else:
        cpu = _cpu_v1(cgroups)
        md = cgroups.get("memory", "")
        memory = {"usage": _int(os.path.join(md, "memory.usage_in_bytes")),
                  "max_usage": _int(os.path.join(md, "memory.max_usage_in_bytes")),
                  "stats": _keyed(os.path.join(md, "memory.stat")),
                  "failcnt": _int(os.path.join(md, "memory.failcnt")),
                  "limit": _int(os.path.join(md, "memory.limit_in_bytes"))}
        pd = cgroups.get("pids", "")
        pids = {"current": _int(os.path.join(pd, "pids.current")),
                "limit": _int(os.path.join(pd, "pids.max"), 0)}
        bd = cgroups.get("blkio", "")

        def pick(name):
            entries = _blkio_v1(os.path.join(bd, f"blkio.{name}"))
            if not entries:
                entries = _blkio_v1(os.path.join(bd, f"blkio.throttle.{name}"))
            return entries or None
        blkio = {"io_service_bytes_recursive": pick("io_service_bytes_recursive"),
                 "io_serviced_recursive": pick("io_serviced_recursive"),
                 "io_queue_recursive": _blkio_v1(os.path.join(bd, "blkio.io_queued_recursive")),
                 "io_service_time_recursive": _blkio_v1(
                     os.path.join(bd, "blkio.io_service_time_recursive")),
                 "io_wait_time_recursive": _blkio_v1(
                     os.path.join(bd, "blkio.io_wait_time_recursive")),
                 "io_merged_recursive": _blkio_v1(os.path.join(bd, "blkio.io_merged_recursive")),
                 "io_time_recursive": _blkio_v1(os.path.join(bd, "blkio.io_time_recursive")),
                 "sectors_recursive": _blkio_v1(os.path.join(bd, "blkio.sectors_recursive"))}
    total = mem_total()
    if total and (not memory["limit"] or memory["limit"] > total):
        memory["limit"] = total   # no limit: the machine's memory, as dockerd reports it
    cpu["system_cpu_usage"] = system_cpu_usage()
    cpu["online_cpus"] = ncpu
    out.update({"pids_stats": pids, "blkio_stats": blkio, "cpu_stats": cpu,
                "memory_stats": memory})
    nets = _networks(pid)
    if nets:
        out["networks"] = nets
    return out


def empty_sample() -> dict:
    """What a stopped container reports (zeros, as dockerd sends)."""
    return {"read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z",
            "pids_stats": {}, "blkio_stats": {k: None for k in (
                "io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
                "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                "io_time_recursive", "sectors_recursive")},
            "num_procs": 0, "storage_stats": {},
            "cpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                                        "usage_in_usermode": 0}, "throttling_data": {
                "periods": 0, "throttled_periods": 0, "throttled_time": 0}},
            "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                                           "usage_in_usermode": 0}, "throttling_data": {
                "periods": 0, "throttled_periods": 0, "throttled_time": 0}},
            "memory_stats": {}}


def _now() -> str:
    from pallet.engine.logs import rfc3339nano

    return rfc3339nano()


async def stats(c, *, stream: bool, one_shot: bool, interval: float = 1.0):
    """The readings of ``docker stats``: one (``stream=false``), or one per
    ``interval`` until the container stops."""
    name = "/" + c.name
    prev = None
    prev_read = "0001-01-01T00:00:00Z"
    first = True
    while True:
        if not c.running or not c.cgroups:
            s = empty_sample()
            s.update({"name": name, "id": c.id})
            yield s
            return
        pid = c.state.get("Pid") or 0
        cur = await asyncio.to_thread(sample, pid, c.cgroups)
        if first and not stream and not one_shot:
            # dockerd's non-streamed answer carries the previous reading too
            await asyncio.sleep(interval)
            if not c.running or not c.cgroups:
                continue
            prev, prev_read = cur, cur["read"]
            cur = await asyncio.to_thread(sample, pid, c.cgroups)
        first = False
        out = dict(cur)
        out["preread"] = prev_read
        out["precpu_stats"] = prev["cpu_stats"] if prev else {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
        out.update({"name": name, "id": c.id})
        yield out
        if not stream:
            return
        prev, prev_read = cur, cur["read"]
        await asyncio.sleep(interval)


async def top(pids: list[int], ps_args: str) -> dict:
    """``ps <ps_args>`` on the host, keeping the header and the container's rows."""
    import shlex
    import subprocess

    try:
        args = shlex.split(ps_args or "-ef")
    except ValueError as e:
        raise errors.InvalidArgument(f"invalid ps_args: {e}") from None
    # Not asyncio.create_subprocess_exec: under uvloop that is libuv's fork(),
    # which runs every pthread_atfork handler (grpc's, uvloop's own, which takes
    # the GIL in the child) in a copy of this multi-threaded process; now and
    # then the child dies of SIGSEGV before it reaches exec, and ps "fails"
    # with no output.  subprocess uses vfork + exec, which runs none of them.
    try:
        r = await asyncio.to_thread(subprocess.run, ["ps", *args], capture_output=True,
                                    timeout=30, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise errors.PalletError("ps: command not found on the host") from None
    except subprocess.TimeoutExpired:
        raise errors.PalletError("ps did not answer in 30 seconds") from None
    out, err = r.stdout, r.stderr
    if r.returncode != 0:
        raise errors.InvalidArgument(f"Error running ps: {err.decode(errors='replace').strip()}")
    lines = out.decode(errors="replace").splitlines()
    if not lines:
        raise errors.PalletError("ps printed nothing")
    titles = lines[0].split()
    try:
        pid_col = titles.index("PID")
    except ValueError:
        raise errors.InvalidArgument("Couldn't find PID field in ps output") from None
    wanted = set(pids)
    procs = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) <= pid_col:
            continue
        try:
            pid = int(fields[pid_col])
        except ValueError:
            continue
        if pid not in wanted:
            continue
        # the last column (the command) may hold spaces: keep it whole
        parts = line.split(None, len(titles) - 1)
        procs.append(parts)
    return {"Titles": titles, "Processes": procs}
