"""The OCI runtime spec palletd gives a container: docker's defaults.

Other plugins add their part afterwards through the ``pallet_build_spec``
pipeline (init, network, security); this module only knows what dockerd puts
in every container by default (daemon/oci_linux.go and oci/defaults.go in moby,
described in the OCI runtime spec's config-linux.md).
"""
from __future__ import annotations

import os

from pallet.core.errors import InvalidArgument
from pallet.linux.syscalls import CAP_NUMBERS, CAPABILITIES

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: docker's default capability set (moby oci/caps/defaults.go)
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

ALL_CAPS = CAPABILITIES

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

# the device cgroup rules dockerd allows by default (oci/devices_linux.go)
DEFAULT_DEVICE_RULES = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},    # /dev/zero
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},    # /dev/null
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},    # /dev/urandom
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},    # /dev/random
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},    # /dev/tty
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},    # /dev/console
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},    # /dev/full
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},    # /dev/ptmx
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},              # /dev/pts/*
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},  # /dev/fuse
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # /dev/net/tun
)


def default_mounts(shm_size: int) -> list[dict]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]},
    ]


_HOST_CAPS: tuple[str, ...] | None = None


def host_caps() -> tuple[str, ...]:
    """The capabilities this engine itself can hand out: its own bounding set
    (``CapBnd`` of /proc/self/status), within what the kernel knows.  "All
    capabilities" (``--privileged``, ``--cap-add ALL``) means these: asking
    for one the engine lacks would make the runtime's capset fail."""
    global _HOST_CAPS
    if _HOST_CAPS is None:
        try:
            with open("/proc/self/status") as f:
                bnd = next(int(line.split()[1], 16) for line in f
                           if line.startswith("CapBnd:"))
        except (OSError, StopIteration, ValueError):
            bnd = (1 << 64) - 1
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                last = int(f.read())
        except (OSError, ValueError):
            last = 40
        _HOST_CAPS = tuple(c for c in ALL_CAPS
                           if CAP_NUMBERS[c] <= last and bnd >> CAP_NUMBERS[c] & 1)
    return _HOST_CAPS


def capabilities(cap_add, cap_drop, privileged: bool) -> list[str]:
    """Docker's default set adjusted by ``--cap-add``/``--cap-drop`` (``ALL`` allowed)."""
    if privileged:
        return list(host_caps())

    def norm(c: str) -> str:
        c = c.upper()
        return c if c.startswith("CAP_") or c == "ALL" else "CAP_" + c

    add = [norm(c) for c in cap_add or ()]
    drop = [norm(c) for c in cap_drop or ()]
    for c in add + drop:
        if c != "ALL" and c not in ALL_CAPS:
            raise InvalidArgument(f"unknown capability: {c!r}")
    caps = [] if "ALL" in drop else list(DEFAULT_CAPS)
    caps = [c for c in caps if c not in drop]
    if "ALL" in add:
        return [c for c in host_caps() if c not in drop]
    for c in add:
        if c not in caps:
            caps.append(c)
    return caps


def merge_env(image_env, request_env, hostname: str, tty: bool) -> list[str]:
    """Image env, then the request's (same name wins), PATH default, HOSTNAME first."""
    out: dict[str, str] = {}
    for item in list(image_env or ()) + list(request_env or ()):
        if not isinstance(item, str):
            raise InvalidArgument(f"invalid environment variable: {item!r}")
        key = item.split("=", 1)[0]
        if not key:
            raise InvalidArgument(f"invalid environment variable: {item}")
        out[key] = item
    env = [f"HOSTNAME={hostname}"] if "HOSTNAME" not in out else []
    if "PATH" not in out:
        env.append(f"PATH={DEFAULT_PATH}")
    if tty and "TERM" not in out:
        env.append("TERM=xterm")
    return env + list(out.values())


