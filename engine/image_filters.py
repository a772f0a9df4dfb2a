"""docker's image filters: ``reference`` patterns (Go's ``path.Match``),
boolean and label filters, ``until`` times; and image ``created`` times."""
from __future__ import annotations

import calendar
import re
import time

from pallet.core import errors
from pallet.distribution.reference import Reference, familiar_name
from pallet.units.duration import parse_go_duration


def created_unix(text: str | None) -> int:
    """Seconds since the epoch of an image config's RFC 3339 ``created`` (any
    fraction, ``Z`` or an offset); 0 when absent or unreadable."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?$",
                 (text or "").strip())
    if not m:
        return 0
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    tz = m.group(2) or "Z"
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs


def path_match_regex(pattern: str) -> re.Pattern:
    """Go's ``path.Match``: ``*`` and ``?`` do not cross ``/``; ``[...]`` classes
    with ``^`` negation; ``\\`` escapes."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise errors.InvalidArgument("syntax error in pattern")
            body = pattern[i + 1:j]
            neg = body.startswith("^")
            if neg:
                body = body[1:]
            body = body.replace("\\", "\\\\")
            out.append(f"[{'^/' if neg else ''}{body}]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def reference_matches(pattern: str, name: str) -> bool:
    """docker's ``reference.FamiliarMatch``: the pattern against the familiar
    reference (``busybox:latest``), then against its repository (``busybox``)."""
    rx = path_match_regex(pattern)
    fam = familiar_name(name)
    if rx.match(fam):
        return True
    try:
        repo = Reference.parse(name, default_tag=False).familiar_repository
    except errors.InvalidArgument:
        return False
    return bool(rx.match(repo))


def bool_filter(values: list[str], name: str) -> bool:
    out = None
    for v in values:
        low = v.strip().lower()
        if low in ("true", "1"):
            val = True
        elif low in ("false", "0"):
            val = False
        else:
            raise errors.InvalidArgument(f"invalid filter '{name}={v}'")
        if out is not None and out != val:
            raise errors.InvalidArgument(f"invalid filter '{name}={v}'")
        out = val
    return bool(out)


def labels_match(labels: dict, wanted: list[str]) -> bool:
    for v in wanted:
        k, eq, val = v.partition("=")
        if k not in labels or (eq and labels[k] != val):
            return False
    return True


def until_time(value: str) -> float:
    """docker's ``until`` filter: a unix time, an RFC 3339 time or a duration (``10m``)."""
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return time.time() - parse_go_duration(value) / 1e9
    except ValueError:
        pass
    secs = created_unix(value if "T" in value else value + "T00:00:00Z")
    if secs:
        return secs
    raise errors.InvalidArgument(f"invalid filter 'until={value}'")
