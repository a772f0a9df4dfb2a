"""cgroup v2 for a container: create, limit, join, freeze, list, remove, stats.

The same functions as ``cgroups`` (v1), on one unified hierarchy; ``paths``
is ``{"": directory}``.  Used when /sys/fs/cgroup is a cgroup2 mount, or on
any v2 mount point the runtime is given (``set_root``).

The OCI values are converted as runc's fs2 driver does: cpu shares to
``cpu.weight``, blkio weight to ``io.weight``, ``memory.swap`` (memory+swap)
to ``memory.swap.max`` (swap alone).  v2 has no devices controller: the
device rules become an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached
to the container's cgroup, written here instruction by instruction.
"""
from __future__ import annotations

import os
import struct
import time

from pallet.linux import ccall
from pallet.plugins.runtime_ns.cgroups import (  # noqa: F401 (re-exported)
    CgroupError,
    normalize,
    remove_container,
    remove_dirs)
from pallet.linux.cgroupfs import membership, read_keyed as _flat
from pallet.plugins.runtime_ns.cgroups import _read
from pallet.plugins.runtime_ns.cgroups import write as _cg_write

_root: str | None = None
_unified: str | None | bool = False


def unified_root() -> str | None:
    """/sys/fs/cgroup when it is a cgroup2 mount (a pure v2 host), else None."""
    global _unified
    if _unified is False:
        _unified = None
        try:
            with open("/proc/self/mountinfo", "rb") as f:
                for line in f.read().decode(errors="replace").splitlines():
                    left, _, right = line.partition(" - ")
                    if left.split()[4] == "/sys/fs/cgroup" and right.split()[0] == "cgroup2":
                        _unified = "/sys/fs/cgroup"
        except OSError:
            pass
    return _unified


def set_root(root: str) -> None:
    """The v2 mount point new cgroups are made under."""
    global _root
    _root = root


def _own_path() -> str:
    return dict(membership()).get("", "/")


def paths_for(cgroups_path: str) -> dict[str, str]:
    if _root is None:
        raise CgroupError("no cgroup v2 hierarchy configured")
    path = normalize(cgroups_path)
    rel = path if path.startswith("/") else os.path.join(_own_path(), path)
    return {"": os.path.normpath(_root + "/" + rel.lstrip("/"))}


def _write(path: str, value) -> None:
    _cg_write(os.path.dirname(path), os.path.basename(path), value)


def create(cgroups_path: str, resources: dict | None, devices=None):
    """Make the cgroup (enabling in each parent the controllers the limits
    need) and apply ``resources``; (paths, directories created)."""
    paths = paths_for(cgroups_path)
    leaf = paths[""]
    created: list[str] = []
    try:
        rel = os.path.relpath(leaf, _root)
        current = _root
        needed = _controllers_needed(resources or {})
        for part in rel.split("/"):
            if part in ("", "."):
                continue
            _enable(current, needed)
            current = os.path.join(current, part)
            try:
                os.mkdir(current, 0o755)
                created.append(current)
            except FileExistsError:
                pass
        apply(paths, resources or {}, devices)
    except BaseException:
        remove_dirs(created, leaves={leaf})
        raise
    return paths, created


def _controllers_needed(res: dict) -> set[str]:
    need = set()
    if res.get("memory"):
        need.add("memory")
    if res.get("cpu"):
        cpu = res["cpu"]
        if cpu.get("shares") or cpu.get("quota") or cpu.get("period"):
            need.add("cpu")
        if cpu.get("cpus") or cpu.get("mems"):
            need.add("cpuset")
    if res.get("pids"):
        need.add("pids")
    if (res.get("blockIO") or {}).get("weight"):
        need.add("io")
    if res.get("hugepageLimits"):
        need.add("hugetlb")
    return need


def _enable(directory: str, controllers: set[str]) -> None:
    """+controller in ``directory``'s cgroup.subtree_control, for those it has."""
    try:
        available = set(_read(os.path.join(directory, "cgroup.controllers")).split())
        enabled = set(_read(os.path.join(directory, "cgroup.subtree_control")).split())
    except OSError:
        return
    for name in sorted((controllers & available) - enabled):
        _write(os.path.join(directory, "cgroup.subtree_control"), f"+{name}")


