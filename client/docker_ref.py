"""Image references as docker's CLI reads and shows them.

``busybox`` is ``docker.io/library/busybox:latest`` in full (normalised) and
``busybox:latest`` when shown (familiar).
"""

DEFAULT_DOMAIN = "docker.io"
# compiled on first use: ``re`` is not imported on the path of ``pallet ps``
_PATTERNS = {}


def _re(name):
    if not _PATTERNS:
        import re
        _PATTERNS.update(
            digest=re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$"),
            tag=re.compile(r"^[\w][\w.-]{0,127}$"),
            component=re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$"))
    return _PATTERNS[name]


class ReferenceError_(ValueError):
    """A reference that does not parse ('invalid reference format')."""


def split(ref):
    """(name, tag, digest) of *ref*; tag and digest are '' when absent."""
    name, _, digest = ref.partition("@")
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


def _domain_split(name):
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return "", name


def validate(ref):
    """Raise ReferenceError_ unless *ref* is a well-formed image reference."""
    name, tag, digest = split(ref)
    if not name or ref != ref.strip():
        raise ReferenceError_("invalid reference format")
    domain, path = _domain_split(name)
    if domain == "" and path != path.lower():
        shown = path if "/" in path else "library/" + path
        raise ReferenceError_("invalid reference format: repository name (%s) must be lowercase"
                              % shown)
    for comp in path.split("/"):
        if not _re("component").match(comp):
            raise ReferenceError_("invalid reference format")
    if tag and not _re("tag").match(tag):
        raise ReferenceError_("invalid reference format")
    if digest and not _re("digest").match(digest):
        raise ReferenceError_("invalid reference format")


def normalize_name(name):
    """Full repository name: 'busybox' -> 'docker.io/library/busybox'."""
    domain, path = _domain_split(name)
    if not domain:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    return domain + "/" + path


def familiar_name(name):
    """Short repository name: 'docker.io/library/busybox' -> 'busybox'."""
    if name.startswith(DEFAULT_DOMAIN + "/"):
        name = name[len(DEFAULT_DOMAIN) + 1:]
        if name.startswith("library/") and name.count("/") == 1:
            name = name[len("library/"):]
    return name


def with_default_tag(ref):
    """'busybox' -> 'busybox:latest'; references with a tag or digest are kept."""
    name, tag, digest = split(ref)
    if tag or digest:
        return ref
    return ref + ":latest"
