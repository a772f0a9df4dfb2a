"""The messages of containerd's shim v2 task API, its task events, the
event Forward call and the cgroup v1 metrics, declared for :mod:`..pbwire`.

Names and field numbers are containerd 1.6's (``runtime/v2/task/shim.proto``,
``api/events/task.proto``, ``api/types/task/task.proto``,
``api/services/ttrpc/events/v1/events.proto``, the cgroups module's
``stats/v1/metrics.proto`` and runc's ``runtime/v2/runc/options/oci.proto``);
``tests/shim/test_pbwire.py`` checks them against the generated classes.
"""
from __future__ import annotations

from pallet.proto.wire import Any, Timestamp, message

# containerd.v1.types.Status
UNKNOWN, CREATED, RUNNING, STOPPED, PAUSED, PAUSING = range(6)

Mount = message("containerd.types.Mount", (1, "type", "string"), (2, "source", "string"),
                (3, "target", "string"), (4, "options", "*string"))
ProcessInfo = message("containerd.v1.types.ProcessInfo", (1, "pid", "uint32"), (2, "info", Any))

# --- containerd.task.v2 ---------------------------------------------------------------
CreateTaskRequest = message(
    "containerd.task.v2.CreateTaskRequest", (1, "id", "string"), (2, "bundle", "string"),
    (3, "rootfs", ("*", Mount)), (4, "terminal", "bool"), (5, "stdin", "string"),
    (6, "stdout", "string"), (7, "stderr", "string"), (8, "checkpoint", "string"),
    (9, "parent_checkpoint", "string"), (10, "options", Any))
CreateTaskResponse = message("containerd.task.v2.CreateTaskResponse", (1, "pid", "uint32"))
DeleteRequest = message("containerd.task.v2.DeleteRequest", (1, "id", "string"),
                        (2, "exec_id", "string"))
DeleteResponse = message("containerd.task.v2.DeleteResponse", (1, "pid", "uint32"),
                         (2, "exit_status", "uint32"), (3, "exited_at", Timestamp))
ExecProcessRequest = message(
    "containerd.task.v2.ExecProcessRequest", (1, "id", "string"), (2, "exec_id", "string"),
    (3, "terminal", "bool"), (4, "stdin", "string"), (5, "stdout", "string"),
    (6, "stderr", "string"), (7, "spec", Any))
ResizePtyRequest = message("containerd.task.v2.ResizePtyRequest", (1, "id", "string"),
                           (2, "exec_id", "string"), (3, "width", "uint32"),
                           (4, "height", "uint32"))
StateRequest = message("containerd.task.v2.StateRequest", (1, "id", "string"),
                       (2, "exec_id", "string"))
StateResponse = message(
    "containerd.task.v2.StateResponse", (1, "id", "string"), (2, "bundle", "string"),
    (3, "pid", "uint32"), (4, "status", "enum"), (5, "stdin", "string"),
    (6, "stdout", "string"), (7, "stderr", "string"), (8, "terminal", "bool"),
    (9, "exit_status", "uint32"), (10, "exited_at", Timestamp), (11, "exec_id", "string"))
KillRequest = message("containerd.task.v2.KillRequest", (1, "id", "string"),
                      (2, "exec_id", "string"), (3, "signal", "uint32"), (4, "all", "bool"))
CloseIORequest = message("containerd.task.v2.CloseIORequest", (1, "id", "string"),
                         (2, "exec_id", "string"), (3, "stdin", "bool"))
PidsRequest = message("containerd.task.v2.PidsRequest", (1, "id", "string"))
PidsResponse = message("containerd.task.v2.PidsResponse", (1, "processes", ("*", ProcessInfo)))
CheckpointTaskRequest = message("containerd.task.v2.CheckpointTaskRequest",
                                (1, "id", "string"), (2, "path", "string"), (3, "options", Any))
UpdateTaskRequest = message("containerd.task.v2.UpdateTaskRequest", (1, "id", "string"),
                            (2, "resources", Any), (3, "annotations", "map"))
