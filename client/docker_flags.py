"""Command-line flags parsed the way docker's CLI (cobra + pflag) parses them.

argparse would cost an import per run and parses differently from docker:
pflag accepts ``-it``, ``-eFOO=1``, ``-e=FOO``, ``--flag=false``, stops at the
first positional argument for ``run``/``exec`` (so the container's own flags
are left alone), and reports ``unknown flag: --x`` with exit status 125.
"""

import sys

BOOL, STR, INT, LIST = "bool", "string", "int", "list"


class FlagError(Exception):
    """A flag the command does not know, or a flag missing its value (exit 125)."""


class UsageError(Exception):
    """Wrong number of positional arguments (docker exits 1 for those)."""


class Flag:
    """One flag: its long name, optional one-letter short name, kind and help."""

    __slots__ = ("long", "short", "kind", "default", "help", "dest", "hidden", "metavar")

    def __init__(self, long, short=None, kind=BOOL, default=None, help="", dest=None,
                 hidden=False, metavar=None):
        self.long = long
        self.short = short
        self.kind = kind
        if default is None:
            default = {BOOL: False, STR: "", INT: 0, LIST: None}[kind]
        self.default = default
        self.help = help
        self.dest = dest or long.replace("-", "_")
        self.hidden = hidden
        self.metavar = metavar


class Options:
    """Parsed flag values as attributes; ``given`` holds the dests set on the command line."""

    def __init__(self, flags):
        self.given = set()
        for f in flags:
            setattr(self, f.dest, [] if f.kind == LIST else f.default)

    def __repr__(self):
        return "Options(%r)" % {k: v for k, v in vars(self).items()}


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _set(opts, flag, value, shown):
    shown = ("-%s, --%s" % (flag.short, flag.long)) if flag.short else "--" + flag.long
    if flag.kind == BOOL:
        if value is None:
            v = True
        elif value in _TRUE:
            v = True
        elif value in _FALSE:
            v = False
        else:
            raise FlagError('invalid argument "%s" for "%s" flag: strconv.ParseBool: '
                            'parsing "%s": invalid syntax' % (value, shown, value))
        setattr(opts, flag.dest, v)
    elif flag.kind == INT:
        try:
            setattr(opts, flag.dest, int(value, 10))
        except ValueError:
            raise FlagError('invalid argument "%s" for "%s" flag: strconv.ParseInt: '
                            'parsing "%s": invalid syntax' % (value, shown, value)) from None
    elif flag.kind == LIST:
        getattr(opts, flag.dest).append(value)
    else:
        setattr(opts, flag.dest, value)
    opts.given.add(flag.dest)


def parse(argv, flags, interspersed=True):
    """Parse *argv* against *flags*; return (Options, positional arguments).

    With ``interspersed=False`` parsing stops at the first positional argument,
    as for ``docker run IMAGE CMD --its-own-flags``.  ``--help`` raises
    ``HelpRequested``.
    """
    by_long = {f.long: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    opts = Options(flags)
    args = []
    i = 0
    n = len(argv)
    while i < n:
        a = argv[i]
        i += 1
        if a == "--":
            args.extend(argv[i:])
            break
        if not a.startswith("-") or a == "-":
            args.append(a)
            if not interspersed:
                args.extend(argv[i:])
                break
            continue
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            if name == "help" and "help" not in by_long:
                raise HelpRequested()
            flag = by_long.get(name)
            if flag is None:
                raise FlagError("unknown flag: --%s" % name)
            if eq:
                _set(opts, flag, value, name)
            elif flag.kind == BOOL:
                _set(opts, flag, None, name)
            elif i < n:
                _set(opts, flag, argv[i], name)
                i += 1
            else:
                raise FlagError("flag needs an argument: --%s" % name)
            continue
        # one or more shorthand flags: -it, -eFOO=1, -e=FOO, -e FOO
        shorts = a[1:]
        while shorts:
            c = shorts[0]
            flag = by_short.get(c)
            if flag is None:
                if c == "h" and "help" not in by_long:
                    raise HelpRequested()
                raise FlagError("unknown shorthand flag: '%s' in -%s" % (c, a[1:]))
            rest = shorts[1:]
            if rest.startswith("="):
                _set(opts, flag, rest[1:], flag.long)
                break
            if flag.kind == BOOL:
                _set(opts, flag, None, flag.long)
                shorts = rest
                continue
            if rest:
                _set(opts, flag, rest, flag.long)
            elif i < n:
                _set(opts, flag, argv[i], flag.long)
                i += 1
            else:
                raise FlagError("flag needs an argument: '%s' in -%s" % (c, c))
            break
    return opts, args


class HelpRequested(Exception):
    """``--help`` was given: print the command's help and exit 0."""


def _wrap(text, width):
    words = text.split()
    lines, cur = [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = (cur + " " + w) if cur else w
    if cur:
        lines.append(cur)
    return lines or [""]


def render_help(usage, description, flags, aliases=None):
    """Help text laid out like cobra's (usage, description, aliases, options)."""
    out = ["", "Usage:  " + usage, "", description, ""]
    if aliases:
        out += ["Aliases:", "  " + aliases, ""]
    shown = [f for f in flags if not f.hidden]
    if shown:
        out.append("Options:")
        left = []
        for f in shown:
            s = ("  -%s, " % f.short) if f.short else "      "
            s += "--" + f.long
            if f.kind != BOOL:
                s += " " + (f.metavar or f.kind)
            left.append(s)
        width = max(len(s) for s in left) + 3
        for s, f in zip(left, shown):
            text = f.help
            if f.kind == INT and f.default not in (0, None):
                text += " (default %s)" % f.default
            elif f.kind == STR and f.default:
                text += ' (default "%s")' % f.default
            lines = _wrap(text, max(30, 80 - width))
            out.append(s.ljust(width) + lines[0])
            out.extend(" " * width + ln for ln in lines[1:])
    out.append("")
    return "\n".join(out)


def stderr(msg):
    """Write *msg* and a newline to stderr."""
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()
