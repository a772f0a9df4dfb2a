"""A container's mounts as dockerd plans them at create: ``-v`` (``Binds``),
``--mount`` (``Mounts``), ``--tmpfs`` (``Tmpfs``), ``--volumes-from``, and the
image's ``VOLUME``s (``Config.Volumes``) that nothing else covers, which get
anonymous volumes.

The plan is a list of mount points (docker's ``MountPoints`` in
``config.v2.json``); :func:`oci_mounts` turns it into the spec's mounts at
start and :func:`inspect_mounts` into inspect's ``Mounts``.
"""
from __future__ import annotations

import os

from pallet.core.errors import InvalidArgument
from pallet.engine.volumes import check_name

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_CONSISTENCY = ("consistent", "cached", "delegated", "default")
_TMPFS_DEFAULT = ("noexec", "nosuid", "nodev")


def _bad_spec(raw: str, why: str = "") -> InvalidArgument:
    return InvalidArgument(f"invalid volume specification: '{raw}'" + (f": {why}" if why else ""))


def _mount_error(mtype: str, why: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{mtype}": {why}')


def _check_dest(dest: str, raw: str, mtype: str = "volume") -> str:
    if not isinstance(dest, str) or not dest:
        raise _mount_error(mtype, "field Target must not be empty")
    if not dest.startswith("/"):
        raise _bad_spec(raw, f"invalid mount config for type \"{mtype}\": invalid mount path: "
                             f"'{dest}' mount path must be absolute")
    dest = os.path.normpath(dest)
    if dest == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return dest


def parse_mode(mode: str, raw: str, *, bind: bool) -> dict:
    """``ro``, ``rw``, ``z``/``Z``, ``nocopy``, a propagation, a consistency,
    comma-separated, each kind at most once."""
    out = {"rw": True, "propagation": "", "nocopy": False, "mode": mode}
    seen: set[str] = set()
    for token in (mode.split(",") if mode else []):
        kind = ("rw" if token in ("ro", "rw") else "label" if token in ("z", "Z") else
                "propagation" if token in PROPAGATIONS else "nocopy" if token == "nocopy" else
                "consistency" if token in _CONSISTENCY else None)
        if kind is None or kind in seen:
            raise _bad_spec(raw, f"invalid mode: {mode}")
        seen.add(kind)
        if kind == "rw":
            out["rw"] = token == "rw"
        elif kind == "propagation":
            if not bind:
                raise _bad_spec(raw, f"invalid mode: {mode}")
            out["propagation"] = token
        elif kind == "nocopy":
            if bind:
                raise _bad_spec(raw, f"invalid mode: {mode}")
            out["nocopy"] = True
    return out


def _point(mtype: str, dest: str, **kw) -> dict:
    p = {"Type": mtype, "Destination": dest, "Source": "", "Name": "", "Driver": "",
         "RW": True, "Mode": "", "Propagation": "", "CopyData": False, "Anonymous": False,
         "Options": [], "NonRecursive": False, "CreateSource": False}
    p.update(kw)
    return p


def parse_bind(raw: str) -> dict:
    """One ``-v`` entry: ``/host:/ctr[:mode]``, ``name:/ctr[:mode]`` or ``/ctr``."""
    if not isinstance(raw, str) or not raw:
        raise _bad_spec(str(raw))
    parts = raw.split(":")
    if len(parts) == 1:
        dest = _check_dest(parts[0], raw)
        return _point("volume", dest, Anonymous=True, CopyData=True, Driver="local")
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise _bad_spec(raw)
    src, dest = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    dest = _check_dest(dest, raw)
    if src.startswith("/"):
        m = parse_mode(mode, raw, bind=True)
        return _point("bind", dest, Source=os.path.normpath(src), RW=m["rw"], Mode=mode,
                      Propagation=m["propagation"] or "rprivate", CreateSource=True)
    if "/" in src or src.startswith("."):
        raise _bad_spec(raw, "invalid mount config for type \"bind\": invalid mount path: "
                             f"'{src}' mount path must be absolute")
    check_name(src)
    m = parse_mode(mode, raw, bind=False)
    return _point("volume", dest, Name=src, Driver="local", RW=m["rw"], Mode=mode or "z",
                  CopyData=not m["nocopy"])


def parse_mount(spec) -> dict:
    """One ``--mount`` entry (HostConfig.Mounts), checked as dockerd's
    validateMountConfig does."""
    if not isinstance(spec, dict):
        raise InvalidArgument(f"invalid HostConfig.Mounts entry: {spec!r}")
    mtype = spec.get("Type") or ""
    target = spec.get("Target")
    if mtype not in ("bind", "volume", "tmpfs"):
        if mtype == "npipe":
            raise _mount_error(mtype, "mount type unknown")
        raise InvalidArgument(f"invalid mount config: mount type unknown: {mtype!r}")
    if not isinstance(target, str) or not target:
        raise _mount_error(mtype, "field Target must not be empty")
    if not target.startswith("/"):
        raise _mount_error(mtype, f"invalid mount path: '{target}' mount path must be absolute")
    dest = os.path.normpath(target)
    if dest == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    ro = bool(spec.get("ReadOnly"))
    src = spec.get("Source") or ""
    if not isinstance(src, str):
        raise _mount_error(mtype, f"invalid Source: {src!r}")
    for field, allowed in (("BindOptions", "bind"), ("VolumeOptions", "volume"),
                           ("TmpfsOptions", "tmpfs")):
        if spec.get(field) and mtype != allowed:
            raise _mount_error(mtype, f"field {field} must not be specified")
    if mtype == "bind":
        if not src:
            raise _mount_error(mtype, "field Source must not be empty")
        if not src.startswith("/"):
            raise _mount_error(mtype, f"invalid mount path: '{src}' mount path must be absolute")
        opts = spec.get("BindOptions") or {}
        prop = opts.get("Propagation") or "rprivate"
        if prop not in PROPAGATIONS:
            raise _mount_error(mtype, f"invalid propagation mode: {prop}")
        create = bool(opts.get("CreateMountpoint"))
        if not create and not os.path.exists(src):
            raise _mount_error(mtype, f"bind source path does not exist: {src}")
        return _point("bind", dest, Source=os.path.normpath(src), RW=not ro, Propagation=prop,
                      NonRecursive=bool(opts.get("NonRecursive")), CreateSource=create,
                      Spec=spec)
    if mtype == "volume":
        opts = spec.get("VolumeOptions") or {}
        driver = ((opts.get("DriverConfig") or {}).get("Name")) or "local"
        if src:
            check_name(src)
        if opts.get("Subpath"):
            raise _mount_error(mtype, "volume subpaths are not supported")
        return _point("volume", dest, Name=src, Driver=driver, RW=not ro, Mode="z",
                      CopyData=not opts.get("NoCopy"), Anonymous=not src, Spec=spec,
                      VolumeLabels=opts.get("Labels") or {},
                      VolumeOptions=(opts.get("DriverConfig") or {}).get("Options") or {})
    if src:
        raise _mount_error(mtype, "field Source must not be specified")
    topts = spec.get("TmpfsOptions") or {}
    options = list(_TMPFS_DEFAULT)
    size = topts.get("SizeBytes")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _mount_error(mtype, f"invalid tmpfs size: {size}")
        if size:
            options.append(f"size={size}")
    mode = topts.get("Mode")
    if mode:
        if isinstance(mode, bool) or not isinstance(mode, int) or mode < 0:
            raise _mount_error(mtype, f"invalid tmpfs mode: {mode}")
        options.append(f"mode={mode & 0o7777:o}")
    if ro:
        options.append("ro")
    return _point("tmpfs", dest, RW=not ro, Options=options, Spec=spec)


def tmpfs_options(data: str) -> list[str]:
    """``--tmpfs /x:rw,size=64m,exec``: docker's defaults, then the given options
    (``exec``, ``suid``, ``dev`` undo the defaults)."""
    if not isinstance(data, str):
        raise InvalidArgument(f"invalid tmpfs options: {data!r}")
    opts = list(_TMPFS_DEFAULT)
    for o in filter(None, (x.strip() for x in data.split(","))):
        if o in ("exec", "suid", "dev"):
            opts = [x for x in opts if x != "no" + o]
            continue
        key = o.split("=", 1)[0]
        opts = [x for x in opts if x.split("=", 1)[0] != key]
        if key == "size":
            from pallet.units.size import ram_in_bytes
            try:
                o = f"size={ram_in_bytes(o.split('=', 1)[1])}"
            except (ValueError, IndexError):
                raise InvalidArgument(f"invalid tmpfs option: {o}") from None
        opts.append(o)
    return opts


def plan(host: dict, image_volumes, volumes_from=lambda ref, mode: []) -> list[dict]:
    """Every mount point of a new container, checked, in docker's order of
    precedence: volumes-from, then Binds, then Mounts; image volumes only where
    nothing else is mounted."""
    points: dict[str, dict] = {}

    def add(p: dict, replace: bool = False) -> None:
        if p["Destination"] in points and not replace:
            raise InvalidArgument(f"Duplicate mount point: {p['Destination']}")
        points[p["Destination"]] = p

    for ref in host.get("VolumesFrom") or ():
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument(f"invalid VolumesFrom: {ref!r}")
        name, _, mode = ref.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid mode for volumes-from: {mode}")
        for p in volumes_from(name, mode):
            add(p, replace=True)
    # --volume-driver: the driver of the -v volumes and the image's (not --mount's)
    driver = host.get("VolumeDriver") or "local"
    if not isinstance(driver, str):
        raise InvalidArgument(f"invalid HostConfig.VolumeDriver: {driver!r}")
    binds = host.get("Binds") or []
    if not isinstance(binds, list):
        raise InvalidArgument("invalid HostConfig.Binds: a list of strings is expected")
    seen: set[str] = set()
    for raw in binds:
        p = parse_bind(raw)
        if p["Type"] == "volume":
            p["Driver"] = driver
        if p["Destination"] in seen:
            raise InvalidArgument(f"Duplicate mount point: {p['Destination']}")
        seen.add(p["Destination"])
        add(p, replace=True)
    mounts = host.get("Mounts") or []
    if not isinstance(mounts, list):
        raise InvalidArgument("invalid HostConfig.Mounts: a list is expected")
    for spec in mounts:
        p = parse_mount(spec)
        if p["Destination"] in seen:
            raise InvalidArgument(f"Duplicate mount point: {p['Destination']}")
        seen.add(p["Destination"])
        add(p, replace=True)
    tmpfs = host.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict):
        raise InvalidArgument("invalid HostConfig.Tmpfs: a map of path to options is expected")
    for dest, data in tmpfs.items():
        d = _check_dest(dest, dest, "tmpfs")
        tmpfs_options(data or "")
        if d in seen:
            raise InvalidArgument(f"Duplicate mount point: {d}")
        seen.add(d)
        points.pop(d, None)
    for dest in (image_volumes or {}):
        d = _check_dest(dest, dest)
        if d in points or d in seen:
            continue
        points[d] = _point("volume", d, Anonymous=True, CopyData=True, Driver=driver)
    return list(points.values())


