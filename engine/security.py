"""A container's security settings, as dockerd derives them: the default
capability set adjusted by ``--cap-add``/``--cap-drop``, docker's default
seccomp profile cut down to this container's capabilities and this machine's
architecture and kernel, masked and read-only ``/proc`` paths, and what
``--privileged`` and ``--security-opt`` change.

The OCI runtime (runtime_ns, runc) compiles ``linux.seccomp`` into BPF; this
module only writes the spec (config-linux.md "Seccomp").
"""
from __future__ import annotations

import json
import os
import platform

from pallet.core.errors import InvalidArgument
from pallet.engine import spec as specmod

# Go's GOARCH names (used by the profile's includes/excludes) and libseccomp's
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "i386": "386", "i686": "386", "armv7l": "arm", "armv6l": "arm",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
           "loongarch64": "loong64", "mips64": "mips64", "mips64el": "mips64le"}
_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "386": "SCMP_ARCH_X86", "arm64": "SCMP_ARCH_AARCH64",
              "arm": "SCMP_ARCH_ARM", "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
              "riscv64": "SCMP_ARCH_RISCV64", "loong64": "SCMP_ARCH_LOONGARCH64",
              "mips64": "SCMP_ARCH_MIPS64", "mips64le": "SCMP_ARCH_MIPSEL64"}

# /dev entries dockerd leaves out of a privileged container's devices
_SKIP_DEV_DIRS = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"}


def native_arch() -> str:
    """This machine's architecture by Go's name (``amd64``)."""
    m = platform.machine().lower()
    return _GOARCH.get(m, m)


def kernel_version() -> tuple[int, int]:
    parts = platform.release().split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


_DEFAULT_PROFILE = None


def default_profile() -> dict:
    """Docker's default seccomp profile (moby/profiles seccomp/default.json)."""
    global _DEFAULT_PROFILE
    if _DEFAULT_PROFILE is None:
        from pallet.engine.seccomp_default import PROFILE_JSON

        _DEFAULT_PROFILE = json.loads(PROFILE_JSON)
    return _DEFAULT_PROFILE


# --- --security-opt --------------------------------------------------------------

def parse_security_opts(opts) -> dict:
    """``HostConfig.SecurityOpt`` as dockerd reads it (``key=value``, or the old
    ``key:value``); an unknown option is a 400 naming it."""
    out = {"no_new_privileges": False, "seccomp": None, "apparmor": None, "labels": [],
           "systempaths": None}
    if opts is None:
        return out
    if not isinstance(opts, list):
        raise InvalidArgument("invalid HostConfig.SecurityOpt: a list of strings is expected")
    for opt in opts:
        if not isinstance(opt, str):
            raise InvalidArgument(f"invalid --security-opt: {opt!r}")
        if opt == "no-new-privileges":
            out["no_new_privileges"] = True
            continue
        if opt == "disable":
            out["labels"].append("disable")
            continue
        sep = "=" if "=" in opt else ":" if ":" in opt else None
        if sep is None:
            raise InvalidArgument(f'invalid --security-opt 1: "{opt}"')
        key, value = opt.split(sep, 1)
        if key == "no-new-privileges":
            if value.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
            out["no_new_privileges"] = value.lower() in ("true", "1")
        elif key == "seccomp":
            out["seccomp"] = _seccomp_option(value)
        elif key == "apparmor":
            out["apparmor"] = value
        elif key == "label":
            out["labels"].append(value)
        elif key == "systempaths":
            if value != "unconfined":
                raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
            out["systempaths"] = value
        else:
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
    return out


def _seccomp_option(value: str):
    if value == "unconfined":
        return "unconfined"
    if value in ("", "builtin", "default"):
        return None
    # the docker CLI sends the content of the profile file in place of its name
    try:
        profile = json.loads(value)
    except ValueError as e:
        raise InvalidArgument(f"decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict):
        raise InvalidArgument("decoding seccomp profile failed: a JSON object is expected")
    seccomp_for(profile, list(specmod.DEFAULT_CAPS))  # refuse a broken one at create
    return profile


# --- seccomp ---------------------------------------------------------------------

def _arch_list(profile: dict, arch: str) -> list[str]:
    scmp = _SCMP_ARCH.get(arch)
    arch_map = profile.get("archMap")
    if arch_map:
        for entry in arch_map:
            if entry.get("architecture") == scmp:
                return [scmp] + list(entry.get("subArchitectures") or ())
        return []
    return list(profile.get("architectures") or ())


def _applies(rule: dict, caps: set[str], arch: str, kernel: tuple[int, int]) -> bool:
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    if inc.get("minKernel"):
        try:
            want = tuple(int(x) for x in str(inc["minKernel"]).split(".")[:2])
        except ValueError:
            raise InvalidArgument(f"invalid minKernel in seccomp profile: "
                                  f"{inc['minKernel']}") from None
        if kernel < want:
            return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    return True


def seccomp_for(profile: dict, caps, *, arch: str | None = None,
                kernel: tuple[int, int] | None = None) -> dict:
    """A docker-format seccomp profile as the OCI ``linux.seccomp`` of a container
    whose bounding set is ``caps``: the architectures of this machine's archMap
    entry, and only the rules whose includes/excludes fit."""
    arch = arch or native_arch()
    kernel = kernel or kernel_version()
    caps = set(caps)
    if not isinstance(profile.get("syscalls", []), list):
        raise InvalidArgument("decoding seccomp profile failed: syscalls must be a list")
    default = profile.get("defaultAction")
    if not default or not isinstance(default, str):
        raise InvalidArgument("decoding seccomp profile failed: defaultAction is required")
    out: dict = {"defaultAction": default, "architectures": _arch_list(profile, arch),
                 "syscalls": []}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            out[key] = profile[key]
    for rule in profile.get("syscalls") or ():
        if not isinstance(rule, dict):
            raise InvalidArgument("decoding seccomp profile failed: a syscall rule must be "
                                  "an object")
        names = list(rule.get("names") or ())
        if rule.get("name"):
            names.append(rule["name"])
        if not names or not _applies(rule, caps, arch, kernel):
            continue
        entry = {"names": names, "action": rule.get("action") or default}
        if rule.get("errnoRet") is not None:
            entry["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            entry["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                             for a in rule["args"]]
        out["syscalls"].append(entry)
    return out


# --- privileged ------------------------------------------------------------------

def host_devices(root: str = "/dev") -> list[dict]:
    """Every character and block device of the host, as OCI ``linux.devices``."""
    import stat

    out = []
    for dirpath, dirs, files in os.walk(root):
        if dirpath == root:
            dirs[:] = [d for d in dirs if d not in _SKIP_DEV_DIRS]
        for name in files:
            path = os.path.join(dirpath, name)
            if path == "/dev/console":
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode):
                kind = "c"
            elif stat.S_ISBLK(st.st_mode):
                kind = "b"
            else:
                continue
            out.append({"path": path, "type": kind, "major": os.major(st.st_rdev),
                        "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
                        "uid": st.st_uid, "gid": st.st_gid})
    return out


