"""containerd's filter syntax, used by the List calls, by Events.Subscribe and
by the image store's listings (the one copy of it in pallet).

``filters`` is a list of strings; an object matches when it matches any of
them.  One string is a comma-separated list of selectors that must all
match; a selector is a field path (``labels."a.b"``, ``topic``) alone (the
field is present and not empty) or followed by ``==``, ``!=`` or ``~=``
(regular expression search) and a value, bare (up to the next ``,``) or
quoted with ``"`` or ``/``.  Inside ``/.../`` only ``\\/`` is unescaped, so
that a regular expression keeps its own escapes (``/^a\\d$/``).
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

import attrs

from pallet.core.errors import InvalidArgument

#: adapt(obj, fieldpath tuple) -> (present, value as string)
Adaptor = Callable[[object, tuple], tuple]

_FIELD = re.compile(r"[A-Za-z0-9_]+")


@attrs.frozen
class Selector:
    """One ``fieldpath [op value]`` of a filter string."""

    fieldpath: tuple[str, ...]
    op: str | None = None
    value: str = ""
    pattern: re.Pattern | None = attrs.field(default=None, eq=False, repr=False)

    def match(self, obj, adapt: Adaptor) -> bool:
        present, got = adapt(obj, self.fieldpath)
        if self.op is None:
            return present and got != ""
        if self.op == "==":
            return present and got == self.value
        if self.op == "!=":
            return not present or got != self.value
        return present and self.pattern.search(got) is not None


class _Parser:
    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def error(self, what: str) -> InvalidArgument:
        return InvalidArgument(f"filter {self.text!r}: {what} at {self.pos}: invalid argument")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def quoted(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "\\" and self.pos < len(self.text):
                nxt = self.text[self.pos]
                self.pos += 1
                if quote == "/" and nxt != "/":
                    out.append("\\")  # a regular expression's own escape
                out.append(nxt)
            elif ch == quote:
                return "".join(out)
            else:
                out.append(ch)
        raise self.error("unterminated quote")

    def field(self) -> str:
        self.skip()
        if self.pos < len(self.text) and self.text[self.pos] in "\"/":
            return self.quoted()
        m = _FIELD.match(self.text, self.pos)
        if not m:
            raise self.error("expected a field name")
        self.pos = m.end()
        return m.group()

    def selector(self) -> Selector:
        path = [self.field()]
        while self.pos < len(self.text) and self.text[self.pos] == ".":
            self.pos += 1
            path.append(self.field())
        self.skip()
        op = self.text[self.pos:self.pos + 2]
        if op not in ("==", "!=", "~="):
            return Selector(tuple(path))
        self.pos += 2
        self.skip()
        if self.pos < len(self.text) and self.text[self.pos] in "\"/":
            value = self.quoted()
        else:
            end = self.text.find(",", self.pos)
            end = len(self.text) if end < 0 else end
            value = self.text[self.pos:end].strip()
            self.pos = end
        pattern = None
        if op == "~=":
            try:
                pattern = re.compile(value)
            except re.error as e:
                raise self.error(f"bad regular expression ({e})") from None
        return Selector(tuple(path), op, value, pattern)

    def parse(self) -> tuple[Selector, ...]:
        selectors = [self.selector()]
        self.skip()
        while self.pos < len(self.text):
            if self.text[self.pos] != ",":
                raise self.error("expected ','")
            self.pos += 1
            selectors.append(self.selector())
            self.skip()
        return tuple(selectors)


def parse(filters: Sequence[str] | str | None) -> tuple[tuple[Selector, ...], ...]:
    """Parse filter strings (OR of ANDs; empty strings are ignored)."""
    if isinstance(filters, str):
        filters = [filters]
    return tuple(_Parser(f).parse() for f in (filters or ()) if f.strip())


def matches(parsed, obj, adapt: Adaptor) -> bool:
    """Whether ``obj`` matches parsed filters (no filter matches everything)."""
    if not parsed:
        return True
    return any(all(s.match(obj, adapt) for s in conj) for conj in parsed)


def select(items: Iterable, filters: Sequence[str] | str | None, adapt: Adaptor) -> list:
    """The items matching any of ``filters``."""
    parsed = parse(filters)
    return [i for i in items if matches(parsed, i, adapt)]


def labels_field(labels, rest: tuple) -> tuple:
    """Adapt ``labels.<key>`` (the key may itself contain dots)."""
    key = ".".join(rest)
    if key in labels:
        return True, labels[key]
    return False, ""
