"""The default OCI spec, as ``runc spec`` writes it, and its parts.

The order of keys is the order runc's Go structs give them (runtime-spec's
specs-go), so that ``pallet-runc spec`` writes the same bytes as
``runc spec`` (JSON indented with tabs, no final newline).  The engine
library builds docker's spec from the same parts (``linux_mounts``,
``MASKED_PATHS``, ``READONLY_PATHS``).
"""
from __future__ import annotations

import os

#: runtime-spec version runc 1.1 writes and reports
SPEC_VERSION = "1.0.2-dev"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: paths every container hides and makes read-only (runc's and docker's
#: defaults; docker adds /sys/devices/virtual/powercap to the masked ones)
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]


def mount(destination: str, type_: str, source: str, options=None) -> dict:
    """One OCI mount, keys in runtime-spec order, ``options`` only when given."""
    m = {"destination": destination, "type": type_, "source": source}
    if options is not None:
        m["options"] = list(options)
    return m


def linux_mounts(proc_options=None, shm_size: str = "65536k", cgroup: bool = True) -> list[dict]:
    """/proc, /dev (tmpfs, devpts, shm, mqueue), /sys and /sys/fs/cgroup in runc's order."""
    mounts = [
        mount("/proc", "proc", "proc", proc_options),
        mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance",
                                               "ptmxmode=0666", "mode=0620", "gid=5"]),
        mount("/dev/shm", "tmpfs", "shm", _NOSUID_NOEXEC_NODEV + ["mode=1777", f"size={shm_size}"]),
        mount("/dev/mqueue", "mqueue", "mqueue", _NOSUID_NOEXEC_NODEV),
        mount("/sys", "sysfs", "sysfs", _NOSUID_NOEXEC_NODEV + ["ro"]),
    ]
    if cgroup:
        mounts.append(mount("/sys/fs/cgroup", "cgroup", "cgroup",
                            _NOSUID_NOEXEC_NODEV + ["relatime", "ro"]))
    return mounts


def default_spec() -> dict:
    """The spec ``runc spec`` writes: ``sh`` on a terminal in a read-only
    ``rootfs``, few capabilities, new pid/net/ipc/uts/mount namespaces."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": list(caps), "effective": list(caps),
                             "permitted": list(caps), "ambient": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": linux_mounts(),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def rootless_spec(uid: int | None = None, gid: int | None = None) -> dict:
    """``spec --rootless``, as runc's specconv.ToRootless makes it: a user
    namespace mapping root to the caller, no network namespace, /sys bound
    from the host, no gid= on devpts, no resources."""
    spec = default_spec()
    lnx = spec["linux"]
    namespaces = [ns for ns in lnx["namespaces"] if ns["type"] != "network"]
    namespaces.append({"type": "user"})
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    # the Go struct puts the mappings before the namespaces
    spec["linux"] = {"uidMappings": [{"containerID": 0, "hostID": uid, "size": 1}],
                     "gidMappings": [{"containerID": 0, "hostID": gid, "size": 1}],
                     "namespaces": namespaces,
                     "maskedPaths": lnx["maskedPaths"], "readonlyPaths": lnx["readonlyPaths"]}
    mounts = []
    for m in spec["mounts"]:
        if m["destination"] == "/sys":
            m = mount("/sys", "none", "/sys", ["rbind"] + m["options"])
        elif m["type"] == "devpts":
            m = mount(m["destination"], "devpts", m["source"],
                      [o for o in m["options"] if not o.startswith("gid=")])
        mounts.append(m)
    spec["mounts"] = mounts
    return spec


def device_node(st: os.stat_result, path: str) -> dict | None:
    """The ``linux.devices`` entry that makes the host node ``st`` (its
    ``os.stat``) appear at ``path`` in the container; None when it is neither
    a character nor a block device."""
    import stat

    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return {"path": path, "type": kind, "major": os.major(st.st_rdev),
            "minor": os.minor(st.st_rdev), "fileMode": st.st_mode & 0o7777,
            "uid": st.st_uid, "gid": st.st_gid}


def join_namespace(spec: dict, kind: str, path: str) -> None:
    """Have the container join the namespace at ``path`` (``/proc/PID/ns/net``,
    a bind-mounted netns): the spec's entry of that type gets the path, or
    one is added."""
    namespaces = spec.setdefault("linux", {}).setdefault("namespaces", [])
    for ns in namespaces:
        if ns.get("type") == kind:
            ns["path"] = path
            return
    namespaces.append({"type": kind, "path": path})


def bind_file(spec: dict, destination: str, source: str) -> None:
    """Bind the host's ``source`` at ``destination``: the mount already there
    (the engine's /etc/hosts, say) takes the new source, else a private
    recursive bind is added."""
    mounts = spec.setdefault("mounts", [])
    for m in mounts:
        if m.get("destination") == destination:
            m["source"] = source
            return
    mounts.append({"destination": destination, "type": "bind", "source": source,
                   "options": ["rbind", "rprivate"]})


#: the /etc files a network role writes per container, by its key in the
#: role's paths table
ETC_FILES = (("/etc/resolv.conf", "resolv"), ("/etc/hostname", "hostname"),
             ("/etc/hosts", "hosts"))


def join_sandbox(spec: dict, netns: str | None, files: dict,
                 hostname: str | None = None) -> None:
    """Point the spec at a network sandbox: join the network namespace at
    ``netns`` (None: the host's, so the spec's own network namespace is
    dropped), take the sandbox owner's ``hostname`` when given (``--network
    container:``) and bind the /etc files of ``files`` (key -> host path)."""
    if netns is None:
        linux = spec.setdefault("linux", {})
        linux["namespaces"] = [ns for ns in linux.get("namespaces", [])
                               if ns.get("type") != "network"]
    else:
        join_namespace(spec, "network", netns)
    if hostname is not None:
        spec["hostname"] = hostname
    for dest, key in ETC_FILES:
        if files.get(key):
            bind_file(spec, dest, files[key])