StartRequest = message("containerd.task.v2.StartRequest", (1, "id", "string"),
                       (2, "exec_id", "string"))
StartResponse = message("containerd.task.v2.StartResponse", (1, "pid", "uint32"))
WaitRequest = message("containerd.task.v2.WaitRequest", (1, "id", "string"),
                      (2, "exec_id", "string"))
WaitResponse = message("containerd.task.v2.WaitResponse", (1, "exit_status", "uint32"),
                       (2, "exited_at", Timestamp))
StatsRequest = message("containerd.task.v2.StatsRequest", (1, "id", "string"))
StatsResponse = message("containerd.task.v2.StatsResponse", (1, "stats", Any))
ConnectRequest = message("containerd.task.v2.ConnectRequest", (1, "id", "string"))
ConnectResponse = message("containerd.task.v2.ConnectResponse", (1, "shim_pid", "uint32"),
                          (2, "task_pid", "uint32"), (3, "version", "string"))
ShutdownRequest = message("containerd.task.v2.ShutdownRequest", (1, "id", "string"),
                          (2, "now", "bool"))
PauseRequest = message("containerd.task.v2.PauseRequest", (1, "id", "string"))
ResumeRequest = message("containerd.task.v2.ResumeRequest", (1, "id", "string"))

# --- containerd.events ---------------------------------------------------------------------
TaskIO = message("containerd.events.TaskIO", (1, "stdin", "string"), (2, "stdout", "string"),
                 (3, "stderr", "string"), (4, "terminal", "bool"))
TaskCreate = message("containerd.events.TaskCreate", (1, "container_id", "string"),
                     (2, "bundle", "string"), (3, "rootfs", ("*", Mount)), (4, "io", TaskIO),
                     (5, "checkpoint", "string"), (6, "pid", "uint32"))
TaskStart = message("containerd.events.TaskStart", (1, "container_id", "string"),
                    (2, "pid", "uint32"))
TaskDelete = message("containerd.events.TaskDelete", (1, "container_id", "string"),
                     (2, "pid", "uint32"), (3, "exit_status", "uint32"),
                     (4, "exited_at", Timestamp), (5, "id", "string"))
TaskExit = message("containerd.events.TaskExit", (1, "container_id", "string"),
                   (2, "id", "string"), (3, "pid", "uint32"), (4, "exit_status", "uint32"),
                   (5, "exited_at", Timestamp))
TaskOOM = message("containerd.events.TaskOOM", (1, "container_id", "string"))
TaskExecAdded = message("containerd.events.TaskExecAdded", (1, "container_id", "string"),
                        (2, "exec_id", "string"))
TaskExecStarted = message("containerd.events.TaskExecStarted", (1, "container_id", "string"),
                          (2, "exec_id", "string"), (3, "pid", "uint32"))
TaskPaused = message("containerd.events.TaskPaused", (1, "container_id", "string"))
TaskResumed = message("containerd.events.TaskResumed", (1, "container_id", "string"))

# --- containerd.services.events.ttrpc.v1 ---------------------------------------------------------
Envelope = message("containerd.services.events.ttrpc.v1.Envelope", (1, "timestamp", Timestamp),
                   (2, "namespace", "string"), (3, "topic", "string"), (4, "event", Any))
ForwardRequest = message("containerd.services.events.ttrpc.v1.ForwardRequest",
                         (1, "envelope", Envelope))

# --- runc's options (containerd.runc.v1) ---------------------------------------------------------
RUNC_OPTIONS_TYPES = ("containerd.runc.v1.Options", "io.containerd.runc.v1.Options",
                      "runtimeoptions.v1.Options")
RuncOptions = message(
    "containerd.runc.v1.Options", (1, "no_pivot_root", "bool"), (2, "no_new_keyring", "bool"),
    (3, "shim_cgroup", "string"), (4, "io_uid", "uint32"), (5, "io_gid", "uint32"),
    (6, "binary_name", "string"), (7, "root", "string"), (8, "criu_path", "string"),
    (9, "systemd_cgroup", "bool"), (10, "criu_image_path", "string"),
    (11, "criu_work_path", "string"))
