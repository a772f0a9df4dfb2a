"""``linux.seccomp`` compiled to a classic BPF program and installed with seccomp(2).

No libseccomp: the OCI profile is translated here, the syscall numbers come
from ``_syscalls.py`` (generated from the kernel headers by gen_tables.py).

The program, per architecture the profile names (``architectures``, the
native one always included, as libseccomp does)::

    A = arch;  if A != AUDIT_ARCH_<arch>: next architecture
    A = nr;    (x86_64: x32 numbers, bit 30, go to the x32 part if listed)
    for each syscall with rules:  if A == nr: jump to its rule block
    if A > highest number named: return ERRNO(ENOSYS)   (runc's -ENOSYS stub,
        so that newer syscalls fall back as they do on an older kernel)
    return defaultAction
    rule block: each rule in order (args ANDed, 64-bit comparisons done as
        two 32-bit halves); the first that matches returns its action;
        none: defaultAction
    no architecture matched: KILL_PROCESS (libseccomp's bad-arch action)

Conditional BPF jumps reach 255 instructions at most: every long jump goes
through an unconditional ``ja`` (32-bit offset) right after a short test.
``flags`` (SECCOMP_FILTER_FLAG_*) are passed to seccomp(2).
``SCMP_ACT_NOTIFY`` (a listener socket) is refused as not supported.

The profile is checked and compiled before fork (``compile_profile``); the
container process only calls ``install`` with the bytes, as late as runc
does (see process.py).
"""
from __future__ import annotations

import os
import struct

from pallet.linux import ccall

# --- constants (linux/seccomp.h, linux/filter.h, linux/audit.h) ---------------------------
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

_BPF_LD_W_ABS = 0x20
_BPF_JMP_JEQ_K = 0x15
_BPF_JMP_JGT_K = 0x25
_BPF_JMP_JGE_K = 0x35
_BPF_JMP_JSET_K = 0x45
_BPF_JMP_JA = 0x05
_BPF_RET_K = 0x06
_BPF_ALU_AND_K = 0x54

_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARGS = 16

EPERM = 1
ENOSYS = 38

#: OCI architecture -> (AUDIT_ARCH_*, table name in _syscalls)
ARCHES = {
    "SCMP_ARCH_X86_64": (0xC000003E, "x86_64"),
    "SCMP_ARCH_X86": (0x40000003, "x86"),
    "SCMP_ARCH_X32": (0xC000003E, "x32"),
    "SCMP_ARCH_AARCH64": (0xC00000B7, "aarch64"),
}
#: OCI architectures the runtime accepts but cannot filter (no table): skipped,
#: so their syscalls meet the bad-architecture action
KNOWN_ARCHES = ARCHES.keys() | {
    "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64"}
NATIVE = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}

FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32}
OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
       "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")

_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}
_SECCOMP_SET_MODE_FILTER = 1
_PR_SET_NO_NEW_PRIVS = 38


class SeccompError(Exception):
    """The profile cannot be compiled; the message names the field."""


def native_arch() -> str:
    machine = os.uname().machine
    if machine not in NATIVE:
        raise SeccompError(f"seccomp is not supported on {machine}")
    return NATIVE[machine]


