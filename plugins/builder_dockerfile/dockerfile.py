"""Reading a Dockerfile into lines of instructions (the builder's parser).

* parser directives (``# escape=``` ``, ``# syntax=...``, accepted and
  ignored) are only looked for before the first other line, each once;
* a line ending in the escape token continues on the next one; comment
  lines and blank lines inside a continuation are skipped;
* the first word is the instruction, then come ``--flags``, then the
  arguments, split the way each instruction wants them (JSON arrays, words
  with quotes kept, key=value pairs, the rest of the line);
* ``RUN``, ``COPY`` and ``ADD`` may carry heredocs (``<<EOF``, ``<<-EOF``
  stripping leading tabs, ``<<'EOF'`` not expanded): their bodies are the
  lines that follow, up to the terminator.

Unknown instructions are kept here and refused when the instructions are
read (:mod:`.instructions`), with the line number, as dockerd does.
"""
from __future__ import annotations

import json
import re

import attrs

from pallet.core.errors import InvalidArgument

from pallet.plugins.builder_dockerfile.shell import Lex

_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_DIRECTIVES = ("escape", "syntax")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
HEREDOC_INSTRUCTIONS = ("run", "copy", "add")


class ParseError(InvalidArgument):
    """A Dockerfile that cannot be read; ``line`` is where (1-based)."""

    def __init__(self, message: str, line: int = 0):
        super().__init__(message)
        self.line = line


@attrs.frozen
class Heredoc:
    """A here-document: its name (the terminator), body, ``<<-`` and whether
    its content is expanded (an unquoted name)."""

    name: str
    content: str = ""
    chomp: bool = False
    expand: bool = True

    @property
    def data(self) -> str:
        """The body, leading tabs stripped for ``<<-``."""
        if not self.chomp:
            return self.content
        return "".join(line.lstrip("\t") for line in self.content.splitlines(True))


@attrs.frozen
class Node:
    """One instruction line: ``cmd`` lower case, ``original`` its text (the
    continuation lines joined), ``flags`` the ``--flag[=value]`` words,
    ``args`` as the instruction's argument parser split them, ``json`` when
    they came from a JSON array; ``sub`` is ONBUILD's trigger."""

    cmd: str
    original: str
    flags: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    json: bool = False
    start: int = 0
    end: int = 0
    heredocs: tuple[Heredoc, ...] = ()
    sub: "Node | None" = None


@attrs.frozen
class Parsed:
    """A whole Dockerfile: its instruction lines, escape token and warnings."""

    nodes: tuple[Node, ...]
    escape: str = "\\"
    warnings: tuple[str, ...] = ()


# --- argument parsers ----------------------------------------------------------------------------

def _words(line: str, escape: str, *, flags: bool) -> tuple[list[str], str]:
    """Blank-separated words of ``line`` with quotes.

    ``flags=False`` (dockerd's parseWords, for ARG, ENV and LABEL): quotes
    and escapes stay in the words, the escape token is ``escape``, and a
    single quote escapes nothing.  ``flags=True`` (extractBuilderFlags): only
    the leading ``--`` words are taken, quotes and backslashes are removed,
    ``--`` alone ends them; the rest of the line is returned too.
    """
    keep = not flags
    words: list[str] = []
    word = ""
    phase = "space"
    quote = ""
    blank_ok = False
    i, n = 0, len(line)
    while i <= n:
        ch = line[i] if i < n else ""
        if phase == "space":
            if i == n:
                break
            if ch.isspace():
                i += 1
                continue
            if flags and (ch != "-" or i + 1 == n or line[i + 1] != "-"):
                return words, line[i:]
            phase = "word"
        if i == n:
            if (blank_ok or word) and not (flags and word == "--"):
                words.append(word)
            break
        if phase == "word":
            if ch.isspace():
                phase = "space"
                if flags and word == "--":
                    return words, line[i:]
                if blank_ok or word:
                    words.append(word)
                word, blank_ok = "", False
                i += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok, phase = ch, True, "quote"
                if not keep:
                    i += 1
                    continue
            if ch == escape:
                if i + 1 == n:
                    i += 1
                    continue  # an escape at the end of the line is dropped
                if keep:
                    word += ch
                i += 1
                ch = line[i]
            word += ch
            i += 1
            continue
        # in quotes
        if ch == quote:
            phase = "word"
            if not keep:
                i += 1
                continue
        if ch == escape and (quote != "'" or not keep):
            if i + 1 == n:
                phase = "word"
                i += 1
                continue
            if keep:
                word += ch
            i += 1
            ch = line[i]
        word += ch
        i += 1
    return words, ""


