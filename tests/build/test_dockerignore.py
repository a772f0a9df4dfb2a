""".dockerignore's patterns, as dockerd and the docker CLI match them."""
from __future__ import annotations

import pytest

from pallet.core.errors import InvalidArgument
from pallet.engine.build_ignore import PatternMatcher, matches, read_patterns


def test_read_patterns():
    text = "\ufeff# comment\n\n  *.log  \n!keep.log\n/abs/path\n./rel//x/\n! spaced\n"
    assert read_patterns(text) == ["*.log", "!keep.log", "abs/path", "rel/x", "!spaced"]


@pytest.mark.parametrize("patterns,path,excluded", [
    (["*.log"], "a.log", True), (["*.log"], "dir/a.log", False),
    (["*/*.log"], "dir/a.log", True), (["**/*.log"], "dir/sub/a.log", True),
    (["**/*.log"], "a.log", True), (["dir"], "dir/sub/file", True),
    (["dir/"], "dir/file", True), (["**"], "anything/at/all", True),
    (["a?c"], "abc", True), (["a?c"], "a/c", False), (["[ab]x"], "bx", True),
    (["*.log", "!keep.log"], "keep.log", False), (["*.log", "!keep.log", "keep*"],
                                                  "keep.log", True),
    (["dir", "!dir/keep"], "dir/keep", False), (["dir", "!dir/keep"], "dir/other", True),
    (["a.b"], "axb", False), (["file\\*"], "file*", True), (["file\\*"], "filex", False),
    (["Dockerfile"], "Dockerfile", True), (["docs/**/*.md"], "docs/a/b/c.md", True),
])
def test_matches(patterns, path, excluded):
    assert matches(path, patterns) is excluded


def test_exclusions_flag_and_bad_patterns():
    assert PatternMatcher(["a", "!b"]).exclusions and not PatternMatcher(["a"]).exclusions
    with pytest.raises(InvalidArgument):
        PatternMatcher(["!"])
