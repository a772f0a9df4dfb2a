"""ContainerStats, ListContainerStats, PodSandboxStats and
ListPodSandboxStats from the cgroups (v1 or v2) and the snapshotter.

A container's cgroup directories are read from /proc/<pid>/cgroup of its
process, whichever runtime made them; a pod's are its cgroup parent's, or
its containers' added up when it has none.  CPU use per second is the
difference with the previous sample of the same container or pod, as
containerd's CRI plugin computes it.  The working set is what kubelet
calls it: usage minus inactive file pages.
"""
from __future__ import annotations

import os
import threading
import time

from pallet.core import errors
from pallet.linux.cgroupfs import directories, mount_points
from pallet.linux import netns
from pallet.proto.cri.runtime.v1 import api_pb2 as cri

from pallet.plugins.api_cri.store import RUNNING

CGROUP_ROOT = "/sys/fs/cgroup"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _int(path: str) -> int | None:
    text = _read(path)
    if not text or text == "max":
        return None
    try:
        return int(text.split()[0])
    except ValueError:
        return None


def _keyed(path: str) -> dict[str, int]:
    out = {}
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


class Sample:
    """What one reading of a cgroup gave."""

    def __init__(self, ts: int):
        self.ts = ts
        self.cpu_ns = None
        self.mem_usage = self.mem_working = self.mem_rss = self.mem_limit = None
        self.page_faults = self.major_faults = None
        self.pids = None
        self.swap = None


class CgroupReader:
    def __init__(self):
        self.v2 = os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
        self.mounts = {} if self.v2 else mount_points()

    def dirs_of_pid(self, pid: int) -> dict[str, str]:
        """controller (or "" for v2) -> the cgroup directory of process ``pid``."""
        try:
            dirs = directories(pid)
        except OSError:
            return {}
        if self.v2:
            return {"": dirs[""]} if "" in dirs else {}
        dirs.pop("", None)
        return dirs

    def dirs_of_path(self, path: str) -> dict[str, str]:
        """The directories of a cgroup path (a pod's cgroup parent)."""
        path = path.lstrip("/")
        if self.v2:
            return {"": os.path.join(CGROUP_ROOT, path)}
        return {name: os.path.join(point, path) for name, point in self.mounts.items()
                if name in ("memory", "cpuacct", "pids")}

    def read(self, dirs: dict[str, str]) -> Sample:
        s = Sample(time.time_ns())
        if self.v2:
            d = dirs.get("")
            if not d or not os.path.isdir(d):
                return s
            cpu = _keyed(os.path.join(d, "cpu.stat"))
            if "usage_usec" in cpu:
                s.cpu_ns = cpu["usage_usec"] * 1000
            stat = _keyed(os.path.join(d, "memory.stat"))
            s.mem_usage = _int(os.path.join(d, "memory.current"))
            inactive = stat.get("inactive_file", 0)
            s.mem_rss = stat.get("anon")
            s.page_faults, s.major_faults = stat.get("pgfault"), stat.get("pgmajfault")
            s.mem_limit = _int(os.path.join(d, "memory.max"))
            s.pids = _int(os.path.join(d, "pids.current"))
            s.swap = _int(os.path.join(d, "memory.swap.current"))
        else:
            cpuacct = dirs.get("cpuacct")
            if cpuacct:
                s.cpu_ns = _int(os.path.join(cpuacct, "cpuacct.usage"))
            mem = dirs.get("memory")
            inactive = 0
            if mem and os.path.isdir(mem):
                stat = _keyed(os.path.join(mem, "memory.stat"))
                s.mem_usage = _int(os.path.join(mem, "memory.usage_in_bytes"))
                inactive = stat.get("total_inactive_file", 0)
                s.mem_rss = stat.get("total_rss")
                s.page_faults = stat.get("total_pgfault")
                s.major_faults = stat.get("total_pgmajfault")
                limit = _int(os.path.join(mem, "memory.limit_in_bytes"))
                s.mem_limit = limit if limit is not None and limit < 1 << 62 else None
                swap = _int(os.path.join(mem, "memory.memsw.usage_in_bytes"))
                if swap is not None and s.mem_usage is not None:
                    s.swap = max(swap - s.mem_usage, 0)
            pids = dirs.get("pids")
            if pids:
                s.pids = _int(os.path.join(pids, "pids.current"))
        if s.mem_usage is not None:
            s.mem_working = max(s.mem_usage - inactive, 0)
        return s