# --- the spec --------------------------------------------------------------------

def apply(spec: dict, host: dict) -> None:
    """Write the security part of a container's spec (capabilities are already in
    ``process.capabilities``, from :func:`spec.capabilities`)."""
    opts = parse_security_opts(host.get("SecurityOpt"))
    privileged = bool(host.get("Privileged"))
    process = spec["process"]
    linux = spec.setdefault("linux", {})
    caps = (process.get("capabilities") or {}).get("bounding") or []
    process["noNewPrivileges"] = opts["no_new_privileges"]
    if privileged:
        linux.pop("seccomp", None)
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
        devices = host_devices()
        have = {d["path"] for d in linux.get("devices") or ()}
        linux["devices"] = list(linux.get("devices") or ()) + \
            [d for d in devices if d["path"] not in have]
        linux.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
        return
    if opts["seccomp"] != "unconfined":
        profile = opts["seccomp"] if isinstance(opts["seccomp"], dict) else default_profile()
        linux["seccomp"] = seccomp_for(profile, caps)
    if opts["systempaths"] == "unconfined":
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
    else:
        if host.get("MaskedPaths") is not None:
            linux["maskedPaths"] = list(host["MaskedPaths"])
        if host.get("ReadonlyPaths") is not None:
            linux["readonlyPaths"] = list(host["ReadonlyPaths"])


def add_devices(spec: dict, devices) -> None:
    """``--device /dev/x[:/dev/y[:rwm]]`` (HostConfig.Devices): the node and its
    cgroup rule."""
    from pallet.oci.spec import device_node

    linux = spec.setdefault("linux", {})
    rules = linux.setdefault("resources", {}).setdefault("devices", [])
    for d in devices or ():
        src = d.get("PathOnHost") or ""
        dst = d.get("PathInContainer") or src
        perms = d.get("CgroupPermissions") or "rwm"
        try:
            st = os.stat(src)
        except OSError as e:
            raise InvalidArgument(f"error gathering device information while adding custom "
                                  f"device \"{src}\": {(e.strerror or str(e)).lower()}") from None
        node = device_node(st, dst)
        if node is None:
            raise InvalidArgument(f"error gathering device information while adding custom "
                                  f"device \"{src}\": not a device node")
        linux.setdefault("devices", []).append(node)
        rules.append({"allow": True, "type": node["type"], "major": node["major"],
                      "minor": node["minor"], "access": perms})


def check_devices(devices) -> None:
    if devices is None:
        return
    if not isinstance(devices, list):
        raise InvalidArgument("invalid HostConfig.Devices: a list is expected")
    for d in devices:
        if not isinstance(d, dict) or not isinstance(d.get("PathOnHost"), str) \
                or not d.get("PathOnHost"):
            raise InvalidArgument(f"invalid device mapping: {d!r}")
        perms = d.get("CgroupPermissions") or "rwm"
        if not isinstance(perms, str) or any(ch not in "rwm" for ch in perms):
            raise InvalidArgument(f"invalid device mode: {perms}")
        dst = d.get("PathInContainer") or d["PathOnHost"]
        if not isinstance(dst, str) or not dst.startswith("/"):
            raise InvalidArgument(f"invalid device mapping: {dst} is not an absolute path")
        try:
            os.stat(d["PathOnHost"])
        except OSError as e:
            raise InvalidArgument(f"error gathering device information while adding custom "
                                  f"device \"{d['PathOnHost']}\": "
                                  f"{(e.strerror or str(e)).lower()}") from None


def security_options_info() -> list[str]:
    """``/info``'s SecurityOptions: seccomp with the builtin profile when the
    kernel has it (``Seccomp:`` in /proc/self/status), cgroupns on cgroup v2."""
    out = []
    try:
        with open("/proc/self/status") as f:
            if any(line.startswith("Seccomp:") for line in f):
                out.append("name=seccomp,profile=builtin")
    except OSError:
        pass
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        out.append("name=cgroupns")
    return out
