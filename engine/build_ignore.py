""".dockerignore: which paths of a build context are left out.

The rules are dockerd's (and the docker CLI's, which applies them when it
makes the context): one pattern a line, ``#`` lines are comments, patterns
are cleaned and made relative; ``*`` and ``?`` stop at ``/``, ``**`` spans
any number of directories, ``\\`` escapes; a pattern that matches a
directory matches everything below it; ``!pattern`` takes back what an
earlier pattern excluded, and the last matching pattern decides.

Pure logic, shared by palletd's builder (which, like dockerd, only uses it
to drop the Dockerfile and .dockerignore when they are excluded) and the
``pallet build`` client (which leaves excluded files out of the context).
"""
from __future__ import annotations

import posixpath
import re

from pallet.core.errors import InvalidArgument


def read_patterns(text: str | bytes) -> list[str]:
    """The patterns of a .dockerignore file, normalised."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    out = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern.lstrip("/") or "/"
        out.append("!" + pattern if invert else pattern)
    return out


def _regexp(pattern: str) -> re.Pattern:
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch in ".$":
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append("\\" + pattern[i])
                i += 1
            else:
                out.append("\\\\")
        else:
            out.append(ch)
    out.append("$")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        raise InvalidArgument(f"syntax error in pattern: {pattern}") from None


class PatternMatcher:
    """Compiled .dockerignore patterns."""

    def __init__(self, patterns):
        self.patterns: list[tuple[bool, re.Pattern, int]] = []
        self.exclusions = False
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            p = posixpath.normpath(p)
            negative = p.startswith("!")
            if negative:
                if len(p) == 1:
                    raise InvalidArgument('illegal exclusion pattern: "!"')
                p = p[1:]
                self.exclusions = True
            self.patterns.append((negative, _regexp(p), len(p.split("/"))))

    def matches(self, path: str) -> bool:
        """Whether ``path`` (relative, '/'-separated) is excluded."""
        path = posixpath.normpath(path)
        parent = posixpath.dirname(path) or "."
        parent_dirs = parent.split("/")
        matched = False
        for negative, rx, ndirs in self.patterns:
            hit = rx.match(path) is not None
            if not hit and parent != "." and ndirs <= len(parent_dirs):
                hit = rx.match("/".join(parent_dirs[:ndirs])) is not None
            if hit:
                matched = not negative
        return matched


def matches(path: str, patterns) -> bool:
    """Whether ``path`` is excluded by ``patterns``."""
    return PatternMatcher(patterns).matches(path)