class Stats:
    """The stats side of api_cri."""

    def __init__(self, cri_):
        self.cri = cri_
        self.reader = CgroupReader()
        self._last: dict[str, Sample] = {}
        self._lock = threading.Lock()

    @property
    def cgroup_v2(self) -> bool:
        return self.reader.v2

    @property
    def swap_available(self) -> bool:
        if self.reader.v2:
            import glob
            return bool(glob.glob(os.path.join(CGROUP_ROOT, "*", "memory.swap.max")))
        mem = self.reader.mounts.get("memory")
        return bool(mem) and os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes"))

    def _nano_cores(self, key: str, s: Sample) -> int | None:
        with self._lock:
            prev = self._last.get(key)
            self._last[key] = s
        if prev is None or prev.cpu_ns is None or s.cpu_ns is None or s.ts <= prev.ts:
            return None
        return max(int((s.cpu_ns - prev.cpu_ns) * 1_000_000_000 / (s.ts - prev.ts)), 0)

    def _cpu(self, key: str, s: Sample) -> cri.CpuUsage:
        out = cri.CpuUsage(timestamp=s.ts)
        if s.cpu_ns is not None:
            out.usage_core_nano_seconds.value = s.cpu_ns
        cores = self._nano_cores(key, s)
        if cores is not None:
            out.usage_nano_cores.value = cores
        return out

    def _memory(self, s: Sample) -> cri.MemoryUsage:
        out = cri.MemoryUsage(timestamp=s.ts)
        for field, value in (("working_set_bytes", s.mem_working), ("usage_bytes", s.mem_usage),
                             ("rss_bytes", s.mem_rss), ("page_faults", s.page_faults),
                             ("major_page_faults", s.major_faults)):
            if value is not None:
                getattr(out, field).value = value
        if s.mem_limit is not None and s.mem_working is not None:
            out.available_bytes.value = max(s.mem_limit - s.mem_working, 0)
        return out

    # --- containers ------------------------------------------------------------------------
    def container(self, c) -> cri.ContainerStats:
        out = cri.ContainerStats(attributes=cri.ContainerAttributes(
            id=c.id, metadata=c.config.metadata, labels=dict(c.config.labels),
            annotations=dict(c.config.annotations)))
        now = time.time_ns()
        layer = cri.FilesystemUsage(timestamp=now, fs_id=cri.FilesystemIdentifier(
            mountpoint=self.cri.services.paths.snapshotter_root(self.cri.images.snapshotter)))
        try:
            u = self.cri.containers.snapshotter().usage(c.id)
            layer.used_bytes.value = int(u.size)
            layer.inodes_used.value = int(u.inodes)
        except errors.PalletError:
            pass
        out.writable_layer.CopyFrom(layer)
        if c.state != RUNNING or not c.pid:
            return out
        s = self.reader.read(self.reader.dirs_of_pid(c.pid))
        out.cpu.CopyFrom(self._cpu(c.id, s))
        out.memory.CopyFrom(self._memory(s))
        if s.swap is not None:
            out.swap.timestamp = s.ts
            out.swap.swap_usage_bytes.value = s.swap
        return out

    def list_containers(self, flt: cri.ContainerStatsFilter | None) -> list[cri.ContainerStats]:
        out = []
        for c in sorted(self.cri.records.containers.values(), key=lambda c: c.created_at):
            if c.state != RUNNING:
                continue
            if flt is not None:
                if flt.id and not c.id.startswith(flt.id):
                    continue
                if flt.pod_sandbox_id and not c.sandbox_id.startswith(flt.pod_sandbox_id):
                    continue
                if any(c.config.labels.get(k) != v for k, v in flt.label_selector.items()):
                    continue
            out.append(self.container(c))
        return out

    # --- pods -----------------------------------------------------------------------------------
    def pod(self, sb) -> cri.PodSandboxStats:
        out = cri.PodSandboxStats(attributes=cri.PodSandboxAttributes(
            id=sb.id, metadata=sb.config.metadata, labels=dict(sb.config.labels),
            annotations=dict(sb.config.annotations)))
        containers = [c for c in self.cri.records.containers_of(sb.id)]
        stats = [self.container(c) for c in containers]
        running = [c for c in containers if c.state == RUNNING and c.pid]
        linux = out.linux
        linux.containers.extend(st for st, c in zip(stats, containers) if c.state == RUNNING)
        if sb.cgroup_parent:
            s = self.reader.read(self.reader.dirs_of_path(sb.cgroup_parent))
        else:
            s = Sample(time.time_ns())
            for st in stats:
                if st.HasField("cpu"):
                    s.cpu_ns = (s.cpu_ns or 0) + st.cpu.usage_core_nano_seconds.value
                if st.HasField("memory"):
                    for attr, field in (("mem_usage", "usage_bytes"),
                                        ("mem_working", "working_set_bytes"),
                                        ("mem_rss", "rss_bytes"), ("page_faults", "page_faults"),
                                        ("major_faults", "major_page_faults")):
                        setattr(s, attr, (getattr(s, attr) or 0) +
                                getattr(st.memory, field).value)
            for c in running:
                n = self.reader.read(self.reader.dirs_of_pid(c.pid)).pids
                s.pids = (s.pids or 0) + (n or 0)
        linux.cpu.CopyFrom(self._cpu("pod:" + sb.id, s))
        linux.memory.CopyFrom(self._memory(s))
        linux.process.timestamp = s.ts
        if s.pids is not None:
            linux.process.process_count.value = s.pids
        net = self._network(sb, running)
        if net is not None:
            linux.network.CopyFrom(net)
        return out

    def _network(self, sb, running) -> cri.NetworkUsage | None:
        if not sb.netns:
            return None
        if running:
            text = _read(f"/proc/{running[0].pid}/net/dev")
        elif netns.is_namespace(sb.netns):
            text = netns.run_in(sb.netns, _read, "/proc/thread-self/net/dev")
        else:
            return None
        out = cri.NetworkUsage(timestamp=time.time_ns())
        for line in text.splitlines()[2:]:
            name, _, rest = line.partition(":")
            name, f = name.strip(), rest.split()
            if len(f) < 16 or name == "lo":
                continue
            iface = cri.NetworkInterfaceUsage(name=name)
            iface.rx_bytes.value, iface.rx_errors.value = int(f[0]), int(f[2])
            iface.tx_bytes.value, iface.tx_errors.value = int(f[8]), int(f[10])
            if name == "eth0" and not out.HasField("default_interface"):
                out.default_interface.CopyFrom(iface)
            else:
                out.interfaces.append(iface)
        return out

    def descriptors(self) -> list[cri.MetricDescriptor]:
        return descriptors()

    def pod_metrics(self) -> list[cri.PodSandboxMetrics]:
        return pod_metrics(self)

    def list_pods(self, flt: cri.PodSandboxStatsFilter | None) -> list[cri.PodSandboxStats]:
        out = []
        for sb in sorted(self.cri.records.sandboxes.values(), key=lambda s: s.created_at):
            if self.cri.sandboxes.state(sb) != cri.SANDBOX_READY:
                continue
            if flt is not None:
                if flt.id and not sb.id.startswith(flt.id):
                    continue
                if any(sb.config.labels.get(k) != v for k, v in flt.label_selector.items()):
                    continue
            out.append(self.pod(sb))
        return out


