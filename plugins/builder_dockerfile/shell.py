"""The Dockerfile's word processing: quotes, escapes and variables, as the
builder's shell lexer does it (not a shell: no globbing, no command
substitution).

* ``'...'`` is taken literally; ``"..."`` too, except ``$`` expansions and
  the escape token before ``"``, ``$`` or itself;
* outside quotes the escape token makes the next character literal;
* ``$NAME``, ``${NAME}``, ``${NAME:-word}`` (the word when unset or empty),
  ``${NAME:+word}`` (the word when set and not empty), ``${NAME:?message}``
  (an error when unset or empty); the word is processed again, so it may
  hold expansions itself; other forms are errors, as in dockerd.

Variables come from a mapping (the build's ENV, then the allowed ARGs); an
unknown one expands to nothing (or stays as written with ``skip_unset``,
which heredoc names need).
"""
from __future__ import annotations

from typing import Mapping

from pallet.core.errors import InvalidArgument

_SPECIAL = set("@*#?-$!0")


class _Scanner:
    __slots__ = ("text", "pos")

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        if self.pos >= len(self.text):
            return ""
        ch = self.text[self.pos]
        self.pos += 1
        return ch


class _Words:
    """Word splitting of the result: expansions split on blanks, quoted
    text never does."""

    def __init__(self):
        self.words: list[str] = []
        self.word = ""
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
        return self.words


class Lex:
    """A lexer with an escape token (``\\`` or the ``escape`` directive's)."""

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False,
                 raw_escapes: bool = False, skip_unset: bool = False):
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """``word`` with quotes removed and variables expanded."""
        return _Run(self, word, env).process()[0]

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """The same, split into words on unquoted blanks."""
        return _Run(self, word, env).process()[1]


class _Run:
    def __init__(self, lex: Lex, text: str, env: Mapping[str, str]):
        self.lex = lex
        self.sc = _Scanner(text)
        self.env = env
        self.source = text

    def process(self) -> tuple[str, list[str]]:
        try:
            return self._until("")
        except InvalidArgument as e:
            raise InvalidArgument(f"failed to process \"{self.source}\": {e.message}") from None

    def _until(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        sc = self.sc
        while sc.peek():
            ch = sc.peek()
            if stop and ch == stop:
                sc.next()
                return "".join(out), words.result()
            if ch == "'":
                text = self._single()
                out.append(text)
                words.add_raw(text)
            elif ch == '"':
                text = self._double()
                out.append(text)
                words.add_raw(text)
            elif ch == "$":
                text = self._dollar()
                out.append(text)
                words.add_string(text)
            else:
                ch = sc.next()
                if ch == self.lex.escape:
                    if self.lex.raw_escapes:
                        out.append(ch)
                        words.add_raw(ch)
                    ch = sc.next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                out.append(ch)
        if stop:
            raise InvalidArgument(f"unexpected end of statement while looking for "
                                  f"matching {stop}")
        return "".join(out), words.result()

    def _single(self) -> str:
        sc = self.sc
        first = sc.next()
        out = [first] if self.lex.raw_quotes else []
        while True:
            ch = sc.next()
            if not ch:
                raise InvalidArgument("unexpected end of statement while looking for "
                                      "matching single-quote")
            if ch == "'":
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def _double(self) -> str:
        sc = self.sc
        first = sc.next()
        out = [first] if self.lex.raw_quotes else []
        while True:
            ch = sc.peek()
            if not ch:
                raise InvalidArgument("unexpected end of statement while looking for "
                                      "matching double-quote")
            if ch == '"':
                sc.next()
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            ch = sc.next()
            if ch == self.lex.escape:
                nxt = sc.peek()
                if not nxt:
                    continue  # an escape at the very end is dropped
                if nxt in ('"', "$", self.lex.escape):
                    if self.lex.raw_escapes:
                        out.append(ch)
                    ch = sc.next()
            out.append(ch)

    def _name(self) -> str:
        sc = self.sc
        name = []
        while sc.peek():
            ch = sc.peek()
            if not name and ch.isdigit():
                while sc.peek() and sc.peek().isdigit():
                    name.append(sc.next())
                return "".join(name)
            if not name and ch in _SPECIAL:
                return sc.next()
            if not (ch.isalnum() or ch == "_"):
                break
            name.append(sc.next())
        return "".join(name)

    def _lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def _dollar(self) -> str:
        sc = self.sc
        sc.next()
        if sc.peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value, found = self._lookup(name)
            if not found and self.lex.skip_unset:
                return "$" + name
            return value
        sc.next()
        ch = sc.peek()
        if not ch:
            raise InvalidArgument("syntax error: missing '}'")
        if ch in "{}:":
            raise InvalidArgument("syntax error: bad substitution")
        name = self._name()
        ch = sc.next()
        if ch == "}":
            value, found = self._lookup(name)
            if not found and self.lex.skip_unset:
                return "${" + name + "}"
            return value
        if ch == ":":
            modifier = sc.next()
            try:
                word, _ = self._until("}")
            except InvalidArgument:
                if not sc.peek():
                    raise InvalidArgument("syntax error: missing '}'") from None
                raise
            value, found = self._lookup(name)
            if modifier == "+":
                if not found and self.lex.skip_unset:
                    return "${%s:%s%s}" % (name, modifier, word)
                return word if value else value
            if modifier == "-":
                if not found and self.lex.skip_unset:
                    return "${%s:%s%s}" % (name, modifier, word)
                return value or word
            if modifier == "?":
                if not found:
                    raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
                if not value:
                    raise InvalidArgument(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            raise InvalidArgument(f"unsupported modifier ({modifier}) in substitution")
        raise InvalidArgument("missing ':' in substitution")


def env_map(pairs) -> dict[str, str]:
    """``KEY=value`` strings (later ones win) as a mapping."""
    out: dict[str, str] = {}
    for item in pairs or ():
        key, _, value = item.partition("=")
        out[key] = value
    return out
