"""Image references (``busybox``, ``host:5000/app:tag@sha256:...``),
parsed and normalised as docker's reference package does."""
from __future__ import annotations

import re

import attrs

from pallet.core.errors import InvalidArgument

# --- image references, normalised as docker does -------------------------------

DEFAULT_DOMAIN = "docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")
_HEX_ID = re.compile(r"^[a-f0-9]{64}$")


@attrs.frozen
class Reference:
    """A normalised image reference: ``docker.io/library/busybox:latest``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: bool = True) -> "Reference":
        """Parse and normalise as docker does (``busybox`` ->
        ``docker.io/library/busybox:latest``); refuse an invalid one with
        docker's message."""
        if not text or text != text.strip():
            raise InvalidArgument(f"invalid reference format: {text!r}")
        if _HEX_ID.match(text):
            raise InvalidArgument(
                f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
        m = _REFERENCE.match(text)
        if not m:
            if _REFERENCE.match(text.lower()):
                raise InvalidArgument(
                    f"invalid reference format: repository name ({text}) must be lowercase")
            raise InvalidArgument("invalid reference format")
        domain, path = m.group("domain"), m.group("path")
        # docker's rule: the first component is a registry host only when it
        # has a dot or a port, or is "localhost"
        if domain is not None and not ("." in domain or ":" in domain or domain == "localhost"
                                       or domain != domain.lower()):
            path, domain = f"{domain}/{path}", None
        if domain is None:
            domain = DEFAULT_DOMAIN
        if domain == "index.docker.io":
            domain = DEFAULT_DOMAIN
        if domain == DEFAULT_DOMAIN and "/" not in path:
            path = OFFICIAL_PREFIX + path
        if len(path) > 255:
            raise InvalidArgument("invalid reference format: repository name must not be more "
                                  "than 255 characters")
        tag, digest = m.group("tag"), m.group("digest")
        if tag is None and digest is None and default_tag:
            tag = DEFAULT_TAG
        return cls(domain, path, tag, digest)

    @property
    def repository(self) -> str:
        """``docker.io/library/busybox``"""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        """The short form docker prints: ``busybox``, ``user/app``, ``host:5000/app``."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path[len(OFFICIAL_PREFIX):] if self.path.startswith(OFFICIAL_PREFIX) \
                else self.path
        return self.repository

    def __str__(self) -> str:
        out = self.repository
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    @property
    def familiar(self) -> str:
        """``busybox:latest`` — the form shown in RepoTags."""
        out = self.familiar_repository
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out


def familiar_name(name: str) -> str:
    """The familiar form of a stored (normalised) image name; unparsable names are kept."""
    try:
        return Reference.parse(name, default_tag=False).familiar
    except InvalidArgument:
        return name
