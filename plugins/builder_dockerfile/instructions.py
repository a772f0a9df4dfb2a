"""The instructions of a Dockerfile, typed, grouped in stages.

:func:`parse_stages` turns parsed lines (:mod:`.dockerfile`) into the build
stages and the ``ARG``s before the first ``FROM``, checking each
instruction's arguments and flags with dockerd's messages.  An error names
its line: ``dockerfile parse error line 3: unknown instruction: FOO``.

Instructions whose words are expanded with the build's variables (ENV,
LABEL, ARG, ADD, COPY, EXPOSE, USER, VOLUME, WORKDIR, STOPSIGNAL) have an
:meth:`expanded` method that returns them with the words processed.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import attrs

from pallet.core.errors import InvalidArgument
from pallet.units.duration import parse_go_duration

from pallet.plugins.builder_dockerfile.dockerfile import Heredoc, Node, Parsed, parse_heredoc

Expand = Callable[[str], str]

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_\.]*$")
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
              "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


def at_least_one(name: str) -> InvalidArgument:
    return InvalidArgument(f"{name} requires at least one argument")


def exactly_one(name: str) -> InvalidArgument:
    return InvalidArgument(f"{name} requires exactly one argument")


# --- flags -----------------------------------------------------------------------------------

class Flags:
    """An instruction's ``--name[=value]`` flags, with dockerd's checks."""

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        self.kinds: dict[str, str] = {}
        self.values: dict[str, object] = {}

    def string(self, name: str, default: str = "") -> "Flags":
        self.kinds[name] = "string"
        self.values[name] = default
        return self

    def strings(self, name: str) -> "Flags":
        self.kinds[name] = "strings"
        self.values[name] = []
        return self

    def boolean(self, name: str) -> "Flags":
        self.kinds[name] = "bool"
        self.values[name] = False
        return self

    def parse(self) -> dict:
        used: set[str] = set()
        for word in self.words:
            if not word.startswith("--"):
                raise InvalidArgument(f"Arg should start with -- : {word}")
            if word == "--":
                break
            name, eq, value = word[2:].partition("=")
            kind = self.kinds.get(name)
            if kind is None:
                raise InvalidArgument(f"Unknown flag: {name}")
            if name in used and kind != "strings":
                raise InvalidArgument(f"Duplicate flag specified: {name}")
            used.add(name)
            if kind == "bool":
                if eq and not value:
                    raise InvalidArgument(f"Missing a value on flag: {name}")
                if value.lower() not in ("", "true", "false"):
                    raise InvalidArgument(f"Expecting boolean value for flag {name}, "
                                          f"not: {value}")
                self.values[name] = value.lower() != "false"
            elif not eq:
                raise InvalidArgument(f"Missing a value on flag: {name}")
            elif kind == "strings":
                self.values[name].append(value)
            else:
                self.values[name] = value
        return self.values


# --- instructions ---------------------------------------------------------------------------

@attrs.frozen
class Instruction:
    """What every instruction has: its keyword, its text (``Step N/M : text``)
    and where it starts."""

    name: str
    code: str
    line: int

    def __str__(self) -> str:
        return self.code

    def expanded(self, expand: Expand) -> "Instruction":
        return self


@attrs.frozen
class Env(Instruction):
    pairs: tuple[tuple[str, str], ...] = ()

    def expanded(self, expand):
        return attrs.evolve(self, pairs=tuple((expand(k), expand(v)) for k, v in self.pairs))


@attrs.frozen
class Label(Env):
    pass


@attrs.frozen
class Maintainer(Instruction):
    maintainer: str = ""


@attrs.frozen
class Arg(Instruction):
    #: (name, default or None)
    args: tuple[tuple[str, str | None], ...] = ()

    def expanded(self, expand):
        return attrs.evolve(self, args=tuple(
            (expand(k), None if v is None else expand(v)) for k, v in self.args))


@attrs.frozen
class ShellCommand(Instruction):
    """RUN, CMD and ENTRYPOINT: ``cmd`` as written, ``prepend_shell`` for the
    shell form (the SHELL goes in front)."""

    cmd: tuple[str, ...] | None = ()
    prepend_shell: bool = True


@attrs.frozen
class MountSpec:
    """One ``RUN --mount``: a ``cache`` directory kept across builds, a
    ``tmpfs``, or a read-only ``bind`` of the context, a stage or an image."""

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    readonly: bool = True
    id: str = ""
    sharing: str = "shared"
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int = 0


@attrs.frozen
class Run(ShellCommand):
    mounts: tuple[MountSpec, ...] = ()
    network: str = ""
    heredocs: tuple[Heredoc, ...] = ()


@attrs.frozen
class Cmd(ShellCommand):
    pass


@attrs.frozen
class Entrypoint(ShellCommand):
    pass


@attrs.frozen
class Shell(Instruction):
    shell: tuple[str, ...] = ()


@attrs.frozen
class Workdir(Instruction):
    path: str = ""

    def expanded(self, expand):
        return attrs.evolve(self, path=expand(self.path))


@attrs.frozen
class User(Instruction):
    user: str = ""

    def expanded(self, expand):
        return attrs.evolve(self, user=expand(self.user))


@attrs.frozen
class Volume(Instruction):
    volumes: tuple[str, ...] = ()

    def expanded(self, expand):
        return attrs.evolve(self, volumes=tuple(expand(v) for v in self.volumes))


@attrs.frozen
class Expose(Instruction):
    ports: tuple[str, ...] = ()

    def expanded(self, expand):
        return attrs.evolve(self, ports=tuple(expand(p) for p in self.ports))


@attrs.frozen
class StopSignal(Instruction):
    signal: str = ""

    def expanded(self, expand):
        return attrs.evolve(self, signal=expand(self.signal))


@attrs.frozen
class Healthcheck(Instruction):
    #: docker's HealthConfig: Test, Interval, Timeout, StartPeriod, Retries
    health: dict = attrs.field(factory=dict, eq=False)


@attrs.frozen
class Onbuild(Instruction):
    expression: str = ""


@attrs.frozen
class InlineSource:
    """A ``COPY <<EOF`` source: a file made from a heredoc."""

    name: str
    data: str
    expand: bool


@attrs.frozen
class Copy(Instruction):
    """COPY and ADD (``name`` says which)."""

    sources: tuple[str, ...] = ()
    dest: str = ""
    inline: tuple[InlineSource, ...] = ()
    from_: str = ""
    chown: str = ""
    chmod: str = ""
    link: bool = False

    def expanded(self, expand):
        return attrs.evolve(
            self, sources=tuple(expand(s) for s in self.sources), dest=expand(self.dest),
            chown=expand(self.chown),
            inline=tuple(attrs.evolve(i, data=expand(i.data)) if i.expand else i
                         for i in self.inline))


@attrs.frozen
class Stage:
    """A ``FROM`` and what follows it, up to the next ``FROM``."""

    base: str
    name: str
    code: str
    line: int
    platform: str = ""
    index: int = 0
    commands: tuple[Instruction, ...] = ()

    def __str__(self) -> str:
        return self.code


# --- durations (HEALTHCHECK) -----------------------------------------------------------------

def _interval(flag: str, value: str) -> int:
    if not value:
        return 0
    try:
        d = parse_go_duration(value)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
    if d == 0:
        return 0
    if d < 1_000_000:
        raise InvalidArgument(f"Interval \"{flag}\" cannot be less than 1ms")
    return d


# --- building the instructions -----------------------------------------------------------------

def _json_args(node: Node) -> list[str]:
    """The command words: JSON as given, else the line as one word."""
    if not node.args:
        return []
    if node.json:
        return list(node.args)
    return [" ".join(node.args)]


def _kvps(args: Sequence[str], name: str) -> tuple[tuple[str, str], ...]:
    if not args:
        raise at_least_one(name)
    if len(args) % 2:
        raise InvalidArgument(f"Bad input to {name}, too many arguments")
    out = []
    for i in range(0, len(args), 2):
        if not args[i]:
            raise InvalidArgument(f"{name} names can not be blank")
        out.append((args[i], args[i + 1]))
    return tuple(out)


def _mount(text: str) -> MountSpec:
    """One ``--mount`` value (comma-separated ``key=value``, BuildKit's)."""
    import csv

    fields = next(csv.reader([text]), [])
    values: dict = {"type": "bind"}
    flags = {}
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if key in ("ro", "readonly", "rw", "readwrite") and (not eq or value.lower() in
                                                             ("true", "false", "1", "0")):
            on = not eq or value.lower() in ("true", "1")
            flags["readonly"] = on if key in ("ro", "readonly") else not on
            continue
        if not eq:
            raise InvalidArgument(f"invalid field '{field}' must be a key=value pair")
        values[key] = value
    kind = values.pop("type").lower()
    if kind not in ("bind", "cache", "tmpfs"):
        raise InvalidArgument(f"unsupported mount type \"{kind}\"")
    target = values.pop("target", None) or values.pop("dst", None) or \
        values.pop("destination", None) or ""
    if not target:
        raise InvalidArgument("mount destination is required (target=)")
    spec = {"type": kind, "target": target,
            "source": values.pop("source", None) or values.pop("src", "") or "",
            "from_": values.pop("from", ""), "id": values.pop("id", ""),
            "readonly": flags.get("readonly", kind == "bind")}
    sharing = values.pop("sharing", "shared")
    if sharing not in ("shared", "private", "locked"):
        raise InvalidArgument(f"unsupported sharing value \"{sharing}\"")
    spec["sharing"] = sharing
    for key in ("mode", "uid", "gid"):
        if key in values:
            try:
                spec[key] = int(values.pop(key), 8 if key == "mode" else 10)
            except ValueError:
                raise InvalidArgument(f"invalid value for {key}") from None
    if "size" in values:
        spec["size"] = _size(values.pop("size"))
    if values:
        raise InvalidArgument(f"unexpected key '{sorted(values)[0]}' in '{text}'")
    if kind == "tmpfs" and spec["from_"]:
        raise InvalidArgument("tmpfs mounts cannot have a source")
    return MountSpec(**spec)


def _size(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)i?b?", text.strip().lower())
    if m is None:
        raise InvalidArgument(f"invalid size: {text}")
    return int(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " ")


def _copy(node: Node, name: str) -> Copy:
    args = list(node.args)
    if len(args) < 2:
        raise InvalidArgument(f"{name} requires at least two arguments, but only one was "
                              "provided. Destination could not be determined.")
    flags = Flags(node.flags).string("chown").string("chmod").boolean("link")
    if name == "COPY":
        flags.string("from")
    v = flags.parse()
    if v["chmod"] and not re.fullmatch(r"[0-7]{1,4}", v["chmod"]):
        raise InvalidArgument(f"invalid chmod parameter: {v['chmod']!r}, "
                              "must be an octal number")
    sources, inline = [], []
    docs = list(node.heredocs)
    for src in args[:-1]:
        doc = parse_heredoc(src) if docs else None
        if doc is not None:
            body = docs.pop(0)
            inline.append(InlineSource(body.name, body.data, body.expand))
        else:
            sources.append(src)
    return Copy(name, node.original.strip(), node.start, tuple(sources), args[-1],
                tuple(inline), v.get("from", ""), v["chown"], v["chmod"], v["link"])


def _run(node: Node) -> Run:
    v = Flags(node.flags).strings("mount").string("network").string("security").parse()
    if v["network"] not in ("", "default", "none", "host"):
        raise InvalidArgument(f"unsupported network mode \"{v['network']}\"")
    if v["security"] not in ("", "sandbox"):
        raise InvalidArgument("security=insecure is not allowed: it needs the "
                              "security.insecure entitlement")
    mounts = tuple(_mount(m) for m in v["mount"])
    return Run("RUN", node.original.strip(), node.start, tuple(_json_args(node)),
               not node.json, mounts, v["network"], node.heredocs)


def _healthcheck(node: Node) -> Healthcheck:
    if not node.args:
        raise at_least_one("HEALTHCHECK")
    kind = node.args[0].upper()
    rest = list(node.args[1:])
    code = node.original.strip()
    if kind == "NONE":
        if rest:
            raise InvalidArgument("HEALTHCHECK NONE takes no arguments")
        Flags(node.flags).parse()
        return Healthcheck("HEALTHCHECK", code, node.start, {"Test": ["NONE"]})
    v = Flags(node.flags).string("interval").string("timeout").string("start-period") \
        .string("retries").parse()
    if kind != "CMD":
        raise InvalidArgument(f"Unknown type \"{kind}\" in HEALTHCHECK (try CMD)")
    cmd = rest if node.json else ([" ".join(rest)] if rest else [])
    if not cmd:
        raise InvalidArgument("Missing command after HEALTHCHECK CMD")
    health: dict = {"Test": ["CMD" if node.json else "CMD-SHELL", *cmd]}
    for key, flag in (("Interval", "interval"), ("Timeout", "timeout"),
                      ("StartPeriod", "start-period")):
        d = _interval(flag, v[flag])
        if d:
            health[key] = d
    if v["retries"]:
        try:
            retries = int(v["retries"])
        except ValueError:
            raise InvalidArgument(f"strconv.ParseInt: parsing \"{v['retries']}\": "
                                  "invalid syntax") from None
        if retries < 1:
            raise InvalidArgument(f"--retries must be at least 1 (not {retries})")
        health["Retries"] = retries
    return Healthcheck("HEALTHCHECK", code, node.start, health)


def _arg(node: Node) -> Arg:
    if not node.args:
        raise at_least_one("ARG")
    Flags(node.flags).parse()
    out = []
    for word in node.args:
        if "=" in word:
            key, _, value = word.partition("=")
            if not key:
                raise InvalidArgument("ARG names can not be blank")
            out.append((key, value))
        else:
            out.append((word, None))
    return Arg("ARG", node.original.strip(), node.start, tuple(out))


def _from(node: Node) -> Stage:
    args = list(node.args)
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise InvalidArgument(f"invalid name for build stage: \"{args[2]}\", name can't "
                                  "start with a number or contain symbols")
    elif len(args) != 1:
        raise InvalidArgument("FROM requires either one or three arguments")
    v = Flags(node.flags).string("platform").parse()
    return Stage(args[0], name, node.original.strip(), node.start, v["platform"])


def _single(node: Node, name: str) -> str:
    if len(node.args) != 1:
        raise exactly_one(name)
    Flags(node.flags).parse()
    return node.args[0]


def _onbuild(node: Node) -> Onbuild:
    if not node.args:
        raise at_least_one("ONBUILD")
    Flags(node.flags).parse()
    trigger = node.args[0].strip().upper()
    if trigger == "ONBUILD":
        raise InvalidArgument("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise InvalidArgument(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original)
    return Onbuild("ONBUILD", node.original.strip(), node.start, expression)


def instruction(node: Node):
    """The typed instruction (or :class:`Stage` for FROM) of one line."""
    cmd, code, line = node.cmd, node.original.strip(), node.start
    if cmd == "from":
        return _from(node)
    if cmd in ("env", "label"):
        Flags(node.flags).parse()
        cls = Env if cmd == "env" else Label
        return cls(cmd.upper(), code, line, _kvps(node.args, cmd.upper()))
    if cmd == "maintainer":
        return Maintainer("MAINTAINER", code, line, _single(node, "MAINTAINER"))
    if cmd == "arg":
        return _arg(node)
    if cmd in ("add", "copy"):
        return _copy(node, cmd.upper())
    if cmd == "run":
        return _run(node)
    if cmd == "cmd":
        Flags(node.flags).parse()
        return Cmd("CMD", code, line, tuple(_json_args(node)), not node.json)
    if cmd == "entrypoint":
        Flags(node.flags).parse()
        args = _json_args(node)
        return Entrypoint("ENTRYPOINT", code, line, tuple(args) if args else None,
                          not node.json)
    if cmd == "shell":
        Flags(node.flags).parse()
        if not node.json:
            raise InvalidArgument("SHELL requires the arguments to be in JSON form")
        if not node.args:
            raise at_least_one("SHELL")
        return Shell("SHELL", code, line, tuple(node.args))
    if cmd == "workdir":
        return Workdir("WORKDIR", code, line, _single(node, "WORKDIR"))
    if cmd == "user":
        return User("USER", code, line, _single(node, "USER"))
    if cmd == "volume":
        Flags(node.flags).parse()
        if not node.args:
            raise at_least_one("VOLUME")
        if any(v.strip() == "" for v in node.args):
            raise InvalidArgument("VOLUME specified can not be an empty string")
        return Volume("VOLUME", code, line, tuple(v.strip() for v in node.args))
    if cmd == "expose":
        Flags(node.flags).parse()
        if not node.args:
            raise at_least_one("EXPOSE")
        return Expose("EXPOSE", code, line, tuple(node.args))
    if cmd == "stopsignal":
        return StopSignal("STOPSIGNAL", code, line, _single(node, "STOPSIGNAL"))
    if cmd == "healthcheck":
        return _healthcheck(node)
    if cmd == "onbuild":
        return _onbuild(node)
    raise InvalidArgument(f"unknown instruction: {cmd.upper()}")


def parse_error(line: int, message: str) -> InvalidArgument:
    return InvalidArgument(f"dockerfile parse error line {line}: {message}")


def parse_stages(parsed: Parsed) -> tuple[list[Arg], list[Stage]]:
    """The ARGs before the first FROM and the stages, in order."""
    if not parsed.nodes:
        raise InvalidArgument("file with no instructions")
    meta: list[Arg] = []
    stages: list[Stage] = []
    commands: list[Instruction] = []
    for node in parsed.nodes:
        try:
            item = instruction(node)
        except InvalidArgument as e:
            raise parse_error(node.start, e.message) from None
        if isinstance(item, Stage):
            if stages:
                stages[-1] = attrs.evolve(stages[-1], commands=tuple(commands))
            commands = []
            stages.append(attrs.evolve(item, index=len(stages)))
        elif not stages:
            if isinstance(item, Arg):
                meta.append(item)
                continue
            raise InvalidArgument("no build stage in current context")
        else:
            commands.append(item)
    if stages:
        stages[-1] = attrs.evolve(stages[-1], commands=tuple(commands))
    return meta, stages


def parse_trigger(expression: str, escape: str = "\\") -> Instruction:
    """An ONBUILD trigger as an instruction (one line, no FROM or ONBUILD)."""
    from pallet.plugins.builder_dockerfile.dockerfile import parse

    parsed = parse(expression)
    if len(parsed.nodes) != 1:
        raise InvalidArgument("onbuild trigger should be a single expression")
    item = instruction(parsed.nodes[0])
    if isinstance(item, Stage):
        raise InvalidArgument("FROM isn't allowed as an ONBUILD trigger")
    return item
