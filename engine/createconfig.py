"""What ``POST /containers/create`` accepts, as dockerd checks and completes it:
field types, defaults of HostConfig, and the merge with the image's config."""
from __future__ import annotations

import os
import signal as _signal

from pallet.core import errors
from pallet.engine import spec as specmod

def parse_signal(value, default: int = _signal.SIGKILL) -> int:
    """``KILL``, ``SIGKILL``, ``9`` -> 9, as docker accepts them."""
    if value is None or value == "":
        return int(default)
    text = str(value).strip().upper()
    if text.isdigit():
        n = int(text)
        if 0 < n < 65:
            return n
        raise errors.InvalidArgument(f"invalid signal: {value}")
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(_signal.Signals[text])
    except KeyError:
        raise errors.InvalidArgument(f"invalid signal: {value}") from None


def merge_config(cfg: dict, image_cfg: dict) -> dict:
    """Fill a create request's Config from the image config, as dockerd's merge does."""
    cfg = dict(cfg)
    if not cfg.get("Entrypoint") and not cfg.get("Cmd"):
        cfg["Cmd"] = image_cfg.get("Cmd")
        if cfg.get("Entrypoint") is None:
            cfg["Entrypoint"] = image_cfg.get("Entrypoint")
    elif cfg.get("Entrypoint") is None and cfg.get("Cmd"):
        cfg["Entrypoint"] = image_cfg.get("Entrypoint")
    env: dict[str, str] = {}
    for item in list(image_cfg.get("Env") or ()) + list(cfg.get("Env") or ()):
        if not isinstance(item, str):
            raise errors.InvalidArgument(f"invalid environment variable: {item!r}")
        env[item.split("=", 1)[0]] = item
    cfg["Env"] = list(env.values()) or None
    for key in ("WorkingDir", "User", "StopSignal"):
        if not cfg.get(key) and image_cfg.get(key):
            cfg[key] = image_cfg[key]
    labels = dict(image_cfg.get("Labels") or {})
    labels.update(cfg.get("Labels") or {})
    cfg["Labels"] = labels
    for key in ("ExposedPorts", "Volumes"):
        merged = dict(image_cfg.get(key) or {})
        merged.update(cfg.get(key) or {})
        cfg[key] = merged or None
    from pallet.engine import health

    hc = health.merge(cfg.get("Healthcheck"), image_cfg.get("Healthcheck"))
    if hc is not None:
        cfg["Healthcheck"] = hc
    return cfg


def host_defaults(host: dict) -> dict:
    """HostConfig as dockerd stores it: every field present, defaults filled in
    (docker-py reads ``HostConfig.LogConfig.Type`` after ``run``)."""
    out = {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "default", "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
        "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None,
        "CapDrop": None, "CgroupnsMode": "host" if cgroup_version() == 1 else "private",
        "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
        "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
        "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False,
        "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864,
        "Runtime": "runc", "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0,
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0,
        "MemorySwap": 0,
        "Ulimits": None, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0, "MaskedPaths": list(specmod.MASKED_PATHS),
        "ReadonlyPaths": list(specmod.READONLY_PATHS),
    }
    for key, value in host.items():
        if value is not None or key not in out:
            out[key] = value
    if not out.get("NetworkMode"):
        out["NetworkMode"] = "default"
    from pallet.engine.logs import check_log_config
    from pallet.engine.restart import check_policy

    out["LogConfig"] = check_log_config(out.get("LogConfig") or {})
    out["RestartPolicy"] = check_policy(out)
    if not out.get("ShmSize"):
        out["ShmSize"] = 67108864
    for key in ("MemorySwappiness", "OomKillDisable", "PidsLimit"):
        if out.get(key) is None:
            out.pop(key, None)  # unset pointers: the 1.43 document allows no null here
    return out


