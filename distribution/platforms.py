"""Platforms (os/architecture/variant) in Go's names, choosing an index's
manifest for one of them, and the chain IDs of a layer stack."""
from __future__ import annotations

import platform as _platform
from typing import Mapping, Sequence

import attrs

from pallet.core.errors import InvalidArgument, NotFound
from pallet.distribution.digests import sha256_digest
from pallet.distribution.mediatypes import INDEX_TYPES, MANIFEST_TYPES

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

    @classmethod
    def from_oci(cls, d: Mapping) -> "Platform":
        """A platform from an OCI platform object (``os``, ``architecture``, ``variant``)."""
        return cls(d.get("os") or "", d.get("architecture") or "", d.get("variant") or "")

    def to_oci(self) -> dict:
        """The OCI platform object (no ``variant`` key when there is none)."""
        out = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(x for x in (self.os, self.architecture, self.variant) if x)

    def matches(self, d: Mapping | None) -> bool:
        """Whether an OCI platform object fits this platform (arm64's v8 is optional)."""
        if not d:
            return False
        if d.get("os") != self.os or d.get("architecture") != self.architecture:
            return False
        variant = d.get("variant", "")
        return not variant or not self.variant or variant == self.variant


def parse_platform(text: str | None) -> Platform:
    """``linux/amd64``, ``linux/arm64/v8``, ``arm64`` -> a Platform (default: this machine)."""
    host = Platform.host()
    if not text:
        return host
    parts = text.strip().lower().split("/")
    if len(parts) == 1:
        os_, arch, variant = host.os, parts[0], ""
    elif len(parts) in (2, 3):
        os_, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else ""
    else:
        raise InvalidArgument(f"invalid platform {text!r}: expected os[/arch[/variant]]")
    if not os_ or not arch:
        raise InvalidArgument(f"invalid platform {text!r}: expected os[/arch[/variant]]")
    alias = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
             "i386": "386"}
    arch = alias.get(arch, arch)
    if arch == "arm64" and not variant:
        variant = "v8"
    return Platform(os_, arch, variant)


def platform_text(p: Platform) -> str:
    """``linux/arm64/v8``."""
    return str(p)


def host_platform() -> dict:
    """This machine's platform as an OCI platform object."""
    return Platform.host().to_oci()


def select_manifest(index: Mapping, platform: Platform | Mapping | None = None,
                    what: str = "the image index") -> dict:
    """The descriptor (an OCI dict) of the manifest of ``index`` for
    ``platform`` (default: this machine).

    os and architecture must match; an entry with the same variant wins over
    one that lacks a variant (or when the platform has none); entries with
    another media type are ignored.  An index whose entries name no fitting
    platform gives its first entry without a platform.  ``NotFound`` (docker's
    wording) when nothing fits.
    """
    if platform is None:
        platform = Platform.host()
    elif not isinstance(platform, Platform):
        platform = Platform.from_oci(platform)
    manifests = [m for m in index.get("manifests") or () if isinstance(m, Mapping)
                 and m.get("mediaType", MANIFEST_TYPES[0]) in MANIFEST_TYPES + INDEX_TYPES]
    exact = loose = unlabelled = None
    for m in manifests:
        p = m.get("platform")
        if not p:
            unlabelled = unlabelled or m
        elif (p.get("variant") or "") == platform.variant and platform.matches(p):
            exact = exact or m
        elif platform.matches(p):
            loose = loose or m
    chosen = exact or loose or unlabelled
    if chosen is None:
        raise NotFound(f"no matching manifest for {platform} in the manifest list entries "
                       f"of {what}")
    return dict(chosen)


def chain_ids(diff_ids: Sequence[str]) -> tuple[str, ...]:
    """OCI chain IDs: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else sha256_digest(f"{out[-1]} {d}".encode()))
    return tuple(out)