def apply(paths: dict[str, str], res: dict, devices=None) -> None:
    """Write ``linux.resources`` in v2 terms; the device rules (``devices``,
    devices.rules_of's tuples; None: untouched) as eBPF."""
    d = paths[""]

    def put(name, value):
        if value is not None:
            _write(os.path.join(d, name), value)

    mem = res.get("memory") or {}
    limit = mem.get("limit")
    if limit is not None:
        put("memory.max", "max" if limit < 0 else limit)
    if mem.get("swap") is not None:
        swap = mem["swap"]
        if swap < 0:
            put("memory.swap.max", "max")
        elif limit is None or limit < 0:
            raise CgroupError("memory.swap needs memory.limit on cgroup v2")
        else:
            put("memory.swap.max", max(swap - limit, 0))
    if mem.get("reservation") is not None:
        put("memory.low", mem["reservation"])

    cpu = res.get("cpu") or {}
    if cpu.get("shares"):
        shares = max(2, min(262144, cpu["shares"]))
        put("cpu.weight", 1 + ((shares - 2) * 9999) // 262142)
    if cpu.get("quota") or cpu.get("period"):
        quota = cpu.get("quota")
        period = cpu.get("period") or 100000
        put("cpu.max", f"{'max' if not quota or quota < 0 else quota} {period}")
    if cpu.get("cpus"):
        put("cpuset.cpus", cpu["cpus"])
    if cpu.get("mems"):
        put("cpuset.mems", cpu["mems"])

    pids = res.get("pids") or {}
    if pids.get("limit") is not None:
        put("pids.max", "max" if pids["limit"] <= 0 else pids["limit"])

    blkio = res.get("blockIO") or {}
    if blkio.get("weight"):
        put("io.weight", 1 + (blkio["weight"] - 10) * 9999 // 990)

    for limit in res.get("hugepageLimits") or ():
        put(f"hugetlb.{limit['pageSize']}.max", limit["limit"])

    for key, value in (res.get("unified") or {}).items():
        if "/" in key or key.startswith("."):
            raise CgroupError(f"unified: invalid key {key!r}")
        put(key, value)

    if devices is not None:
        program = device_program([{"allow": a, "type": t, "major": ma, "minor": mi,
                                   "access": acc} for a, t, ma, mi, acc in devices])
        attach_device_program(d, program)


# --- the eBPF device filter ----------------------------------------------------------------

_BPF_DEVCG_DEV_BLOCK = 1
_BPF_DEVCG_DEV_CHAR = 2
_ACC = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def device_program(rules: list[dict]) -> bytes:
    """eBPF for the device rules: the last rule that matches decides (as
    successive writes to v1's devices.allow/deny would); none: allowed (the
    v1 default of a new cgroup under the root)."""
    code = [
        _insn(0x61, 2, 1, 0),     # r2 = ctx->access_type
        _insn(0xBC, 3, 2),        # w3 = w2
        _insn(0x54, 3, 0, 0, 0xFFFF),  # w3 &= 0xffff  (device type)
        _insn(0xBC, 4, 2),        # w4 = w2
        _insn(0x74, 4, 0, 0, 16),  # w4 >>= 16     (access)
        _insn(0x61, 5, 1, 4),     # r5 = ctx->major
        _insn(0x61, 6, 1, 8),     # r6 = ctx->minor
    ]
    for rule in reversed(rules):
        block: list[tuple] = []   # (code, dst, src, off_is_skip, imm)
        kind = rule.get("type") or "a"
        if kind in ("c", "b"):
            block.append((0x55, 3, 0, True, _BPF_DEVCG_DEV_CHAR if kind == "c" else
                          _BPF_DEVCG_DEV_BLOCK))      # if type != T: next
        bits = 0
        for ch in rule.get("access") or "rwm":
            bits |= _ACC.get(ch, 0)
        allow = bool(rule.get("allow"))
        if bits != 7:
            block.append((0xBC, 7, 4, False, 0))       # w7 = access
            if allow:   # every requested bit must be granted by the rule
                block.append((0x54, 7, 0, False, (~bits) & 7))
                block.append((0x55, 7, 0, True, 0))    # if w7 != 0: next
            else:       # any requested bit the rule denies
                block.append((0x54, 7, 0, False, bits))
                block.append((0x15, 7, 0, True, 0))    # if w7 == 0: next
        if kind != "a":
            for reg, key in ((5, "major"), (6, "minor")):
                value = rule.get(key)
                if value is not None and value != -1:
                    block.append((0x55, reg, 0, True, value))
        block.append((0xB7, 0, 0, False, 1 if allow else 0))  # r0 = verdict
        block.append((0x95, 0, 0, False, 0))                   # exit
        n = len(block)
        for i, (op, dst, src, skip, imm) in enumerate(block):
            code.append(_insn(op, dst, src, (n - i - 1) if skip else 0, imm))
        if not any(skip for _, _, _, skip, _ in block):
            # matches everything: the rules before it can never decide, and
            # the verifier refuses unreachable instructions
            return b"".join(code)
    code.append(_insn(0xB7, 0, 0, 0, 1))
    code.append(_insn(0x95))
    return b"".join(code)


_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_LOAD = 5
_BPF_PROG_ATTACH = 8
_BPF_PROG_DETACH = 9
_BPF_PROG_GET_FD_BY_ID = 13
_BPF_PROG_QUERY = 16
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6
_BPF_F_ALLOW_MULTI = 2
_libc = ccall.libc


def _bpf(cmd: int, attr: ccall.Array, what: str) -> int:
    nr = _SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise CgroupError(f"bpf is not supported on {os.uname().machine}")
    res = _libc.syscall(ccall.c_long(nr), ccall.c_int(cmd), attr, ccall.c_uint(len(attr)))
    if res < 0:
        err = ccall.get_errno()
        raise CgroupError(f"{what}: {os.strerror(err).lower()}")
    return res


def _attached(cg_fd: int) -> list[int]:
    ids = (ccall.c_uint32 * 64)()
    attr = ccall.create_string_buffer(128)
    struct.pack_into("<IIII", attr, 0, cg_fd, _BPF_CGROUP_DEVICE, 0, 0)
    struct.pack_into("<QI", attr, 16, ccall.addressof(ids), 64)
    _bpf(_BPF_PROG_QUERY, attr, "query device programs")
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:count])


