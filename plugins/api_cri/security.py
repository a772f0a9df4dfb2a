"""A container's Linux security context (CRI ``LinuxContainerSecurityContext``)
as the parts of its OCI spec, following containerd's CRI plugin: the user
and groups resolved in the image, capabilities from the runtime's default
set adjusted by add/drop (``ALL`` allowed), privileged mode, seccomp
(``RuntimeDefault``: the default profile cut to the container's
capabilities, ``Localhost``: a profile file on the node, ``Unconfined``),
masked and read-only paths as given.  This host offers neither AppArmor nor
SELinux to pods: asking for either is refused, as containerd refuses it
where they are disabled.
"""
from __future__ import annotations

import json
import os

from pallet.core.errors import InvalidArgument
from pallet.engine import security as dockersec
from pallet.engine import spec as dockerspec
from pallet.proto.cri.runtime.v1 import api_pb2 as cri

RUNTIME_DEFAULT, UNCONFINED, LOCALHOST = (cri.SecurityProfile.RuntimeDefault,
                                          cri.SecurityProfile.Unconfined,
                                          cri.SecurityProfile.Localhost)


def _cap(name: str) -> str:
    name = name.upper()
    return name if name.startswith("CAP_") or name == "ALL" else "CAP_" + name


def capabilities(sc: cri.LinuxContainerSecurityContext) -> dict:
    """``process.capabilities``: bounding, effective and permitted (and
    ambient for ``add_ambient_capabilities``); inheritable stays empty
    (CVE-2022-24769)."""
    if sc.privileged:
        caps = list(dockerspec.host_caps())
        return {"bounding": caps, "effective": caps, "permitted": caps}
    add = [_cap(c) for c in sc.capabilities.add_capabilities]
    drop = [_cap(c) for c in sc.capabilities.drop_capabilities]
    ambient = [_cap(c) for c in sc.capabilities.add_ambient_capabilities]
    for c in add + drop + ambient:
        if c != "ALL" and c not in dockerspec.ALL_CAPS:
            raise InvalidArgument(f"unknown capability {c!r}")
    # containerd's order: ALL added, ALL dropped, then each name added, each dropped
    caps = list(dockerspec.DEFAULT_CAPS)
    if "ALL" in add:
        caps = list(dockerspec.host_caps())
    if "ALL" in drop:
        caps = []
    caps += [c for c in dict.fromkeys(add + ambient) if c != "ALL" and c not in caps]
    caps = [c for c in caps if c not in drop]
    out = {"bounding": caps, "effective": list(caps), "permitted": list(caps)}
    amb = [c for c in ambient if c in caps and c != "ALL"]
    if amb:
        out["ambient"] = amb
        out["inheritable"] = amb   # an ambient capability must be inheritable too
    return out