ProcessDetails = message("containerd.runc.v1.ProcessDetails", (1, "exec_id", "string"))

# --- io.containerd.cgroups.v1 --------------------------------------------------------------------
METRICS_TYPE = "io.containerd.cgroups.v1.Metrics"
HugetlbStat = message("io.containerd.cgroups.v1.HugetlbStat", (1, "usage", "uint64"),
                      (2, "max", "uint64"), (3, "failcnt", "uint64"), (4, "pagesize", "string"))
PidsStat = message("io.containerd.cgroups.v1.PidsStat", (1, "current", "uint64"),
                   (2, "limit", "uint64"))
CPUUsage = message("io.containerd.cgroups.v1.CPUUsage", (1, "total", "uint64"),
                   (2, "kernel", "uint64"), (3, "user", "uint64"), (4, "per_cpu", "*uint64"))
Throttle = message("io.containerd.cgroups.v1.Throttle", (1, "periods", "uint64"),
                   (2, "throttled_periods", "uint64"), (3, "throttled_time", "uint64"))
CPUStat = message("io.containerd.cgroups.v1.CPUStat", (1, "usage", CPUUsage),
                  (2, "throttling", Throttle))
MemoryEntry = message("io.containerd.cgroups.v1.MemoryEntry", (1, "limit", "uint64"),
                      (2, "usage", "uint64"), (3, "max", "uint64"), (4, "failcnt", "uint64"))
#: memory.stat keys, in the order (and with the numbers) of MemoryStat's fields 1-32
MEMORY_STAT_KEYS = (
    "cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "pgpgin", "pgpgout",
    "pgfault", "pgmajfault", "inactive_anon", "active_anon", "inactive_file", "active_file",
    "unevictable", "hierarchical_memory_limit", "hierarchical_memsw_limit")
MEMORY_FIELDS = ("cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "pg_pg_in",
                  "pg_pg_out", "pg_fault", "pg_maj_fault", "inactive_anon", "active_anon",
                  "inactive_file", "active_file", "unevictable", "hierarchical_memory_limit",
                  "hierarchical_swap_limit")
MemoryStat = message(
    "io.containerd.cgroups.v1.MemoryStat",
    *[(i + 1, name, "uint64") for i, name in enumerate(MEMORY_FIELDS)],
    *[(18 + i, "total_" + name, "uint64") for i, name in enumerate(MEMORY_FIELDS[:15])],
    (33, "usage", MemoryEntry), (34, "swap", MemoryEntry), (35, "kernel", MemoryEntry),
    (36, "kernel_tcp", MemoryEntry))
BlkIOEntry = message("io.containerd.cgroups.v1.BlkIOEntry", (1, "op", "string"),
                     (2, "device", "string"), (3, "major", "uint64"), (4, "minor", "uint64"),
                     (5, "value", "uint64"))
BlkIOStat = message(
    "io.containerd.cgroups.v1.BlkIOStat", (1, "io_service_bytes_recursive", ("*", BlkIOEntry)),
    (2, "io_serviced_recursive", ("*", BlkIOEntry)), (3, "io_queued_recursive", ("*", BlkIOEntry)),
    (4, "io_service_time_recursive", ("*", BlkIOEntry)),
    (5, "io_wait_time_recursive", ("*", BlkIOEntry)), (6, "io_merged_recursive", ("*", BlkIOEntry)),
    (7, "io_time_recursive", ("*", BlkIOEntry)), (8, "sectors_recursive", ("*", BlkIOEntry)))
MemoryOomControl = message("io.containerd.cgroups.v1.MemoryOomControl",
                           (1, "oom_kill_disable", "uint64"), (2, "under_oom", "uint64"),
                           (3, "oom_kill", "uint64"))
Metrics = message("io.containerd.cgroups.v1.Metrics", (1, "hugetlb", ("*", HugetlbStat)),
                  (2, "pids", PidsStat), (3, "cpu", CPUStat), (4, "memory", MemoryStat),
                  (5, "blkio", BlkIOStat), (9, "memory_oom_control", MemoryOomControl))
