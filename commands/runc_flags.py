"""pallet-runc's command line as runc 1.1 parses it: urfave/cli v1 over Go's flag.

What scripts depend on, reproduced: flags may follow positional arguments
(urfave's argument reordering, except for ``exec`` and ``ps``, whose
arguments are a command line of their own), ``-flag`` and ``--flag`` are the
same, ``-flag=value`` and ``-flag value``, ``--`` ends the flags, booleans
take ``=false``, integers Go's literals (``0x10``, ``1_000``), the messages
of Go's flag package (``flag provided but not defined: -x``), and runc's
checks of the number of arguments.  Also here: the values of ``update``'s
flags and ``events --interval`` (Go's durations; docker's sizes are
:mod:`pallet.units.size`'s).
"""
from __future__ import annotations

#: flag kinds: b bool, s string, i int, u uint, d duration, S string list, I int list
BOOL, STRING, INT, UINT, DURATION, STRINGS, INTS = "b", "s", "i", "u", "d", "S", "I"


class UsageError(Exception):
    """Incorrect usage: urfave/cli prints "Incorrect Usage" and the help first
    (``show_help``), then the error line; exit status 1."""

    def __init__(self, message: str, show_help: bool = True, prefix: str = "Incorrect Usage: "):
        super().__init__(message)
        self.show_help = show_help
        self.prefix = prefix


class Flag:
    """One flag: its names (the first is canonical), kind, default and usage line."""

    def __init__(self, names: str, kind: str, usage: str, default=None, hidden=False):
        self.names = tuple(n.strip() for n in names.split(","))
        self.name = self.names[0]
        self.kind = kind
        self.usage = usage
        self.default = default
        self.hidden = hidden  # taken, never listed in the help

    def spellings(self) -> str:
        """``--bundle value, -b value`` as urfave's help prints it."""
        value = "" if self.kind == BOOL else " value"
        return ", ".join(("-" if len(n) == 1 else "--") + n + value for n in self.names)


class Command:
    """A command: its one-line usage, argument synopsis, flags and argument check."""

    def __init__(self, name, usage, args_usage, description, flags=(), check=None,
                 reorder=True):
        self.name = name
        self.usage = usage
        self.args_usage = args_usage
        self.description = description
        self.flags = list(flags) + [HELP]
        self.check = check            # ("exact" | "min" | "max", n) or None
        self.reorder = reorder

    def parse(self, args: list[str]) -> tuple[dict, list[str]]:
        """(values by canonical name, positional arguments) or UsageError."""
        if self.reorder:
            args = reorder(self.flags, args)
        return parse_flags(self.flags, args)


HELP = Flag("help, h", BOOL, "show help")


def _find(flags, name: str):
    for flag in flags:
        if name in flag.names:
            return flag
    return None


def reorder(flags, args: list[str]) -> list[str]:
    """urfave/cli v1.22's reorderArgs: known flags, and the word after one
    (unless it is a known flag itself: "-3" is a value), move before the other
    arguments; "--" ends that and goes first among the rest.  A boolean flag
    takes the next word along too, as urfave does."""
    moved: list[str] = []
    rest: list[str] = []
    value_next = False
    for i, arg in enumerate(args):
        if value_next and not _is_flag(flags, arg):
            value_next = False
            moved.append(arg)
        elif arg == "--":
            rest = ["--"] + rest + args[i + 1:]
            break
        elif _is_flag(flags, arg):
            moved.append(arg)
            value_next = "=" not in arg
        else:
            rest.append(arg)
    return moved + rest


def _is_flag(flags, arg: str) -> bool:
    if arg in ("-", "--") or not arg.startswith("-"):
        return False
    name = arg[2:] if arg.startswith("--") else arg[1:]
    return _find(flags, name.split("=")[0]) is not None


