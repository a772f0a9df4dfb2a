"""containerd's filter syntax, used by the List calls and by Events.Subscribe.

``filters`` is a list of strings; an object matches when it matches any of
them.  One string is a comma-separated list of selectors that must all
match; a selector is a field path (``labels."a.b"``, ``topic``) alone (the
field is present and not empty) or followed by ``==``, ``!=`` or ``~=``
(regular expression) and a value, bare or quoted with ``"`` or ``/``.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

from pallet.core.errors import InvalidArgument

#: adapt(obj, fieldpath tuple) -> (present, value as string)
Adaptor = Callable[[object, tuple], tuple]

_FIELD = re.compile(r"[A-Za-z0-9_]+")


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
                out.append(self.text[self.pos])
                self.pos += 1
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

    def selector(self):
        path = [self.field()]
        while self.pos < len(self.text) and self.text[self.pos] == ".":
            self.pos += 1
            path.append(self.field())
        self.skip()
        op = self.text[self.pos:self.pos + 2]
        if op not in ("==", "!=", "~="):
            return tuple(path), None, None
        self.pos += 2
        self.skip()
        if self.pos < len(self.text) and self.text[self.pos] in "\"/":
            value = self.quoted()
        else:
            end = self.text.find(",", self.pos)
            end = len(self.text) if end < 0 else end
            value = self.text[self.pos:end].strip()
            self.pos = end
        if op == "~=":
            try:
                value = re.compile(value)
            except re.error as e:
                raise self.error(f"bad regular expression ({e})") from None
        return tuple(path), op, value

    def parse(self):
        selectors = [self.selector()]
        self.skip()
        while self.pos < len(self.text):
            if self.text[self.pos] != ",":
                raise self.error("expected ','")
            self.pos += 1
            selectors.append(self.selector())
            self.skip()
        return tuple(selectors)


def parse(filters: Sequence[str] | str | None):
    """Parse filter strings (empty strings are ignored)."""
    if isinstance(filters, str):
        filters = [filters]
    return tuple(_Parser(f).parse() for f in (filters or ()) if f.strip())


def matches(parsed, obj, adapt: Adaptor) -> bool:
    """Whether ``obj`` matches parsed filters (no filter matches everything)."""
    if not parsed:
        return True
    for conj in parsed:
        ok = True
        for path, op, value in conj:
            present, got = adapt(obj, path)
            if op is None:
                ok = present and got != ""
            elif op == "==":
                ok = present and got == value
            elif op == "!=":
                ok = not present or got != value
            else:
                ok = present and value.search(got) is not None
            if not ok:
                break
        if ok:
            return True
    return False


def select(items: Iterable, filters, adapt: Adaptor) -> list:
    parsed = parse(filters)
    return [i for i in items if matches(parsed, i, adapt)]


def labels_field(labels, rest: tuple) -> tuple:
    """Adapt ``labels.<key>`` (the key may itself contain dots)."""
    key = ".".join(rest)
    if key in labels:
        return True, labels[key]
    return False, ""
