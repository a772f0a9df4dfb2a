"""Go's formatting where docker writes it: ``%q`` of strings, slices, runes
and durations, ``%v`` of slices (dockerd's build history entries, so that
``docker history`` reads the same; the docker CLI's templates)."""
from __future__ import annotations


def quote(s: str) -> str:
    """Go's ``strconv.Quote``."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append(f"\\x{ord(ch):02x}")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def quote_list(items) -> str:
    """``%q`` of a []string (nil or empty: ``[]``)."""
    return "[" + " ".join(quote(x) for x in items or ()) + "]"


def list_v(items) -> str:
    """``%v`` of a []string."""
    return "[" + " ".join(items or ()) + "]"


def quote_rune(n: int) -> str:
    """``%q`` of an integer: a quoted character literal."""
    specials = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v",
                39: "\\'", 92: "\\\\"}
    if n in specials:
        return f"'{specials[n]}'"
    ch = chr(n) if 0 <= n < 0x110000 else "\ufffd"
    if n < 0x20 or n == 0x7f:
        return f"'\\x{n:02x}'"
    if not ch.isprintable():
        return f"'\\u{n:04x}'"
    return f"'{ch}'"


def duration(ns: int) -> str:
    """Go's ``time.Duration.String``."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1_000_000_000:
        for unit, size in (("ns", 1), ("µs", 1_000), ("ms", 1_000_000)):
            if u < size * 1000:
                whole, frac = divmod(u, size)
                text = str(whole)
                if frac:
                    digits = f"{frac:0{len(str(size)) - 1}d}".rstrip("0")
                    text += "." + digits
                return ("-" if neg else "") + text + unit
    secs, frac = divmod(u, 1_000_000_000)
    hours, rest = divmod(secs, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{seconds}"
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    text += "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return ("-" if neg else "") + text


def health_q(health: dict) -> str:
    """``%q`` of a ``*HealthConfig`` (dockerd's HEALTHCHECK history entry)."""
    return "&{%s %s %s %s %s}" % (quote_list(health.get("Test")),
                                  quote(duration(health.get("Interval", 0))),
                                  quote(duration(health.get("Timeout", 0))),
                                  quote(duration(health.get("StartPeriod", 0))),
                                  quote_rune(health.get("Retries", 0)))