def command(image_cfg: dict, cfg: dict) -> list[str]:
    """Entrypoint + Cmd as docker combines them: a request's Entrypoint drops the image's Cmd."""
    entrypoint = cfg.get("Entrypoint")
    cmd = cfg.get("Cmd")
    if entrypoint is None:
        entrypoint = image_cfg.get("Entrypoint") or []
        if cmd is None:
            cmd = image_cfg.get("Cmd") or []
    elif cmd is None:
        cmd = []
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    if isinstance(cmd, str):
        cmd = [cmd]  # docker's StrSlice: a JSON string is a one-element list
    args = list(entrypoint) + list(cmd)
    if not args:
        raise InvalidArgument("no command specified")
    if not all(isinstance(a, str) for a in args):
        raise InvalidArgument("command arguments must be strings")
    return args


def _lookup(rootfs_dirs, fname: str, key: str, index: int):
    """Find ``key`` in /etc/passwd or /etc/group of a layered rootfs (upper first)."""
    for d in rootfs_dirs:
        path = os.path.join(d, "etc", fname)
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    parts = line.rstrip("\n").split(":")
                    if len(parts) > 3 and parts[0] == key:
                        return parts
        except OSError:
            continue
    return None


def resolve_user(user: str, rootfs_dirs) -> dict:
    """``uid[:gid]`` or ``name[:group]`` to the OCI process.user, reading the
    image's /etc/passwd and /etc/group for names."""
    user = user or ""
    name, _, group = user.partition(":")
    uid, gid = 0, 0
    if name:
        if name.isdigit():
            uid = int(name)
            entry = None
        else:
            entry = _lookup(rootfs_dirs, "passwd", name, 0)
            if entry is None:
                if name == "root":
                    entry = ["root", "x", "0", "0"]
                else:
                    raise InvalidArgument(f"unable to find user {name}: "
                                          "no matching entries in passwd file")
            uid = int(entry[2])
        if entry is not None:
            gid = int(entry[3])
        elif not group:
            # a numeric uid takes its primary group from passwd when it has one
            for d in rootfs_dirs:
                try:
                    with open(os.path.join(d, "etc", "passwd"), errors="replace") as f:
                        for line in f:
                            parts = line.split(":")
                            if len(parts) > 3 and parts[2] == str(uid):
                                gid = int(parts[3])
                                break
                except (OSError, ValueError):
                    continue
                break
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            entry = _lookup(rootfs_dirs, "group", group, 0)
            if entry is None:
                raise InvalidArgument(f"unable to find group {group}: "
                                      "no matching entries in group file")
            gid = int(entry[2])
    return {"uid": uid, "gid": gid}


def rootfs_dirs_from_mounts(mounts: list) -> list[str]:
    """The directories of a snapshot's mounts, topmost first, to read files
    from the image without mounting it (overlay: upperdir then lowerdirs)."""
    out: list[str] = []
    for m in mounts:
        mtype = getattr(m, "type", None) or (m.get("type") if isinstance(m, dict) else "")
        source = getattr(m, "source", None) or (m.get("source") if isinstance(m, dict) else "")
        options = getattr(m, "options", None) or (m.get("options") if isinstance(m, dict) else ())
        if mtype == "overlay":
            upper, lower = None, []
            for o in options:
                if o.startswith("upperdir="):
                    upper = o.split("=", 1)[1]
                elif o.startswith("lowerdir="):
                    lower = o.split("=", 1)[1].split(":")
            out.extend(([upper] if upper else []) + lower)
        elif mtype == "bind" or "bind" in (options or ()) or "rbind" in (options or ()):
            out.append(source)
    return out


