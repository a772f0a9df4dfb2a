"""Requests shaped by the API version the client asked for, as dockerd's
router shapes them before the engine sees them: fields a version did not
have are ignored, defaults older clients expect are filled in, and checks a
version introduced are made from that version on.  The engine stores and
answers one shape; only this protocol layer knows versions.
"""
from __future__ import annotations

from pallet.core import errors


def _vt(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def create_body(body: dict, version: str, *, cgroup_v1: bool) -> None:
    """``POST /containers/create``'s body, shaped in place for ``version``."""
    if not isinstance(body, dict):
        return  # the engine refuses it with its own message
    host = body.get("HostConfig")
    host = host if isinstance(host, dict) else {}
    mounts = [m for m in host.get("Mounts") or () if isinstance(m, dict)]
    v = _vt(version)
    if v < (1, 25):  # the client removed the container itself then
        host.pop("AutoRemove", None)
    if v < (1, 40):
        for m in mounts:
            if isinstance(m.get("BindOptions"), dict):
                m["BindOptions"].pop("NonRecursive", None)
        host.pop("KernelMemoryTCP", None)
        if not host.get("IpcMode"):
            host["IpcMode"] = "shareable"  # the default older clients were given
    if v < (1, 41) and cgroup_v1 and not host.get("CgroupnsMode"):
        host["CgroupnsMode"] = "host"
    if v < (1, 42):
        for m in mounts:
            if isinstance(m.get("BindOptions"), dict):
                m["BindOptions"].pop("CreateMountpoint", None)
        # options of another mount type: the engine refuses them in dockerd
        # 20.10's words (dockerd 24 drops them below 1.42; 20.10 is what
        # clients of 1.41 were written against)
        if "ConsoleSize" in host:
            host["ConsoleSize"] = [0, 0]  # not honoured on Linux before 1.42
    else:
        host.pop("KernelMemory", None)  # removed in 1.42
        for m in mounts:
            for key, kind in (("VolumeOptions", "volume"), ("BindOptions", "bind"),
                              ("TmpfsOptions", "tmpfs")):
                if m.get(key) is not None and m.get("Type") != kind:
                    raise errors.InvalidArgument(
                        f'{key} must not be specified on mount type "{m.get("Type", "")}"')
    if v < (1, 43):
        host.pop("Annotations", None)
    # every version pallet serves is below 1.44: one network at create
    hc = body.get("Healthcheck")
    if isinstance(hc, dict):
        hc.pop("StartInterval", None)
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if isinstance(endpoints, dict) and len(endpoints) > 1:
        raise errors.InvalidArgument("Container cannot be connected to network endpoints: "
                                     + ", ".join(endpoints))
