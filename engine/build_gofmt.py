"""Go's formatting where docker writes it: ``%q`` of strings, slices, runes
and durations, ``%v`` of slices (dockerd's build history entries, so that
``docker history`` reads the same; the docker CLI's templates)."""
from __future__ import annotations

from pallet.units.duration import duration_string


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


def health_q(health: dict) -> str:
    """``%q`` of a ``*HealthConfig`` (dockerd's HEALTHCHECK history entry)."""
    return "&{%s %s %s %s %s}" % (quote_list(health.get("Test")),
                                  quote(duration_string(health.get("Interval", 0))),
                                  quote(duration_string(health.get("Timeout", 0))),
                                  quote(duration_string(health.get("StartPeriod", 0))),
                                  quote_rune(health.get("Retries", 0)))