def build(container: dict, image_cfg: dict, *, rootfs_dirs=(), cgroup_parent: str = "/pallet",
          cgroup_version: int = 1) -> dict:
    """docker's default OCI spec for a container record (``config.v2.json`` shape)."""
    cfg = container["Config"]
    host = container["HostConfig"]
    cid = container["Id"]
    hostname = cfg.get("Hostname") or cid[:12]
    tty = bool(cfg.get("Tty"))
    privileged = bool(host.get("Privileged"))
    caps = capabilities(host.get("CapAdd"), host.get("CapDrop"), privileged)
    user = resolve_user(cfg.get("User") or image_cfg.get("User") or "", rootfs_dirs)
    groups = []
    for g in host.get("GroupAdd") or ():
        if str(g).isdigit():
            groups.append(int(g))
        else:
            entry = _lookup(rootfs_dirs, "group", str(g), 0)
            if entry is None:
                raise InvalidArgument(f"unable to find group {g}")
            groups.append(int(entry[2]))
    if groups:
        user["additionalGids"] = groups
    shm_size = int(host.get("ShmSize") or 64 * 1024 * 1024)
    namespaces = [{"type": t} for t in ("mount", "network", "uts", "pid", "ipc")]
    if cgroup_version == 2 and (host.get("CgroupnsMode") or "private") == "private":
        namespaces.append({"type": "cgroup"})
    mode = host.get("NetworkMode") or "default"
    if mode == "host":
        namespaces = [n for n in namespaces if n["type"] not in ("network", "uts")]
    if (host.get("PidMode") or "") == "host":
        namespaces = [n for n in namespaces if n["type"] != "pid"]
    if (host.get("IpcMode") or "") == "host":
        namespaces = [n for n in namespaces if n["type"] != "ipc"]
    mounts = default_mounts(shm_size)
    for dest, key in (("/etc/resolv.conf", "ResolvConfPath"), ("/etc/hostname", "HostnamePath"),
                      ("/etc/hosts", "HostsPath")):
        src = container.get(key)
        if src:
            mounts.append({"destination": dest, "type": "bind", "source": src,
                           "options": ["rbind", "rprivate"]})
    if privileged:
        for m in mounts:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    resources = {"devices": [dict(r) for r in DEFAULT_DEVICE_RULES]}
    if host.get("Memory"):
        resources["memory"] = {"limit": int(host["Memory"])}
    if host.get("PidsLimit"):
        resources["pids"] = {"limit": int(host["PidsLimit"])}
    if host.get("CpuShares"):
        resources["cpu"] = {"shares": int(host["CpuShares"])}
    linux = {
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": f"{cgroup_parent.rstrip('/')}/{cid}",
    }
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    if host.get("Sysctls"):
        linux["sysctl"] = dict(host["Sysctls"])
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": tty,
            "user": user,
            "args": ([container["Path"]] + list(container.get("Args") or ())
                     if container.get("Path") else command(image_cfg, cfg)),
            "env": merge_env(image_cfg.get("Env"), cfg.get("Env"), hostname, tty),
            "cwd": cfg.get("WorkingDir") or image_cfg.get("WorkingDir") or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": "no-new-privileges" in (host.get("SecurityOpt") or ()),
        },
        "root": {"path": "rootfs", "readonly": bool(host.get("ReadonlyRootfs"))},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
    if mode == "host":
        spec.pop("hostname")
    if not spec["process"]["cwd"].startswith("/"):
        raise InvalidArgument(f"the working directory '{spec['process']['cwd']}' is invalid, "
                              "it needs to be an absolute path")
    return spec


#: where dockerd mounts the init binary of --init (moby daemon/oci_linux.go, WithInit)
INIT_TARGET = "/sbin/docker-init"


def with_init_binary(spec: dict, source: str, target: str = INIT_TARGET) -> None:
    """Run the container's process under the static init binary ``source``
    of the host, as dockerd's ``--init`` does: bind-mounted read-only at
    ``target`` and put in front of ``process.args`` (``docker-init -- ARGS``).
    A second call changes nothing."""
    mounts = spec.setdefault("mounts", [])
    if not any(m.get("destination") == target for m in mounts):
        mounts.append({"destination": target, "type": "bind", "source": source,
                       "options": ["bind", "ro"]})
    process = spec.setdefault("process", {})
    args = list(process.get("args") or [])
    if args[:1] != [target]:
        process["args"] = [target, "--"] + args
