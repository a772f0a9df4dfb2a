"""containerd's list filters (``name==x,labels."a.b"~=^v``), parsed and matched.

Syntax (containerd ``filters`` package)::

    filters  := selector ("," selector)*     every selector must match (AND)
    selector := fieldpath [op value]         no op: the field is present
    fieldpath:= field ("." field)*           field: [A-Za-z0-9_-]+ or "quoted"
    op       := "==" | "!=" | "~="           ~= is a regular expression search
    value    := "quoted" | /regex/ | bare    bare: up to the next ","

Several filter strings given to a List call are alternatives (OR).
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

import attrs

from pallet.core.errors import InvalidArgument

#: A function giving the value of a field path of an object: ``(present, value)``.
Adaptor = Callable[[object, tuple[str, ...]], tuple[bool, str]]


@attrs.frozen
class Selector:
    fieldpath: tuple[str, ...]
    op: str | None = None
    value: str = ""

    def match(self, obj, adapt: Adaptor) -> bool:
        present, value = adapt(obj, self.fieldpath)
        if self.op is None:
            return present
        if self.op == "==":
            return present and value == self.value
        if self.op == "!=":
            return not present or value != self.value
        return present and re.search(self.value, value) is not None


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def error(self, what: str) -> InvalidArgument:
        return InvalidArgument(f"invalid filter {self.text!r}: {what} at position {self.pos}")

    def peek(self) -> str:
        return self.text[self.pos:self.pos + 1]

    def quoted(self, end: str) -> str:
        self.pos += 1
        out = []
        while True:
            c = self.peek()
            if not c:
                raise self.error("unterminated quote")
            self.pos += 1
            if c == end:
                return "".join(out)
            if c == "\\" and self.peek():
                nxt = self.peek()
                self.pos += 1
                if end == "/" and nxt != "/":
                    out.append("\\")  # keep regex escapes as they are
                out.append({"n": "\n", "t": "\t"}.get(nxt, nxt) if end != "/" else nxt)
            else:
                out.append(c)

    def field(self) -> str:
        if self.peek() == '"':
            return self.quoted('"')
        m = re.compile(r"[A-Za-z0-9_\-]+").match(self.text, self.pos)
        if not m:
            raise self.error("expected a field name")
        self.pos = m.end()
        return m.group()

    def selector(self) -> Selector:
        path = [self.field()]
        while self.peek() == ".":
            self.pos += 1
            path.append(self.field())
        op = self.text[self.pos:self.pos + 2]
        if op not in ("==", "!=", "~="):
            if self.peek() in ("", ","):
                return Selector(tuple(path))
            raise self.error("expected an operator")
        self.pos += 2
        if self.peek() == '"':
            value = self.quoted('"')
        elif self.peek() == "/":
            value = self.quoted("/")
        else:
            end = self.text.find(",", self.pos)
            end = len(self.text) if end < 0 else end
            value = self.text[self.pos:end]
            self.pos = end
        if op == "~=":
            try:
                re.compile(value)
            except re.error as e:
                raise self.error(f"bad regular expression ({e})") from None
        return Selector(tuple(path), op, value)

    def parse(self) -> tuple[Selector, ...]:
        out = [self.selector()]
        while self.peek() == ",":
            self.pos += 1
            out.append(self.selector())
        if self.pos != len(self.text):
            raise self.error("unexpected text")
        return tuple(out)


def parse(filters: Sequence[str] | str | None) -> tuple[tuple[Selector, ...], ...]:
    """Parse filter strings (OR of ANDs); an empty list matches everything."""
    if isinstance(filters, str):
        filters = [filters]
    return tuple(_Parser(f).parse() for f in (filters or ()) if f)


def select(items: Iterable, filters: Sequence[str] | str | None, adapt: Adaptor) -> list:
    """The items matching any of ``filters``."""
    parsed = parse(filters)
    if not parsed:
        return list(items)
    return [it for it in items if any(all(s.match(it, adapt) for s in group) for group in parsed)]


def labels_field(labels, path: tuple[str, ...]) -> tuple[bool, str]:
    """Adaptor helper for ``labels.KEY`` (KEY may itself contain dots when unquoted)."""
    key = ".".join(path)
    if key in labels:
        return True, labels[key]
    return False, ""
