"""Platforms (os/architecture/variant) in Go's names, and the chain IDs of
a layer stack."""
from __future__ import annotations

import hashlib
import platform as _platform
from typing import Sequence

import attrs

_GOARCH = {"x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", "v8"),
           "arm64": ("arm64", "v8"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
           "i386": ("386", ""), "i686": ("386", ""), "ppc64le": ("ppc64le", ""),
           "s390x": ("s390x", ""), "riscv64": ("riscv64", "")}


@attrs.frozen
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    @classmethod
    def host(cls) -> "Platform":
        """The platform of this machine, in Go's names (``amd64``, ``arm64/v8``)."""
        machine = _platform.machine()
        arch, variant = _GOARCH.get(machine, (machine, ""))
        return cls("linux", arch, variant)

    def matches(self, d: dict | None) -> bool:
        """Whether an OCI platform object fits this platform (arm64's v8 is optional)."""
        if not d:
            return False
        if d.get("os") != self.os or d.get("architecture") != self.architecture:
            return False
        variant = d.get("variant", "")
        return not variant or not self.variant or variant == self.variant


def chain_ids(diff_ids: Sequence[str]) -> tuple[str, ...]:
    """OCI chain IDs: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else
                   "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return tuple(out)
