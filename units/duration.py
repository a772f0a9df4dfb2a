"""Durations as Go and docker/go-units write and read them: go-units'
``HumanDuration`` (``Up 3 minutes``, ``Exited (0) About an hour ago``), Go's
``time.ParseDuration`` (``1m30s``, flags and filters) and ``Duration.String``
(``1m30s``, ``137.57ms``).  Imports nothing: pallet-runc parses with it."""


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration of a duration in seconds: ``Less than a second``,
    ``1 second``, ``About a minute``, ``5 minutes``, ``About an hour``,
    ``3 hours``, ``4 days``, ``2 weeks``, ``3 months``, ``2 years``."""
    # Go converts each float (d.Seconds(), d.Minutes()) to int: truncation;
    # hours are rounded half up (d.Hours() + 0.5) except for the years,
    # which go back to the truncated hours.
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


# --- Go's time.Duration: ParseDuration and String ------------------------------------------

#: Go's time.unitMap, in nanoseconds (micro: "us", the micro sign and the Greek mu)
_UNIT_NS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
            "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_MAX = 1 << 63


def _time_quote(text: str) -> str:
    """The time package's own quoting in its errors (not strconv.Quote): bytes
    outside printable ASCII as ``\\xNN``, ``"`` and ``\\`` escaped."""
    out = ['"']
    for ch in text:
        if ord(ch) < 0x20 or ord(ch) >= 0x80:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogateescape"))
        else:
            out.append("\\" + ch if ch in '"\\' else ch)
    out.append('"')
    return "".join(out)


def _digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds: ``1h2m0.5s``, ``-1.5h``,
    ``500ms``, ``300us``, ``0``.  ValueError with Go's message otherwise
    (``time: invalid duration "x"``, ``time: missing unit in duration "10"``,
    ``time: unknown unit "d" in duration "1d"``)."""
    invalid = f"time: invalid duration {_time_quote(text)}"
    s, neg = text, False
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(invalid)
    total = 0
    while s:
        if not (s[0] == "." or _digit(s[0])):
            raise ValueError(invalid)
        i = 0
        while i < len(s) and _digit(s[i]):
            i += 1
        whole = int(s[:i]) if i else 0
        if whole > _MAX:
            raise ValueError(invalid)
        pre, s = i > 0, s[i:]
        frac, scale, post = 0, 1.0, False
        if s[:1] == ".":
            s = s[1:]
            j, overflow = 0, False
            while j < len(s) and _digit(s[j]):
                # Go keeps the digits that fit in 63 bits and skips the rest
                if not overflow:
                    nxt = frac * 10 + int(s[j])
                    if frac > (_MAX - 1) // 10 or nxt > _MAX:
                        overflow = True
                    else:
                        frac, scale = nxt, scale * 10
                j += 1
            post, s = j > 0, s[j:]
        if not pre and not post:
            raise ValueError(invalid)
        i = 0
        while i < len(s) and not (s[i] == "." or _digit(s[i])):
            i += 1
        if i == 0:
            raise ValueError(f"time: missing unit in duration {_time_quote(text)}")
        unit, s = s[:i], s[i:]
        if unit not in _UNIT_NS:
            raise ValueError(f"time: unknown unit {_time_quote(unit)} in duration "
                             f"{_time_quote(text)}")
        size = _UNIT_NS[unit]
        if whole > _MAX // size:
            raise ValueError(invalid)
        value = whole * size
        if frac:
            # as Go: float64 for the fraction, then truncated
            value += int(float(frac) * (float(size) / scale))
            if value > _MAX:
                raise ValueError(invalid)
        total += value
        if total > _MAX:
            raise ValueError(invalid)
    if neg:
        return -total
    if total > _MAX - 1:
        raise ValueError(invalid)
    return total


def duration_string(ns: int) -> str:
    """Go's time.Duration.String: ``0s``, ``1.5s``, ``500ms``, ``42.1µs``,
    ``2m0s``, ``1h0m0s``, ``-3s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = -ns if ns < 0 else ns
    if u < 1_000_000_000:
        for unit, size, digits in (("ns", 1, 0), ("µs", 1_000, 3), ("ms", 1_000_000, 6)):
            if u < size * 1000:
                whole, frac = divmod(u, size)
                text = str(whole)
                if frac:
                    text += "." + f"{frac:0{digits}d}".rstrip("0")
                return sign + text + unit
    secs, frac = divmod(u, 1_000_000_000)
    hours, rest = divmod(secs, 3600)
    minutes, seconds = divmod(rest, 60)
    text = str(seconds)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    text += "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text