def attach_device_program(directory: str, program: bytes) -> None:
    """Load ``program`` and make it the only device program of ``directory``."""
    insns = ccall.create_string_buffer(program, len(program))
    license_ = ccall.create_string_buffer(b"Apache")
    log = ccall.create_string_buffer(65536)
    attr = ccall.create_string_buffer(128)
    struct.pack_into("<IIQQIIQ", attr, 0, _BPF_PROG_TYPE_CGROUP_DEVICE, len(program) // 8,
                     ccall.addressof(insns), ccall.addressof(license_), 1, len(log),
                     ccall.addressof(log))
    struct.pack_into("<16s", attr, 48, b"pallet_devices")
    try:
        prog_fd = _bpf(_BPF_PROG_LOAD, attr, "load device program")
    except CgroupError as e:
        detail = log.value.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise CgroupError(f"{e} {detail[0]}".strip()) from None
    cg_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = _attached(cg_fd)
        attr = ccall.create_string_buffer(128)
        struct.pack_into("<IIII", attr, 0, cg_fd, prog_fd, _BPF_CGROUP_DEVICE, _BPF_F_ALLOW_MULTI)
        _bpf(_BPF_PROG_ATTACH, attr, f"attach device program to {directory}")
        for prog_id in old:  # update: the new program replaces the old ones
            get = ccall.create_string_buffer(128)
            struct.pack_into("<I", get, 0, prog_id)
            old_fd = _bpf(_BPF_PROG_GET_FD_BY_ID, get, "get old device program")
            try:
                det = ccall.create_string_buffer(128)
                struct.pack_into("<IIII", det, 0, cg_fd, old_fd, _BPF_CGROUP_DEVICE, 0)
                _bpf(_BPF_PROG_DETACH, det, "detach old device program")
            finally:
                os.close(old_fd)
    finally:
        os.close(cg_fd)
        os.close(prog_fd)


