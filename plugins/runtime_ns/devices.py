"""The devices cgroup rules of a container, and runc's way of writing them on v1.

The rules are the spec's ``linux.resources.devices`` followed by runc's
allowed defaults (mknod of anything; null, random, full, tty, zero, urandom;
the ptys; ptmx; tun).  On cgroup v1, runc does not write "deny all" and then
every allow -- which would leave the container without /dev/null for a
moment on each update -- but reads ``devices.list``, models both states the
way the kernel keeps them (an allow-list, or allow-all with exceptions) and
writes only the transition between them (runc's devices emulator).
"""
from __future__ import annotations

import os

#: runc's AllowedDevices rules, in its order: (type, major, minor, access)
DEFAULT_RULES = (
    ("c", -1, -1, "m"), ("b", -1, -1, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"),
    ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"),
    ("c", 136, -1, "rwm"), ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"),
)
_ORDER = "rwm"


def rules_of(spec_rules) -> list[tuple]:
    """(allow, type, major, minor, access) for the spec's rules and the defaults."""
    out = []
    for r in spec_rules or ():
        major = r.get("major")
        minor = r.get("minor")
        out.append((bool(r.get("allow")), r.get("type") or "a",
                    -1 if major is None else major, -1 if minor is None else minor,
                    r.get("access") or ""))
    out.extend((True,) + rule for rule in DEFAULT_RULES)
    return out


def _perms(access: str) -> frozenset:
    return frozenset(c for c in access if c in _ORDER)


def _text(perms) -> str:
    return "".join(c for c in _ORDER if c in perms)


class Emulator:
    """A devices cgroup as the kernel keeps it: ``allow`` (allow-all, rules
    are denials) or not (deny-all, rules are allowances)."""

    def __init__(self, allow: bool = False, rules: dict | None = None):
        self.allow = allow
        self.rules: dict[tuple, frozenset] = rules or {}

    @classmethod
    def from_list(cls, text: str) -> "Emulator":
        """The state ``devices.list`` shows."""
        lines = [line for line in text.splitlines() if line.strip()]
        if lines == ["a *:* rwm"]:
            return cls(True)
        emu = cls(False)
        for line in lines:
            kind, nums, access = line.split()
            major, minor = nums.split(":")
            emu.rules[(kind, -1 if major == "*" else int(major),
                       -1 if minor == "*" else int(minor))] = _perms(access)
        return emu

    @classmethod
    def from_rules(cls, rules) -> "Emulator":
        emu = cls(False)
        for allow, kind, major, minor, access in rules:
            emu.apply(allow, kind, major, minor, access)
        return emu

    def apply(self, allow: bool, kind: str, major: int, minor: int, access: str) -> None:
        if kind == "a":  # a wildcard rule resets the cgroup to allow-all or deny-all
            self.allow, self.rules = allow, {}
            return
        key, perms = (kind, major, minor), _perms(access)
        if allow == self.allow:  # an allowance in allow-all mode, a denial in deny-all
            self._remove(key, perms)
        else:
            self.rules[key] = self.rules.get(key, frozenset()) | perms

    def _remove(self, key: tuple, perms: frozenset) -> None:
        kind, major, minor = key
        for partial in ((kind, -1, minor), (kind, major, -1), (kind, -1, -1)):
            if partial != key and self.rules.get(partial, frozenset()) & perms:
                raise ValueError(f"requested rule [{_meta(key)} {_text(perms)}] not supported by "
                                 f"devices cgroupv1 (cannot punch hole in existing wildcard rule "
                                 f"[{_meta(partial)} {_text(self.rules[partial])}])")
        left = self.rules.get(key, frozenset()) - perms
        if left:
            self.rules[key] = left
        else:
            self.rules.pop(key, None)

    def transition(self, target: "Emulator") -> list[tuple[bool, str]]:
        """The writes (allow?, rule text) that take this state to ``target``."""
        out = []
        old = self.rules
        # devices.list cannot show the denials of an allow-all cgroup: start over
        if self.allow or self.allow != target.allow:
            out.append((target.allow, "a *:* rwm"))
            old = {}
        for key in sorted(old):
            dropped = old[key] - target.rules.get(key, frozenset())
            if dropped:
                out.append((target.allow, _rule_text(key, dropped)))
        for key in sorted(target.rules):
            gained = target.rules[key] - old.get(key, frozenset())
            if gained:
                out.append((not target.allow, _rule_text(key, gained)))
        return out


def _meta(key: tuple) -> str:
    kind, major, minor = key
    return f"{kind} {'*' if major == -1 else major}:{'*' if minor == -1 else minor}"


def _rule_text(key: tuple, perms) -> str:
    return f"{_meta(key)} {_text(perms)}"


def set_v1(path: str, rules) -> None:
    """Bring the v1 devices cgroup at ``path`` to ``rules`` with the fewest writes."""
    from pallet.plugins.runtime_ns.cgroups import CgroupError, write
    try:
        with open(os.path.join(path, "devices.list")) as f:
            current = Emulator.from_list(f.read())
        target = Emulator.from_rules(rules)
    except ValueError as e:
        raise CgroupError(str(e)) from None
    for allow, text in current.transition(target):
        write(path, "devices.allow" if allow else "devices.deny", text)
    with open(os.path.join(path, "devices.list")) as f:
        after = Emulator.from_list(f.read())
    if not target.allow and (after.allow or after.rules != target.rules):
        raise CgroupError("resulting devices cgroup doesn't precisely match target")
    if target.allow != after.allow:
        raise CgroupError("resulting devices cgroup doesn't match target mode")
