"""``pallet-runc update``: the resources to change, read as runc 1.1 reads them.

From ``--resources`` (a file or "-": a ``linux.resources`` object, decoded
with Go's rules and messages: unknown keys ignored, the first JSON value
only, a wrong type named by its Go struct field) or else from the flags
(sizes as docker's units, numbers as strconv's, ``--pids-limit`` an int
flag).  What is returned holds only what is to be written: runc's zero
values ("unchanged") are dropped, and quota and period are kept apart so
that the runtime leaves the other one as it was.
"""
from __future__ import annotations

import sys

from pallet.commands.runc_flags import int_value, uint_value
from pallet.units.size import ram_in_bytes

_I64, _U64, _U16, _STR, _BOOL = "int64", "uint64", "uint16", "string", "bool"
#: the part of runtime-spec's LinuxResources that update reads: Go struct, fields, types
_FIELDS = {
    "memory": ("LinuxMemory", {"limit": _I64, "reservation": _I64, "swap": _I64,
                               "kernel": _I64, "kernelTCP": _I64, "swappiness": _U64,
                               "disableOOMKiller": _BOOL, "useHierarchy": _BOOL}),
    "cpu": ("LinuxCPU", {"shares": _U64, "quota": _I64, "period": _U64,
                         "realtimeRuntime": _I64, "realtimePeriod": _U64, "cpus": _STR,
                         "mems": _STR, "idle": _I64}),
    "blockIO": ("LinuxBlockIO", {"weight": _U16, "leafWeight": _U16}),
    "pids": ("LinuxPids", {"limit": _I64}),
}
_RANGES = {_I64: (-(1 << 63), (1 << 63) - 1), _U64: (0, (1 << 64) - 1), _U16: (0, (1 << 16) - 1)}


def resources(opts: dict, log) -> dict:
    """The linux.resources values ``update`` writes (ValueError: runc's message)."""
    src = opts.get("resources")
    values = _from_json(_read(src)) if src else _from_flags(opts)
    if opts.get("l3-cache-schema"):
        raise ValueError("Intel RDT/CAT: l3 cache schema is not enabled")
    if opts.get("mem-bw-schema"):
        raise ValueError("Intel RDT/MBA: memory bandwidth schema is not enabled")
    mem = values.get("memory") or {}
    if mem.get("kernel") or mem.get("kernelTCP"):
        log.warning("Kernel memory settings are ignored and will be removed")
    # runc's update takes only these of the memory section
    values["memory"] = {k: v for k, v in mem.items() if k in ("limit", "reservation", "swap")}
    return _nonzero(values)


def _read(src: str) -> str:
    if src == "-":
        return sys.stdin.read()
    try:
        with open(src) as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"open {src}: {e.strerror.lower()}") from None


def _from_json(text: str) -> dict:
    from pallet.oci import jsonlite
    try:
        doc, _end = jsonlite.first_value(text)  # a Decoder reads one value, not the rest
    except ValueError as e:
        raise ValueError(str(e)) from None
    out = {"unified": None}
    if not isinstance(doc, dict):
        if doc is None:
            return out
        raise ValueError(f"json: cannot unmarshal {_kind(doc)} into Go value of type "
                         "specs.LinuxResources")
    for section, (struct, fields) in _FIELDS.items():
        part = doc.get(section)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise ValueError(f"json: cannot unmarshal {_kind(part)} into Go struct field "
                             f"LinuxResources.{section} of type specs.{struct}")
        for key, kind in fields.items():
            if key in part and part[key] is not None:
                out.setdefault(section, {})[key] = _typed(part[key], kind,
                                                          f"{struct}.{section}.{key}")
    unified = doc.get("unified")
    if unified is not None:
        if not isinstance(unified, dict):
            raise ValueError(f"json: cannot unmarshal {_kind(unified)} into Go struct field "
                             "LinuxResources.unified of type map[string]string")
        for value in unified.values():
            if not isinstance(value, str):
                raise ValueError(f"json: cannot unmarshal {_kind(value)} into Go struct field "
                                 "LinuxResources.unified of type string")
        out["unified"] = dict(unified)
    return out


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", dict: "object", list: "array"}.get(type(value), "null")


def _typed(value, kind: str, field: str):
    wrong = f"json: cannot unmarshal {{}} into Go struct field {field} of type {kind}"
    if kind == _STR:
        if not isinstance(value, str):
            raise ValueError(wrong.format(_kind(value)))
        return value
    if kind == _BOOL:
        if not isinstance(value, bool):
            raise ValueError(wrong.format(_kind(value)))
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(wrong.format(_kind(value)))
    low, high = _RANGES[kind]
    if isinstance(value, float) or not low <= value <= high:
        text = repr(value) if isinstance(value, float) else str(value)
        raise ValueError(wrong.format(f"number {text}"))
    return value


def _from_flags(opts: dict) -> dict:
    out: dict = {"memory": {}, "cpu": {}, "blockIO": {}, "pids": {}, "unified": None}
    if opts.get("blkio-weight"):
        out["blockIO"]["weight"] = opts["blkio-weight"] & 0xFFFF
    for flag, key in (("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")):
        if opts.get(flag):
            out["cpu"][key] = opts[flag]
    for flag, key in (("cpu-period", "period"), ("cpu-rt-period", "realtimePeriod"),
                      ("cpu-share", "shares")):
        if opts.get(flag):
            out["cpu"][key] = uint_value(flag, opts[flag])
    for flag, key in (("cpu-quota", "quota"), ("cpu-rt-runtime", "realtimeRuntime")):
        if opts.get(flag):
            out["cpu"][key] = int_value(flag, opts[flag])
    for flag, key in (("memory", "limit"), ("memory-swap", "swap"),
                      ("kernel-memory", "kernel"), ("kernel-memory-tcp", "kernelTCP"),
                      ("memory-reservation", "reservation")):
        if opts.get(flag):
            try:
                out["memory"][key] = -1 if opts[flag] == "-1" else ram_in_bytes(opts[flag])
            except ValueError as e:
                raise ValueError(f"invalid value for {flag}: {e}") from None
    out["pids"]["limit"] = opts.get("pids-limit", 0)
    return out


def _nonzero(values: dict) -> dict:
    """runc writes only what is not zero (or empty); unified is passed as given."""
    res: dict = {}
    for section in ("memory", "cpu", "blockIO", "pids"):
        kept = {k: v for k, v in (values.get(section) or {}).items() if v not in (0, "", False)}
        if kept:
            res[section] = kept
    mem = res.get("memory", {})
    if mem.get("limit") == -1 and "swap" not in mem:
        mem["swap"] = 0  # runc: "unable to set swap limit without memory limit" otherwise
    if values.get("unified") is not None:
        res["unified"] = values["unified"]
    return res