def seccomp(sc: cri.LinuxContainerSecurityContext, caps: list[str]) -> dict | None:
    """``linux.seccomp`` (None: unconfined)."""
    if sc.privileged:
        return None
    profile = _profile(sc.seccomp if sc.HasField("seccomp") else None,
                       sc.seccomp_profile_path)
    if profile is None or profile.profile_type == UNCONFINED:
        return None
    if profile.profile_type != LOCALHOST and profile.localhost_ref:
        raise InvalidArgument("seccomp config invalid LocalhostRef must only be set if "
                              "ProfileType is Localhost")
    if profile.profile_type == RUNTIME_DEFAULT:
        return dockersec.seccomp_for(dockersec.default_profile(), caps)
    path = profile.localhost_ref
    if path.startswith("localhost/"):
        path = path[len("localhost/"):]
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise InvalidArgument(f"failed to load seccomp profile {path!r}: {why.lower()}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"seccomp profile {path!r} is not a json object")
    if "archMap" in doc or "names" in json.dumps(doc.get("syscalls") or []):
        return dockersec.seccomp_for(doc, caps)
    return doc  # already in the OCI form


def _profile(sp, legacy: str):
    if sp is not None:
        return sp
    if not legacy:
        return None
    if legacy in ("runtime/default", "docker/default"):
        return cri.SecurityProfile(profile_type=RUNTIME_DEFAULT)
    if legacy == "unconfined":
        return cri.SecurityProfile(profile_type=UNCONFINED)
    if legacy.startswith("localhost/"):
        return cri.SecurityProfile(profile_type=LOCALHOST, localhost_ref=legacy[len("localhost/"):])
    raise InvalidArgument(f"invalid profile {legacy!r}")


def check_unsupported(sc) -> None:
    """AppArmor and SELinux are not offered here: refuse a request for them."""
    aa = sc.apparmor if sc.HasField("apparmor") else None
    if aa is None and getattr(sc, "apparmor_profile", ""):
        aa = _profile(None, sc.apparmor_profile)
    if aa is not None and aa.profile_type != UNCONFINED:
        raise InvalidArgument("apparmor is not supported")
    se = sc.selinux_options
    if sc.HasField("selinux_options") and (se.user or se.role or se.type or se.level):
        raise InvalidArgument("selinux is not supported")


def user_string(sc) -> str:
    """containerd's user string: ``name[:gid]`` or ``uid[:gid]`` ("" : the image's)."""
    user = sc.run_as_username or (str(sc.run_as_user.value) if sc.HasField("run_as_user")
                                  else "")
    group = str(sc.run_as_group.value) if sc.HasField("run_as_group") else ""
    if not user:
        if group:
            raise InvalidArgument(f"user group {group!r} is specified without user")
        return ""
    return f"{user}:{group}" if group else user


def _entries(rootfs_dirs, fname: str):
    for d in rootfs_dirs:
        try:
            with open(os.path.join(d, "etc", fname), errors="replace") as f:
                return [line.rstrip("\n").split(":") for line in f if line.count(":") >= 2]
        except OSError:
            continue
    return []


def user(sc, image_user: str, rootfs_dirs) -> dict:
    """``process.user``: uid, gid and the additional gids, looked up in the
    image's /etc/passwd and /etc/group (``rootfs_dirs``: its layers, top first).

    As containerd does: a user name must exist in the image; the groups the
    user (by name, or the name of ``run_as_user``'s uid, root by default)
    belongs to in /etc/group come with the primary gid first, unless the
    policy is ``Strict``; ``supplemental_groups`` are added last."""
    text = user_string(sc) or image_user or ""
    if sc.run_as_username:
        name = sc.run_as_username
        if not any(e[0] == name for e in _entries(rootfs_dirs, "passwd")):
            raise InvalidArgument(f"no users found: user {name!r} does not exist in the image")
    try:
        out = dockerspec.resolve_user(text, rootfs_dirs)
    except InvalidArgument as e:
        raise InvalidArgument(f"failed to resolve user {text!r}: {e.message}") from None
    gids: list[int] = [out["gid"]]
    if sc.supplemental_groups_policy != cri.Strict:
        who = sc.run_as_username or str(sc.run_as_user.value if sc.HasField("run_as_user")
                                        else 0)
        if who.isdigit():
            who = next((e[0] for e in _entries(rootfs_dirs, "passwd")
                        if len(e) > 2 and e[2] == who), "")
        for e in _entries(rootfs_dirs, "group"):
            if len(e) > 3 and who and e[0] != who and who in e[3].split(","):
                try:
                    gid = int(e[2])
                except ValueError:
                    continue
                if gid not in gids:
                    gids.append(gid)
    for g in sc.supplemental_groups:
        if int(g) not in gids:
            gids.append(int(g))
    out["additionalGids"] = gids
    return out


def apply_privileged(spec: dict) -> None:
    """What a privileged container gets besides every capability: the host's
    devices, all device access, /sys and cgroups writable, nothing masked."""
    linux = spec["linux"]
    linux.pop("maskedPaths", None)
    linux.pop("readonlyPaths", None)
    linux.pop("seccomp", None)
    have = {d["path"] for d in linux.get("devices") or ()}
    linux["devices"] = list(linux.get("devices") or ()) + \
        [d for d in dockersec.host_devices() if d["path"] not in have]
    linux.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
    for m in spec["mounts"]:
        if m["destination"] in ("/sys", "/sys/fs/cgroup"):
            m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