def parse_flags(flags, args: list[str]) -> tuple[dict, list[str]]:
    """Go's FlagSet.Parse: flags until the first non-flag or "--"; then
    urfave's check that no flag was given under two of its names."""
    values: dict = {}
    seen: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        s = args[i]
        if len(s) < 2 or s[0] != "-":
            break
        dashes = 2 if s[1] == "-" else 1
        if dashes == 2 and len(s) == 2:
            i += 1
            break
        name = s[dashes:]
        if not name or name[0] in "-=":
            raise UsageError(f"bad flag syntax: {s}")
        i += 1
        value, has_value = "", False
        if "=" in name[1:]:
            cut = name.index("=", 1)
            name, value, has_value = name[:cut], name[cut + 1:], True
        flag = _find(flags, name)
        if flag is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        if flag.kind == BOOL:
            parsed = parse_bool(value) if has_value else True
            if parsed is None:
                raise UsageError(f"invalid boolean value {go_quote(value)} for -{name}: parse error")
        else:
            if not has_value:
                if i >= len(args):
                    raise UsageError(f"flag needs an argument: -{name}")
                value, i = args[i], i + 1
            parsed = _convert(flag, value)
            if parsed is None:
                # urfave's slice flags report strconv's error, Go's flag types "parse error"
                why = f"strconv.ParseInt: parsing {go_quote(value)}: invalid syntax" \
                    if flag.kind == INTS else "parse error"
                raise UsageError(f"invalid value {go_quote(value)} for flag -{name}: {why}")
        if flag.kind in (STRINGS, INTS):
            values.setdefault(flag.name, []).append(parsed)
        else:
            values[flag.name] = parsed
        names = seen.setdefault(flag.name, [])
        if name not in names:
            names.append(name)
    for flag in flags:
        used = [n for n in flag.names if n in seen.get(flag.name, ())]
        if len(used) > 1:
            # urfave's normalizeFlags, flag by flag as declared: the second
            # form used (in the order of the flag's names), then the first; no
            # "Incorrect Usage" before it at the app level
            raise UsageError(f"Cannot use two forms of the same flag: {used[1]} {used[0]}",
                             prefix="")
    return values, args[i:]


def _convert(flag: Flag, value: str):
    if flag.kind in (STRING, STRINGS):
        return value
    if flag.kind in (INT, INTS):
        return parse_int(value)
    if flag.kind == UINT:
        n = parse_int(value)
        return n if n is not None and n >= 0 else None
    if flag.kind == DURATION:
        return parse_duration(value)
    raise AssertionError(flag.kind)


def parse_bool(text: str):
    """Go's strconv.ParseBool; None when it is not a boolean."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    return None


def parse_int(text: str):
    """Go's strconv.ParseInt(text, 0, 64): sign, 0x/0o/0b prefixes, a leading 0
    for octal, underscores between digits; None if it is not one."""
    body = text[1:] if text[:1] in "+-" else text
    if not body:
        return None
    base, digits = 10, body
    low = body[:2].lower()
    if low in ("0x", "0o", "0b"):
        base, digits = {"0x": 16, "0o": 8, "0b": 2}[low], body[2:]
    elif len(body) > 1 and body[0] == "0":
        base, digits = 8, body[1:]
    if not digits or digits.startswith("_") and base == 10 or digits.endswith("_") \
            or "__" in digits or ("_" in digits and base == 10 and body[0] == "0"):
        return None
    try:
        n = int(digits.replace("_", ""), base) if all(c.isalnum() or c == "_" for c in digits) \
            else None
    except ValueError:
        return None
    if n is None:
        return None
    n = -n if text[0] == "-" else n
    return n if -(1 << 63) <= n < (1 << 63) else None


def parse_duration(text: str):
    """Go's time.ParseDuration, in seconds (``1h2m0.5s``, ``500ms``); None if invalid."""
    from pallet.units.duration import parse_go_duration

    try:
        return parse_go_duration(text) / 1e9
    except ValueError:
        return None


def go_quote(text: str) -> str:
    """Go's %q of a string (strconv.Quote) for the text in error messages."""
    # imported when a message needs it: the module is small but start-up counts
    from pallet.engine.build_gofmt import quote

    return quote(text)


def check_args(prog: str, command: Command, args: list[str]) -> None:
    """runc's checkArgs: "Incorrect Usage." and the help, then the error."""
    if command.check is None:
        return
    kind, n = command.check
    bad = {"exact": len(args) != n, "min": len(args) < n, "max": len(args) > n}[kind]
    if bad:
        words = {"exact": "exactly", "min": "a minimum of", "max": "a maximum of"}[kind]
        raise UsageError(f'{prog}: "{command.name}" requires {words} {n} argument(s)',
                         prefix="Incorrect Usage.")


# --- update's values ------------------------------------------------------------------

def uint_value(name: str, text: str) -> int:
    """strconv.ParseUint(text, 10, 64) for update's flags, runc's message."""
    if not text.isdigit() or not text.isascii() or int(text) >= 1 << 64:
        raise ValueError(f'invalid value for {name}: strconv.ParseUint: parsing '
                         f'{go_quote(text)}: {_num_error(text)}')
    return int(text)


def int_value(name: str, text: str) -> int:
    """strconv.ParseInt(text, 10, 64) for update's flags, runc's message."""
    body = text[1:] if text[:1] in "+-" else text
    if not body.isdigit() or not body.isascii() or not -(1 << 63) <= int(text) < (1 << 63):
        raise ValueError(f'invalid value for {name}: strconv.ParseInt: parsing '
                         f'{go_quote(text)}: {_num_error(body)}')
    return int(text)


def _num_error(text: str) -> str:
    return "value out of range" if text.isdigit() and text.isascii() else "invalid syntax"