# --- joining, listing, freezing, removing ---------------------------------------------------

def join_self(paths: dict[str, str]) -> None:
    _write(os.path.join(paths[""], "cgroup.procs"), 0)


def all_pids(paths: dict[str, str]) -> list[int]:
    """Every pid in the cgroup and below."""
    out: list[int] = []
    for directory, dirs, _files in os.walk(paths[""]):
        dirs.sort()
        try:
            out.extend(int(x) for x in _read(os.path.join(directory, "cgroup.procs")).split())
        except FileNotFoundError:
            continue
    return out


pids = all_pids


def check_unused(paths: dict[str, str]) -> list[str]:
    """runc's checks before a container goes in (see cgroups.check_unused)."""
    warnings = []
    if os.path.isdir(paths[""]) and all_pids(paths):
        warnings = [f"container's cgroup is not empty: {len(all_pids(paths))} process(es) "
                    "found", "DEPRECATED: running container in a non-empty cgroup won't be "
                    "supported in runc 1.2; https://github.com/opencontainers/runc/issues/3132"]
    if is_frozen(paths):
        raise CgroupError("container's cgroup unexpectedly frozen")
    return warnings


def freeze(paths: dict[str, str], frozen: bool) -> None:
    """cgroup.freeze, then wait for cgroup.events to say so."""
    d = paths[""]
    _write(os.path.join(d, "cgroup.freeze"), "1" if frozen else "0")
    want = f"frozen {1 if frozen else 0}"
    deadline = time.monotonic() + 5
    while want not in _read(os.path.join(d, "cgroup.events")).splitlines():
        if time.monotonic() > deadline:
            raise CgroupError(f"timeout waiting for {d} to become {'frozen' if frozen else 'thawed'}")
        time.sleep(0.001)


def is_frozen(paths: dict[str, str]) -> bool:
    try:
        return _read(os.path.join(paths[""], "cgroup.freeze")) == "1"
    except (KeyError, OSError):
        return False


def _int(path: str) -> int:
    try:
        raw = _read(path)
    except OSError:
        return 0
    return 0 if raw == "max" else int(raw or 0)


def stats(paths: dict[str, str]) -> dict:
    d = paths[""]
    cpu = _flat(os.path.join(d, "cpu.stat"))
    out = {"cpu": {"usage": {"total": cpu.get("usage_usec", 0) * 1000,
                             "kernel": cpu.get("system_usec", 0) * 1000,
                             "user": cpu.get("user_usec", 0) * 1000},
                   "throttling": {"periods": cpu.get("nr_periods", 0),
                                  "throttledPeriods": cpu.get("nr_throttled", 0),
                                  "throttledTime": cpu.get("throttled_usec", 0) * 1000}}}
    if os.path.exists(os.path.join(d, "memory.current")):
        out["memory"] = {"usage": {"usage": _int(os.path.join(d, "memory.current")),
                                   "limit": _int(os.path.join(d, "memory.max"))},
                         "swap": {"usage": _int(os.path.join(d, "memory.swap.current")),
                                  "limit": _int(os.path.join(d, "memory.swap.max"))},
                         "raw": _flat(os.path.join(d, "memory.stat"))}
    if os.path.exists(os.path.join(d, "pids.current")):
        out["pids"] = {"current": _int(os.path.join(d, "pids.current")),
                       "limit": _int(os.path.join(d, "pids.max"))}
    hug = {}
    for name in os.listdir(d):
        if name.startswith("hugetlb.") and name.endswith(".current"):
            size = name[len("hugetlb."):-len(".current")]
            hug[size] = {"usage": _int(os.path.join(d, name)),
                         "max": _int(os.path.join(d, f"hugetlb.{size}.max"))}
    if hug:
        out["hugetlb"] = hug
    return out