def action(name: str, errno_ret=None, default_errno=None) -> int:
    """The SECCOMP_RET_* value of an OCI action."""
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return RET_KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return RET_KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return RET_TRAP
    if name == "SCMP_ACT_ERRNO":
        err = errno_ret if errno_ret is not None else (default_errno if default_errno is not None
                                                       else EPERM)
        return RET_ERRNO | (int(err) & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        err = errno_ret if errno_ret is not None else (default_errno if default_errno is not None
                                                       else EPERM)
        return RET_TRACE | (int(err) & 0xFFFF)
    if name == "SCMP_ACT_ALLOW":
        return RET_ALLOW
    if name == "SCMP_ACT_LOG":
        return RET_LOG
    if name == "SCMP_ACT_NOTIFY":
        raise SeccompError("SCMP_ACT_NOTIFY is not supported by pallet-runc")
    raise SeccompError(f"unknown action {name!r}")


# --- a tiny assembler with labels -----------------------------------------------------------

class _Asm:
    def __init__(self):
        self.code: list[list] = []   # [code, jt, jf, k]; jt/jf/k may be label names
        self.labels: dict[str, int] = {}
        self._n = 0

    def label(self) -> str:
        self._n += 1
        return f"L{self._n}"

    def here(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def ld(self, offset: int) -> None:
        self.code.append([_BPF_LD_W_ABS, 0, 0, offset])

    def jmp(self, op: int, k: int, jt, jf) -> None:
        self.code.append([op, jt, jf, k & 0xFFFFFFFF])

    def ja(self, target: str) -> None:
        self.code.append([_BPF_JMP_JA, 0, 0, target])

    def ret(self, value: int) -> None:
        self.code.append([_BPF_RET_K, 0, 0, value & 0xFFFFFFFF])

    def and_(self, k: int) -> None:
        self.code.append([_BPF_ALU_AND_K, 0, 0, k & 0xFFFFFFFF])

    def assemble(self) -> bytes:
        out = []
        for i, (code, jt, jf, k) in enumerate(self.code):
            if code == _BPF_JMP_JA and isinstance(k, str):
                k = self.labels[k] - i - 1
            if isinstance(jt, str):
                jt = self.labels[jt] - i - 1
            if isinstance(jf, str):
                jf = self.labels[jf] - i - 1
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise SeccompError("internal error: conditional jump too long")
            out.append(struct.pack("=HBBI", code, jt, jf, k))
        if len(out) > 4096:
            raise SeccompError(f"the profile compiles to {len(out)} BPF instructions, "
                               "more than the kernel's 4096")
        return b"".join(out)


# --- compiling ------------------------------------------------------------------------------

def _rules(profile: dict, table_name: str) -> tuple[dict[int, list], int]:
    """syscall number -> [(action, args)] in profile order, for one architecture;
    and the highest number named."""
    from pallet.plugins.runtime_ns._syscalls import TABLES
    table = TABLES[table_name]
    out: dict[int, list] = {}
    highest = -1
    for i, entry in enumerate(profile.get("syscalls") or ()):
        names = list(entry.get("names") or ())
        if entry.get("name"):
            names.append(entry["name"])
        # defaultErrnoRet is the default action's only: a rule's ERRNO without
        # errnoRet is EPERM (runc)
        act = action(entry.get("action", ""), entry.get("errnoRet"))
        args = []
        for j, arg in enumerate(entry.get("args") or ()):
            op = arg.get("op")
            if op not in OPS:
                raise SeccompError(f"syscalls[{i}].args[{j}].op: unknown operator {op!r}")
            index = arg.get("index", 0)
            if not 0 <= index <= 5:
                raise SeccompError(f"syscalls[{i}].args[{j}].index: {index} is not 0 to 5")
            args.append((index, arg.get("value", 0), arg.get("valueTwo", 0), op))
        for name in names:
            nr = table.get(name)
            if nr is None:
                continue  # unknown on this architecture: ignored, as runc does
            out.setdefault(nr, []).append((act, args))
            highest = max(highest, nr)
    return out, highest


def _arg_test(asm: _Asm, index: int, value: int, value_two: int, op: str, fail: str) -> None:
    """Fall through if ``args[index] <op> value`` holds, else jump to ``fail``."""
    lo_off = _OFF_ARGS + 8 * index
    hi_off = lo_off + 4
    if op == "SCMP_CMP_MASKED_EQ":
        mask, want = value, value_two
        asm.ld(hi_off)
        asm.and_(mask >> 32)
        asm.jmp(_BPF_JMP_JEQ_K, (want >> 32) & 0xFFFFFFFF, 0, fail)
        asm.ld(lo_off)
        asm.and_(mask)
        asm.jmp(_BPF_JMP_JEQ_K, want & 0xFFFFFFFF, 0, fail)
        return
    value &= 0xFFFFFFFFFFFFFFFF
    hi, lo = value >> 32, value & 0xFFFFFFFF
    ok = asm.label()
    if op in ("SCMP_CMP_EQ", "SCMP_CMP_NE"):
        asm.ld(hi_off)
        if op == "SCMP_CMP_EQ":
            asm.jmp(_BPF_JMP_JEQ_K, hi, 0, fail)
            asm.ld(lo_off)
            asm.jmp(_BPF_JMP_JEQ_K, lo, 0, fail)
        else:
            asm.jmp(_BPF_JMP_JEQ_K, hi, 0, ok)
            asm.ld(lo_off)
            asm.jmp(_BPF_JMP_JEQ_K, lo, fail, 0)
        asm.here(ok)
        return
    # unsigned 64-bit order: decide on the high word unless it is equal
    # GT: hi > H -> ok; hi < H... (hi != H and not hi > H) -> fail; else lo > L
    # GE: lo >= L; LT = not GE; LE = not GT
    strict = op in ("SCMP_CMP_GT", "SCMP_CMP_LE")
    positive = op in ("SCMP_CMP_GT", "SCMP_CMP_GE")
    yes, no = (ok, fail) if positive else (fail, ok)
    lo_op = _BPF_JMP_JGT_K if strict else _BPF_JMP_JGE_K
    asm.ld(hi_off)
    asm.jmp(_BPF_JMP_JGT_K, hi, yes, 0)
    asm.jmp(_BPF_JMP_JEQ_K, hi, 0, no)
    asm.ld(lo_off)
    asm.jmp(lo_op, lo, yes, no)
    asm.here(ok)


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    """Sorted numbers as runs of consecutive ones: [1,2,3,7] -> [(1,3), (7,7)]."""
    out: list[list[int]] = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return [(a, b) for a, b in out]


def _arch_section(asm: _Asm, rules: dict, highest: int, default: int, nr_min=None) -> None:
    """The syscall dispatch for one architecture; A holds the syscall number."""
    blocks = []
    plain: dict[int, list[int]] = {}  # action -> numbers with one rule and no args
    for nr in sorted(rules):
        entries = rules[nr]
        if len(entries) == 1 and not entries[0][1]:
            if entries[0][0] != default:
                plain.setdefault(entries[0][0], []).append(nr)
            continue
        target = asm.label()
        blocks.append((target, entries))
        # a short test over one ja (whose offset has 32 bits)
        asm.jmp(_BPF_JMP_JEQ_K, nr, 0, 1)
        asm.ja(target)
    for act, numbers in plain.items():
        for lo, hi in _ranges(numbers):
            if lo == hi:
                asm.jmp(_BPF_JMP_JEQ_K, lo, 0, 1)
            else:
                asm.jmp(_BPF_JMP_JGE_K, lo, 0, 2)
                asm.jmp(_BPF_JMP_JGT_K, hi, 1, 0)
            asm.ret(act)
    if highest >= 0 and (default & 0xFFFF0000) != RET_ALLOW:
        # runc's -ENOSYS stub: newer than anything the profile knows
        asm.jmp(_BPF_JMP_JGT_K, highest, 0, 1)
        asm.ret(RET_ERRNO | ENOSYS)
    asm.ret(default)
    for target, entries in blocks:
        asm.here(target)
        for act, args in entries:
            nxt = asm.label()
            for index, value, value_two, op in args:
                _arg_test(asm, index, value, value_two, op, nxt)
            asm.ret(act)
            asm.here(nxt)
        asm.ret(default)


def compile_profile(profile: dict, check_only: bool = False, arch: str | None = None) -> bytes:
    """The BPF program (struct sock_filter[]) for an OCI ``linux.seccomp``."""
    if "defaultAction" not in profile:
        raise SeccompError("defaultAction is required")
    default = action(profile["defaultAction"], None, profile.get("defaultErrnoRet"))
    for flag in profile.get("flags") or ():
        if flag not in FLAGS:
            raise SeccompError(f"flags: unknown flag {flag!r}")
    native = arch or native_arch()
    arches = [native]
    for name in profile.get("architectures") or ():
        if name not in KNOWN_ARCHES:
            raise SeccompError(f"architectures: unknown architecture {name!r}")
        if name in ARCHES and name not in arches:
            arches.append(name)
    if profile.get("listenerPath"):
        raise SeccompError("listenerPath (seccomp notify) is not supported by pallet-runc")
    asm = _Asm()
    have_x32 = "SCMP_ARCH_X32" in arches
    for name in arches:
        if name == "SCMP_ARCH_X32":
            continue  # handled inside the x86_64 section (same AUDIT_ARCH)
        audit, table = ARCHES[name]
        skip = asm.label()
        asm.ld(_OFF_ARCH)
        asm.jmp(_BPF_JMP_JEQ_K, audit, 1, 0)  # equal: over the "ja skip"
        asm.ja(skip)
        asm.ld(_OFF_NR)
        rules, highest = _rules(profile, table)
        if name == "SCMP_ARCH_X86_64":
            x32 = asm.label()
            asm.jmp(_BPF_JMP_JGE_K, 0x40000000, 0, 1)  # the x32 ABI (__X32_SYSCALL_BIT)
            asm.ja(x32)
            _arch_section(asm, rules, highest, default)
            asm.here(x32)
            if have_x32:
                x_rules, x_highest = _rules(profile, "x32")
                _arch_section(asm, x_rules, x_highest, default)
            else:
                asm.ret(RET_KILL_PROCESS)
        else:
            _arch_section(asm, rules, highest, default)
        asm.here(skip)
    asm.ret(RET_KILL_PROCESS)
    program = asm.assemble()
    return b"" if check_only else program


def filter_flags(profile: dict) -> int:
    flags = 0
    for name in profile.get("flags") or ():
        flags |= FLAGS[name]
    return flags


# --- installing -------------------------------------------------------------------------------

class _SockFprog(ccall.Structure):
    _fields_ = [("len", ccall.c_ushort), ("filter", ccall.c_void_p)]


_libc = ccall.libc


def install(program: bytes, flags: int = 0) -> None:
    """Load ``program`` for the calling thread (and, with TSYNC, its others).

    Without no_new_privs the caller needs CAP_SYS_ADMIN (seccomp(2)).
    """
    buf = ccall.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ccall.addressof(buf))
    nr = _SYS_SECCOMP.get(os.uname().machine)
    if nr is not None:
        res = _libc.syscall(ccall.c_long(nr), ccall.c_uint(_SECCOMP_SET_MODE_FILTER),
                            ccall.c_uint(flags), ccall.byref(prog))
    else:  # prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog): no flags
        res = _libc.prctl(ccall.c_int(22), ccall.c_ulong(2), ccall.byref(prog),
                          ccall.c_ulong(0), ccall.c_ulong(0))
    if res != 0:
        err = ccall.get_errno()
        raise OSError(err, f"install seccomp filter: {os.strerror(err).lower()}")


# --- docker's profile format ---------------------------------------------------------------

_GO_ARCH = {"SCMP_ARCH_X86_64": "amd64", "SCMP_ARCH_AARCH64": "arm64", "SCMP_ARCH_X86": "386",
            "SCMP_ARCH_X32": "x32", "SCMP_ARCH_ARM": "arm"}


def _kernel_at_least(version: str) -> bool:
    def parts(text):
        out = []
        for p in text.split("-")[0].split(".")[:2]:
            digits = "".join(ch for ch in p if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)
    return parts(os.uname().release) >= parts(version)


def from_docker_profile(profile: dict, capabilities=(), arch: str | None = None) -> dict:
    """The OCI ``linux.seccomp`` dockerd makes from one of its profiles
    (``archMap``, ``includes``/``excludes`` by capability, architecture and
    kernel version) for a container with ``capabilities``."""
    native = arch or native_arch()
    go_arch = _GO_ARCH.get(native, "")
    caps = set(capabilities)
    out = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    for entry in profile.get("archMap") or ():
        if entry.get("architecture") == native:
            out["architectures"] = [native] + list(entry.get("subArchitectures") or ())
    syscalls = []
    for entry in profile.get("syscalls") or ():
        inc = entry.get("includes") or {}
        exc = entry.get("excludes") or {}
        if inc.get("arches") and go_arch not in inc["arches"]:
            continue
        if exc.get("arches") and go_arch in exc["arches"]:
            continue
        if inc.get("caps") and not set(inc["caps"]) <= caps:
            continue
        if exc.get("caps") and set(exc["caps"]) & caps:
            continue
        if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
            continue
        call = {"names": list(entry.get("names") or ([entry["name"]] if entry.get("name") else [])),
                "action": entry["action"]}
        if entry.get("args"):
            call["args"] = [dict(a) for a in entry["args"]]
        if entry.get("errnoRet") is not None:
            call["errnoRet"] = entry["errnoRet"]
        syscalls.append(call)
    out["syscalls"] = syscalls
    return out