_SYSCTL_NAMESPACED = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                      "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def check_create(body: dict) -> None:
    """Refuse wrong fields with a 400 before anything is created (dockerd's
    decoding and ``verifyContainerSettings``)."""
    def want(obj, key, types, where):
        v = obj.get(key)
        if v is not None and (not isinstance(v, types) or isinstance(v, bool) and
                              bool not in (types if isinstance(types, tuple) else (types,))):
            raise errors.InvalidArgument(f"invalid {where}{key}: {v!r}")

    def string_map(obj, key, where):
        want(obj, key, dict, where)
        for k, v in (obj.get(key) or {}).items():
            if not isinstance(v, str):
                raise errors.InvalidArgument(f"invalid {where}{key}: value of {k!r} must be "
                                             "a string")

    for key in ("Cmd", "Entrypoint"):
        want(body, key, (list, str), "")
        v = body.get(key)
        if isinstance(v, list) and not all(isinstance(a, str) for a in v):
            raise errors.InvalidArgument(f"invalid {key}: every element must be a string")
    want(body, "Env", list, "")
    for key in ("Image", "User", "WorkingDir", "Hostname", "Domainname", "StopSignal"):
        want(body, key, str, "")
    want(body, "StopTimeout", int, "")
    string_map(body, "Labels", "")
    for key in ("ExposedPorts", "Volumes", "HostConfig", "NetworkingConfig"):
        want(body, key, dict, "")
    for key in ("Tty", "OpenStdin", "AttachStdin", "AttachStdout", "AttachStderr", "StdinOnce"):
        want(body, key, bool, "")
    wd = body.get("WorkingDir")
    if wd and not wd.startswith("/"):
        raise errors.InvalidArgument(f"the working directory '{wd}' is invalid, it needs to be "
                                     "an absolute path")
    hostname = body.get("Hostname") or ""
    if hostname and (len(hostname) > 63 or not all(c.isalnum() or c in "-." for c in hostname)):
        raise errors.InvalidArgument(f"invalid hostname format: {hostname}")
    if body.get("StopSignal"):
        parse_signal(body["StopSignal"])
    from pallet.engine import health

    health.check(body.get("Healthcheck"))
    host = body.get("HostConfig") or {}
    for key in ("AutoRemove", "Privileged", "ReadonlyRootfs", "Init", "PublishAllPorts"):
        want(host, key, bool, "HostConfig.")
    for key in ("CapAdd", "CapDrop", "Binds", "SecurityOpt", "GroupAdd", "Dns", "DnsSearch",
                "DnsOptions", "ExtraHosts", "Mounts", "VolumesFrom", "Devices", "Ulimits",
                "MaskedPaths", "ReadonlyPaths"):
        want(host, key, list, "HostConfig.")
    for key in ("CapAdd", "CapDrop", "Binds", "VolumesFrom", "MaskedPaths", "ReadonlyPaths"):
        if not all(isinstance(x, str) for x in host.get(key) or ()):
            raise errors.InvalidArgument(f"invalid HostConfig.{key}: a list of strings is "
                                         "expected")
    for key in ("PortBindings", "RestartPolicy", "LogConfig", "Tmpfs"):
        want(host, key, dict, "HostConfig.")
    string_map(host, "Sysctls", "HostConfig.")
    for key in ("Memory", "ShmSize", "PidsLimit", "CpuShares", "MemorySwap", "NanoCpus"):
        want(host, key, int, "HostConfig.")
    for key in ("NetworkMode", "IpcMode", "PidMode", "UTSMode", "CgroupParent"):
        want(host, key, str, "HostConfig.")
    if (host.get("ShmSize") or 0) < 0:
        raise errors.InvalidArgument("SHM size can not be less than 0")
    if (host.get("Memory") or 0) < 0:
        raise errors.InvalidArgument("invalid memory limit: it must not be negative")
    for port, bindings in (host.get("PortBindings") or {}).items():
        number, _, proto = str(port).partition("/")
        if not number.isdigit() or not 0 < int(number) < 65536 or \
                proto not in ("", "tcp", "udp", "sctp"):
            raise errors.InvalidArgument(f"invalid port specification: \"{port}\"")
        if bindings is not None and (not isinstance(bindings, list) or
                                     not all(isinstance(b, dict) for b in bindings)):
            raise errors.InvalidArgument(f"invalid HostConfig.PortBindings[{port}]: a list of "
                                         "{HostIp, HostPort} is expected")
    for key in (host.get("Sysctls") or {}):
        if key not in _SYSCTL_NAMESPACED and not key.startswith(("fs.mqueue.", "net.")):
            raise errors.InvalidArgument(f"sysctl '{key}' is not allowed: only namespaced "
                                         "sysctls (kernel.msg*, kernel.sem, kernel.shm*, "
                                         "fs.mqueue.*, net.*) can be set")


_CGV = None


def cgroup_version() -> int:
    """1 or 2: the cgroup hierarchy of this machine."""
    global _CGV
    if _CGV is None:
        _CGV = 2 if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else 1
    return _CGV