# --- metrics (ListMetricDescriptors, ListPodSandboxMetrics) ------------------------------------

LABEL_KEYS = ["container", "id", "image", "name", "namespace", "pod"]
METRICS = (
    ("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds",
     cri.COUNTER),
    ("container_memory_usage_bytes", "Current memory usage in bytes", cri.GAUGE),
    ("container_memory_working_set_bytes", "Current working set in bytes", cri.GAUGE),
    ("container_memory_rss", "Size of RSS in bytes", cri.GAUGE),
    ("container_processes", "Number of processes running inside the container", cri.GAUGE),
)


def descriptors() -> list[cri.MetricDescriptor]:
    return [cri.MetricDescriptor(name=n, help=h, label_keys=LABEL_KEYS) for n, h, _ in METRICS]


def _metric_values(reader: CgroupReader, c) -> dict[str, int | None]:
    s = reader.read(reader.dirs_of_pid(c.pid))
    return {"container_cpu_usage_seconds_total":
            None if s.cpu_ns is None else s.cpu_ns // 1_000_000_000,
            "container_memory_usage_bytes": s.mem_usage,
            "container_memory_working_set_bytes": s.mem_working,
            "container_memory_rss": s.mem_rss, "container_processes": s.pids}


def pod_metrics(stats: "Stats") -> list[cri.PodSandboxMetrics]:
    out = []
    for sb in sorted(stats.cri.records.sandboxes.values(), key=lambda s: s.created_at):
        pm = cri.PodSandboxMetrics(pod_sandbox_id=sb.id)
        md = sb.config.metadata
        for c in stats.cri.records.containers_of(sb.id):
            if c.state != RUNNING or not c.pid:
                continue
            values = _metric_values(stats.reader, c)
            labels = [c.config.metadata.name, c.id, c.image_name, c.name, md.namespace, md.name]
            cm = cri.ContainerMetrics(container_id=c.id)
            for name, _help, kind in METRICS:
                if values[name] is None:
                    continue
                m = cri.Metric(name=name, metric_type=kind, label_values=labels)
                m.value.value = int(values[name])
                cm.metrics.append(m)
            pm.container_metrics.append(cm)
        out.append(pm)
    return out
