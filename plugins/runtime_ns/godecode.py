"""config.json's values checked as runc 1.1 decodes them: into the Go structs
of runtime-spec 1.0.2 (encoding/json).

runc checks no schema: a field it does not know is ignored, whatever its
value, and a known field of the wrong type is Go's decoding error, the first
one in the document's order::

    json: cannot unmarshal string into Go struct field Process.process.oomScoreAdj of type int

(the innermost struct's type name, then the path of JSON names from the top,
array indices left out; a pointer field is named by the type it points to).
Go matches keys to fields ignoring case, and a null leaves a field alone.
"""
from __future__ import annotations

# Go's kinds: "string", "bool", integers by name, [T] slices, {T} maps of
# strings to T, and struct names (below)
_INT_RANGES = {
    "int": (-(1 << 63), (1 << 63) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
    "uint": (0, (1 << 64) - 1), "uint64": (0, (1 << 64) - 1), "uint32": (0, (1 << 32) - 1),
    "uint16": (0, (1 << 16) - 1), "fs.FileMode": (0, (1 << 32) - 1),
}

#: runtime-spec 1.0.2's structs (specs-go/config.go) as runc 1.1 vendors them:
#: struct -> {json name: Go type}; a string type that is a named string type
#: of the spec keeps its Go name for the message
_STRUCTS: dict[str, dict[str, str]] = {
    "Spec": {"ociVersion": "string", "process": "Process", "root": "Root", "hostname": "string",
             "mounts": "[Mount", "hooks": "Hooks", "annotations": "{string",
             "linux": "Linux"},
    "Process": {"terminal": "bool", "consoleSize": "Box", "user": "User", "args": "[string",
                "env": "[string", "cwd": "string", "capabilities": "LinuxCapabilities",
                "rlimits": "[POSIXRlimit", "noNewPrivileges": "bool",
                "apparmorProfile": "string", "oomScoreAdj": "int", "selinuxLabel": "string"},
    "Box": {"height": "uint", "width": "uint"},
    "User": {"uid": "uint32", "gid": "uint32", "umask": "uint32", "additionalGids": "[uint32",
             "username": "string"},
    "LinuxCapabilities": {k: "[string" for k in ("bounding", "effective", "inheritable",
                                                 "permitted", "ambient")},
    "POSIXRlimit": {"type": "string", "hard": "uint64", "soft": "uint64"},
    "Root": {"path": "string", "readonly": "bool"},
    "Mount": {"destination": "string", "type": "string", "source": "string",
              "options": "[string"},
    "Hooks": {k: "[Hook" for k in ("prestart", "createRuntime", "createContainer",
                                   "startContainer", "poststart", "poststop")},
    "Hook": {"path": "string", "args": "[string", "env": "[string", "timeout": "int"},
    "Linux": {"uidMappings": "[LinuxIDMapping", "gidMappings": "[LinuxIDMapping",
              "sysctl": "{string", "resources": "LinuxResources", "cgroupsPath": "string",
              "namespaces": "[LinuxNamespace", "devices": "[LinuxDevice",
              "seccomp": "LinuxSeccomp", "rootfsPropagation": "string",
              "maskedPaths": "[string", "readonlyPaths": "[string", "mountLabel": "string",
              "intelRdt": "LinuxIntelRdt"},
    "LinuxIDMapping": {"containerID": "uint32", "hostID": "uint32", "size": "uint32"},
    "LinuxResources": {"devices": "[LinuxDeviceCgroup", "memory": "LinuxMemory",
                       "cpu": "LinuxCPU", "pids": "LinuxPids", "blockIO": "LinuxBlockIO",
                       "hugepageLimits": "[LinuxHugepageLimit", "network": "LinuxNetwork",
                       "rdma": "{LinuxRdma", "unified": "{string"},
    "LinuxDeviceCgroup": {"allow": "bool", "type": "string", "major": "int64",
                          "minor": "int64", "access": "string"},
    "LinuxMemory": {"limit": "int64", "reservation": "int64", "swap": "int64",
                    "kernel": "int64", "kernelTCP": "int64", "swappiness": "uint64",
                    "disableOOMKiller": "bool", "useHierarchy": "bool"},
    "LinuxCPU": {"shares": "uint64", "quota": "int64", "period": "uint64",
                 "realtimeRuntime": "int64", "realtimePeriod": "uint64", "cpus": "string",
                 "mems": "string", "idle": "int64"},
    "LinuxPids": {"limit": "int64"},
    "LinuxBlockIO": {"weight": "uint16", "leafWeight": "uint16",
                     "weightDevice": "[LinuxWeightDevice",
                     "throttleReadBpsDevice": "[LinuxThrottleDevice",
                     "throttleWriteBpsDevice": "[LinuxThrottleDevice",
                     "throttleReadIOPSDevice": "[LinuxThrottleDevice",
                     "throttleWriteIOPSDevice": "[LinuxThrottleDevice"},
    "LinuxWeightDevice": {"major": "int64", "minor": "int64", "weight": "uint16",
                          "leafWeight": "uint16"},
    "LinuxThrottleDevice": {"major": "int64", "minor": "int64", "rate": "uint64"},
    "LinuxHugepageLimit": {"pageSize": "string", "limit": "uint64"},
    "LinuxNetwork": {"classID": "uint32", "priorities": "[LinuxInterfacePriority"},
    "LinuxInterfacePriority": {"name": "string", "priority": "uint32"},
    "LinuxRdma": {"hcaHandles": "uint32", "hcaObjects": "uint32"},
    "LinuxNamespace": {"type": "specs.LinuxNamespaceType", "path": "string"},
    "LinuxDevice": {"path": "string", "type": "string", "major": "int64", "minor": "int64",
                    "fileMode": "fs.FileMode", "uid": "uint32", "gid": "uint32"},
    "LinuxSeccomp": {"defaultAction": "specs.LinuxSeccompAction", "defaultErrnoRet": "uint",
                     "architectures": "[specs.Arch", "flags": "[specs.LinuxSeccompFlag",
                     "listenerPath": "string", "listenerMetadata": "string",
                     "syscalls": "[LinuxSyscall"},
    "LinuxSyscall": {"names": "[string", "action": "specs.LinuxSeccompAction",
                     "errnoRet": "uint", "args": "[LinuxSeccompArg"},
    "LinuxSeccompArg": {"index": "uint", "value": "uint64", "valueTwo": "uint64",
                        "op": "specs.LinuxSeccompOperator"},
    "LinuxIntelRdt": {"closID": "string", "l3CacheSchema": "string", "memBwSchema": "string"},
}


class DecodeError(Exception):
    """Go's *json.UnmarshalTypeError, worded as its Error() words it."""


def check(doc, root: str = "Spec") -> None:
    """Raise :class:`DecodeError` for the first value of ``doc`` that runc
    could not decode into ``root`` (``Spec``, or ``Process`` for a
    process.json)."""
    if not isinstance(doc, dict):
        if doc is not None:
            raise DecodeError(f"json: cannot unmarshal {_kind(doc)} into Go value of type "
                              f"specs.{root}")
        return
    _struct(doc, root, [])


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_type(t: str) -> str:
    if t.startswith("["):
        return "[]" + _go_type(t[1:])
    if t.startswith("{"):
        return "map[string]" + _go_type(t[1:])
    if t in _STRUCTS:
        return "specs." + t
    return t


def _struct(doc: dict, name: str, path: list[str]) -> None:
    fields = _STRUCTS[name]
    folded = {k.lower(): k for k in fields}
    for key, value in doc.items():
        field = key if key in fields else folded.get(key.lower())
        if field is None or value is None:
            continue  # unknown to runc 1.1: ignored
        _value(value, fields[field], name, path + [field])


def _fail(value, t: str, struct: str, path: list[str], text: str | None = None) -> None:
    raise DecodeError(f"json: cannot unmarshal {text or _kind(value)} into Go struct field "
                      f"{struct}.{'.'.join(path)} of type {_go_type(t)}")


def _value(value, t: str, struct: str, path: list[str]) -> None:
    if value is None:
        return
    if t.startswith("["):
        if not isinstance(value, list):
            _fail(value, t, struct, path)
        for item in value:
            _value(item, t[1:], struct, path)
    elif t.startswith("{"):
        if not isinstance(value, dict):
            _fail(value, t, struct, path)
        for item in value.values():
            _value(item, t[1:], struct, path)
    elif t in _STRUCTS:
        if not isinstance(value, dict):
            _fail(value, t, struct, path)
        _struct(value, t, path)
    elif t == "bool":
        if not isinstance(value, bool):
            _fail(value, t, struct, path)
    elif t in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(value, t, struct, path)
        low, high = _INT_RANGES[t]
        if isinstance(value, float) or not low <= value <= high:
            text = repr(value) if isinstance(value, float) else str(value)
            _fail(value, t, struct, path, f"number {text}")
    elif not isinstance(value, str):  # string and the spec's named string types
        _fail(value, t, struct, path)


def known(doc, root: str = "Spec"):
    """``doc`` with only the fields runc 1.1 decodes (matched as Go matches
    them), for checks of what runc reads: a field it does not know is no
    error of the config's, whatever its value (check first)."""
    return _known(doc, root)


def _known(value, t: str):
    if value is None:
        return None
    if t.startswith("["):
        return [_known(v, t[1:]) for v in value]
    if t.startswith("{"):
        return {k: _known(v, t[1:]) for k, v in value.items()}
    if t not in _STRUCTS:
        return value
    fields = _STRUCTS[t]
    folded = {k.lower(): k for k in fields}
    out = {}
    for key, v in value.items():
        field = key if key in fields else folded.get(key.lower())
        if field is not None:
            out[key] = _known(v, fields[field])
    return out