def parse_words(rest: str, escape: str) -> list[str]:
    """Words split on blanks, quotes and escapes kept in them (for ARG,
    and ENV and LABEL's ``key=value`` form)."""
    return _words(rest, escape, flags=False)[0]


def _json_array(rest: str) -> list[str] | None:
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value, _end = json.JSONDecoder().raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _maybe_json(rest: str) -> tuple[tuple[str, ...], bool]:
    if not rest:
        return (), False
    value = _json_array(rest)
    if value is not None:
        return tuple(value), True
    return (rest,), False


def _maybe_json_to_list(rest: str) -> tuple[tuple[str, ...], bool]:
    value = _json_array(rest)
    if value is not None:
        return tuple(value), True
    return _whitespace_words(rest), False


def _whitespace_words(rest: str) -> tuple[str, ...]:
    return tuple(_WHITESPACE.split(rest)) if rest else ()


def _name_val(rest: str, key: str, escape: str) -> tuple[str, ...]:
    """ENV and LABEL: ``KEY name value`` (old form) or ``name=value ...``."""
    words = parse_words(rest, escape)
    if not words:
        return ()
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise InvalidArgument(f"{key} must have two arguments")
        return (parts[0], parts[1])
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise InvalidArgument(f"Syntax error - can't find = in \"{word}\". "
                                  "Must be of the form: name=value")
        name, _, value = word.partition("=")
        out += [name, value]
    return tuple(out)


def _health(rest: str) -> tuple[tuple[str, ...], bool]:
    """HEALTHCHECK: its type word, then CMD's arguments (JSON or not)."""
    parts = rest.split(None, 1)
    if not parts:
        return (), False
    args, is_json = _maybe_json(parts[1].strip() if len(parts) > 1 else "")
    return (parts[0], *args), is_json


# --- the line parser -----------------------------------------------------------------------------

def extract_flags(line: str) -> tuple[str, list[str]]:
    """The ``--flag`` words at the start of the arguments, and the rest."""
    words, rest = _words(line, "\\", flags=True)
    return rest, words


def node_from_line(line: str, escape: str, start: int = 0, end: int = 0) -> Node:
    """One instruction line (continuations already joined) as a :class:`Node`."""
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    cmd = parts[0].lower()
    rest, flags = "", []
    if len(parts) == 2:
        rest, flags = extract_flags(parts[1])
        rest = rest.strip()
    is_json = False
    sub = None
    if cmd in ("add", "copy", "volume"):
        args, is_json = _maybe_json_to_list(rest)
    elif cmd in ("cmd", "entrypoint", "run", "shell"):
        args, is_json = _maybe_json(rest)
    elif cmd in ("env", "label"):
        args = _name_val(rest, cmd.upper(), escape)
    elif cmd == "arg":
        args = tuple(parse_words(rest, escape))
    elif cmd in ("expose", "from"):
        args = _whitespace_words(rest)
    elif cmd == "healthcheck":
        args, is_json = _health(rest)
    elif cmd == "onbuild":
        args = ()
        if rest:
            sub = node_from_line(rest, escape, start, end)
            args = (sub.cmd, *sub.args)
    elif cmd in ("maintainer", "stopsignal", "user", "workdir"):
        args = (rest,) if rest else ()
    else:
        args = (rest,) if rest else ()  # unknown: refused with its line later
    return Node(cmd, line, tuple(flags), tuple(args), is_json, start, end, sub=sub)