def _depth(dest: str) -> int:
    return len(os.path.normpath(dest).split("/"))


def oci_mounts(points: list[dict], tmpfs: dict | None, sources: dict[str, str]) -> list[dict]:
    """The spec's mounts of a container's mount points (``sources`` maps each
    volume point's destination to the directory to bind) and of
    ``HostConfig.Tmpfs``, parents before children."""
    out = []
    for p in points:
        dest = p["Destination"]
        if p["Type"] == "tmpfs":
            out.append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                        "options": list(p.get("Options") or _TMPFS_DEFAULT)})
            continue
        source = sources.get(dest) or p["Source"]
        opts = ["bind" if p.get("NonRecursive") else "rbind"]
        opts.append(p.get("Propagation") or "rprivate")
        opts.append("rw" if p.get("RW", True) else "ro")
        out.append({"destination": dest, "type": "bind", "source": source, "options": opts})
    for dest, data in (tmpfs or {}).items():
        out.append({"destination": os.path.normpath(dest), "type": "tmpfs", "source": "tmpfs",
                    "options": tmpfs_options(data or "")})
    out.sort(key=lambda m: _depth(m["destination"]))
    return out


def merge_into(spec_mounts: list[dict], user: list[dict]) -> list[dict]:
    """Docker's default mounts, minus those a user mount replaces (``/dev/shm``,
    ``/etc/hosts``...), then the user mounts."""
    taken = {m["destination"] for m in user}
    return [m for m in spec_mounts if m["destination"] not in taken] + user


def inspect_mounts(points: list[dict]) -> list[dict]:
    """inspect's ``Mounts`` (and ``docker ps``'s)."""
    out = []
    for p in sorted(points, key=lambda p: p["Destination"]):
        entry = {"Type": p["Type"]}
        if p["Type"] == "volume":
            entry["Name"] = p["Name"]
        entry.update({"Source": p["Source"], "Destination": p["Destination"]})
        if p["Type"] == "volume":
            entry["Driver"] = p.get("Driver") or "local"
        entry.update({"Mode": p.get("Mode", ""), "RW": bool(p.get("RW", True)),
                      "Propagation": p.get("Propagation", "")})
        out.append(entry)
    return out