def heredocs_of(line: str) -> list[Heredoc]:
    """The heredoc names a RUN/COPY/ADD line opens, in order."""
    raw = Lex("\\", raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = raw.process_words(line, {})
    except InvalidArgument:
        return []
    out = []
    for word in words:
        doc = parse_heredoc(word)
        if doc is not None:
            out.append(doc)
    return out


def parse_heredoc(word: str) -> Heredoc | None:
    """``<<NAME``, ``<<-NAME``, ``<<"NAME"``... as a Heredoc (no content yet)."""
    m = _HEREDOC.match(word)
    if m is None or not m.group(3):
        return None
    rest = m.group(3)
    plain = Lex("\\", skip_unset=True)
    try:
        words = plain.process_words(rest, {})
        raw = Lex("\\", raw_quotes=True, skip_unset=True).process_words(rest, {})
    except InvalidArgument:
        return None
    if len(words) != 1 or len(raw) != 1:
        return None
    quotes = lambda w: w.count("'") + w.count('"')  # noqa: E731
    return Heredoc(words[0], chomp=m.group(2) == "-", expand=quotes(words[0]) == quotes(raw[0]))


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse(text: str | bytes) -> Parsed:
    """Read a whole Dockerfile; :class:`ParseError` names the line of a
    malformed one."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    escape = "\\"
    directives_done = False
    seen: set[str] = set()
    nodes: list[Node] = []
    warnings: list[str] = []
    i = 0
    count = len(lines)

    def directive(line: str) -> None:
        nonlocal directives_done, escape
        if directives_done:
            return
        m = _DIRECTIVE.match(line)
        if m is None or m.group(1).lower() not in _DIRECTIVES:
            directives_done = True
            return
        key = m.group(1).lower()
        if key in seen:
            raise ParseError(f"only one {key} parser directive can be used", i)
        seen.add(key)
        if key == "escape":
            if m.group(2) not in ("`", "\\"):
                raise ParseError(f"invalid escape token '{m.group(2)}' does not match ` or \\", i)
            escape = m.group(2)

    def continued(line: str) -> tuple[str, bool]:
        m = re.search(re.escape(escape) + r"[ \t]*$", line)
        if m:
            return line[:m.start()], False
        return line, True

    while i < count:
        raw = lines[i].rstrip("\r")
        i += 1
        stripped = raw.lstrip()
        directive(stripped)
        if _is_comment(stripped):
            continue
        start = i
        line, done = continued(stripped)
        if done and not line.strip():
            continue
        empty_continuation = False
        while not done and i < count:
            nxt = lines[i].rstrip("\r")
            i += 1
            directive(nxt)
            if _is_comment(nxt):
                continue
            if not nxt.strip():
                empty_continuation = True
                continue
            part, done = continued(nxt)
            line += part
        if empty_continuation:
            warnings.append("[WARNING]: Empty continuation line found in:\n    " + line)
        try:
            node = node_from_line(line, escape, start, i)
        except InvalidArgument as e:
            raise ParseError(e.message, start) from None
        if node.cmd in HEREDOC_INSTRUCTIONS and not node.json:
            docs = []
            for doc in heredocs_of(line):
                body: list[str] = []
                terminated = False
                while i < count:
                    text_line = lines[i].rstrip("\r")
                    i += 1
                    candidate = text_line.lstrip("\t") if doc.chomp else text_line
                    if candidate == doc.name:
                        terminated = True
                        break
                    body.append(text_line + "\n")
                if not terminated:
                    raise ParseError("unterminated heredoc", start)
                docs.append(attrs.evolve(doc, content="".join(body)))
            if docs:
                node = attrs.evolve(node, heredocs=tuple(docs), end=i)
        nodes.append(node)
    if not nodes:
        raise ParseError("file with no instructions", count)
    return Parsed(tuple(nodes), escape, tuple(warnings))
