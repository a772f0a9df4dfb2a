"""The Dockerfile parser, instructions and word processing: pure logic, as
dockerd 20.10's builder reads them (messages included), plus BuildKit's
heredocs and RUN --mount."""
from __future__ import annotations

import pytest

from pallet.core.errors import InvalidArgument
from pallet.plugins.builder_dockerfile import dockerfile as D
from pallet.engine import build_gofmt as gofmt
from pallet.units.duration import duration_string, parse_go_duration
from pallet.plugins.builder_dockerfile import instructions as I
from pallet.plugins.builder_dockerfile.shell import Lex


def stages(text):
    return I.parse_stages(D.parse(text))


def err(text) -> str:
    with pytest.raises(InvalidArgument) as e:
        stages(text)
    return e.value.message


# --- lines ------------------------------------------------------------------------------

def test_continuations_comments_and_blank_lines():
    p = D.parse("FROM a\n\n# c\nRUN one \\\n  # inside\n\n  two\nCMD x\n")
    assert [n.cmd for n in p.nodes] == ["from", "run", "cmd"]
    run = p.nodes[1]
    assert run.args == ("one   two",) and (run.start, run.end) == (4, 7)
    assert p.warnings and "Empty continuation line" in p.warnings[0]


def test_escape_directive_and_syntax():
    p = D.parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM a\nRUN dir c:\\ `\n  && x\n")
    assert p.escape == "`"
    assert p.nodes[1].args == ("dir c:\\   && x",)
    # a directive after an instruction, a comment or a blank line is a comment
    assert D.parse("FROM a\n# escape=`\nRUN a \\\n b\n").escape == "\\"
    assert D.parse("\n# escape=`\nFROM a\n").escape == "\\"
    with pytest.raises(D.ParseError) as e:
        D.parse("# escape=x\nFROM a\n")
    assert e.value.message == "invalid escape token 'x' does not match ` or \\"
    with pytest.raises(D.ParseError) as e:
        D.parse("# escape=`\n# escape=\\\nFROM a\n")
    assert e.value.message == "only one escape parser directive can be used"


def test_bom_and_crlf():
    p = D.parse("\ufeffFROM a\r\nRUN b\r\n")
    assert [n.args for n in p.nodes] == [("a",), ("b",)]


def test_json_and_shell_forms():
    n = D.parse('FROM a\nCMD ["echo", "hi"]\nRUN [ "a" ]\nENTRYPOINT [not json\n').nodes
    assert n[1].json and n[1].args == ("echo", "hi")
    assert n[2].json and n[2].args == ("a",)
    assert not n[3].json and n[3].args == ("[not json",)
    # COPY's non-JSON form splits on blanks and keeps quotes, as dockerd does
    assert D.parse('FROM a\nCOPY "a b" c\n').nodes[1].args == ('"a', 'b"', "c")


def test_flags_are_split_before_the_arguments():
    n = D.parse("FROM a\nCOPY --from=x --chown='1:1' --link src dst\n").nodes[1]
    assert n.flags == ("--from=x", "--chown=1:1", "--link") and n.args == ("src", "dst")
    n = D.parse("FROM a\nRUN -- --not-a-flag\n").nodes[1]
    assert n.flags == () and n.args == ("--not-a-flag",)


def test_env_and_label_forms():
    n = D.parse('FROM a\nENV A=1 B="two words" C\\ D=3\nENV OLD some value\n'
                'LABEL "k 1"=v\n').nodes
    assert n[1].args == ("A", "1", "B", '"two words"', "C\\ D", "3")
    assert n[2].args == ("OLD", "some value")
    assert n[3].args == ('"k 1"', "v")
    with pytest.raises(D.ParseError):
        D.parse("FROM a\nENV A=1 B\n")


def test_heredocs():
    text = ("FROM a\nRUN <<EOF\necho one\necho two\nEOF\n"
            "COPY <<-'END' <<X /dst/\n\tliteral $A\n\tEND\nx\nX\nCMD done\n")
    n = D.parse(text).nodes
    assert [x.cmd for x in n] == ["from", "run", "copy", "cmd"]
    assert n[1].heredocs[0].name == "EOF" and n[1].heredocs[0].content == "echo one\necho two\n"
    end, x = n[2].heredocs
    assert end.chomp and not end.expand and end.data == "literal $A\n"
    assert x.expand and x.content == "x\n"
    with pytest.raises(D.ParseError) as e:
        D.parse("FROM a\nRUN <<EOF\nno end\n")
    assert e.value.message == "unterminated heredoc"
    # JSON RUN has no heredocs; CMD neither
    assert not D.parse('FROM a\nCMD cat <<EOF\n').nodes[1].heredocs


def test_no_instructions():
    with pytest.raises(D.ParseError) as e:
        D.parse("# only\n\n")
    assert e.value.message == "file with no instructions"


# --- instructions ------------------------------------------------------------------------------

def test_stages_meta_args_and_names():
    meta, st = stages("ARG A=1 B\nFROM x AS Build\nRUN a\nFROM build\nCOPY --from=build / /\n")
    assert [a.args for a in meta] == [(("A", "1"), ("B", None))]
    assert [(s.base, s.name, s.index) for s in st] == [("x", "build", 0), ("build", "", 1)]
    assert isinstance(st[1].commands[0], I.Copy) and st[1].commands[0].from_ == "build"
    assert str(st[0].commands[0]) == "RUN a"


@pytest.mark.parametrize("text,message", [
    ("FROM a\nFOO bar\n", "dockerfile parse error line 2: unknown instruction: FOO"),
    ("RUN x\n", "no build stage in current context"),
    ("FROM a b\n", "dockerfile parse error line 1: FROM requires either one or three arguments"),
    ("FROM a AS 1x\n", 'dockerfile parse error line 1: invalid name for build stage: "1x", '
     "name can't start with a number or contain symbols"),
    ("FROM a\nENV\n", "dockerfile parse error line 2: ENV requires at least one argument"),
    ("FROM a\nCOPY x\n", "dockerfile parse error line 2: COPY requires at least two arguments, "
     "but only one was provided. Destination could not be determined."),
    ("FROM a\nSHELL sh\n", "dockerfile parse error line 2: SHELL requires the arguments to be "
     "in JSON form"),
    ("FROM a\nWORKDIR\n", "dockerfile parse error line 2: WORKDIR requires exactly one "
     "argument"),
    ("FROM a\nCOPY --nope=1 a b\n", "dockerfile parse error line 2: Unknown flag: nope"),
    ("FROM a\nCOPY --from a b\n", "dockerfile parse error line 2: Missing a value on flag: from"),
    ("FROM a\nCOPY --from=x --from=y a b\n",
     "dockerfile parse error line 2: Duplicate flag specified: from"),
    ("FROM a\nCOPY --link=maybe a b\n",
     "dockerfile parse error line 2: Expecting boolean value for flag link, not: maybe"),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "dockerfile parse error line 2: Chaining ONBUILD via "
     "`ONBUILD ONBUILD` isn't allowed"),
    ("FROM a\nONBUILD FROM x\n", "dockerfile parse error line 2: FROM isn't allowed as an "
     "ONBUILD trigger"),
    ("FROM a\nHEALTHCHECK CMD\n", "dockerfile parse error line 2: Missing command after "
     "HEALTHCHECK CMD"),
    ("FROM a\nHEALTHCHECK NONE x\n", "dockerfile parse error line 2: HEALTHCHECK NONE takes "
     "no arguments"),
    ("FROM a\nHEALTHCHECK --retries=0 CMD x\n",
     "dockerfile parse error line 2: --retries must be at least 1 (not 0)"),
    ("FROM a\nHEALTHCHECK --interval=1us CMD x\n",
     'dockerfile parse error line 2: Interval "interval" cannot be less than 1ms'),
    ("FROM a\nARG =x\n", "dockerfile parse error line 2: ARG names can not be blank"),
    ("FROM a\nLABEL\n", "dockerfile parse error line 2: LABEL requires at least one argument"),
    ("FROM a\nRUN --mount=type=secret,target=/x x\n",
     'dockerfile parse error line 2: unsupported mount type "secret"'),
    ("FROM a\nCOPY --chmod=999 a b\n",
     "dockerfile parse error line 2: invalid chmod parameter: '999', must be an octal number"),
])
def test_errors_name_the_line(text, message):
    assert err(text) == message


def test_run_cmd_entrypoint_forms():
    _, st = stages('FROM a\nRUN echo $HOME\nRUN ["a", "b"]\nCMD\nENTRYPOINT\nENTRYPOINT ["x"]\n')
    run1, run2, cmd, ep, ep2 = st[0].commands
    assert run1.cmd == ("echo $HOME",) and run1.prepend_shell
    assert run2.cmd == ("a", "b") and not run2.prepend_shell
    assert cmd.cmd == () and ep.cmd is None and ep2.cmd == ("x",)


def test_healthcheck():
    _, st = stages("FROM a\nHEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s "
                   "--retries=3 CMD curl -f x || exit 1\nHEALTHCHECK NONE\n"
                   'HEALTHCHECK CMD ["probe", "-q"]\n')
    h1, h2, h3 = (c.health for c in st[0].commands)
    assert h1 == {"Test": ["CMD-SHELL", "curl -f x || exit 1"], "Interval": 90_000_000_000,
                  "Timeout": 500_000_000, "StartPeriod": 2_000_000_000, "Retries": 3}
    assert h2 == {"Test": ["NONE"]}
    assert h3 == {"Test": ["CMD", "probe", "-q"]}
    assert gofmt.health_q(h1) == ('&{["CMD-SHELL" "curl -f x || exit 1"] "1m30s" "500ms" "2s" '
                                  "'\\x03'}")


def test_copy_flags_and_heredoc_sources():
    _, st = stages("FROM a\nCOPY --chown=1:2 --chmod=640 --link <<EOF x /d/\nhello $A\nEOF\n")
    c = st[0].commands[0]
    assert (c.chown, c.chmod, c.link, c.sources, c.dest) == ("1:2", "640", True, ("x",), "/d/")
    assert c.inline == (I.InlineSource("EOF", "hello $A\n", True),)
    e = c.expanded(lambda w: w.replace("$A", "1"))
    assert e.inline[0].data == "hello 1\n"


def test_run_mounts_and_network():
    _, st = stages("FROM a\nRUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked "
                   "--mount=type=tmpfs,dst=/t,size=64m --mount=source=src,target=/s,rw "
                   "--network=none make\n")
    run = st[0].commands[0]
    cache, tmpfs, bind = run.mounts
    assert (cache.type, cache.target, cache.id, cache.sharing, cache.readonly) == \
        ("cache", "/root/.cache", "pip", "locked", False)
    assert (tmpfs.type, tmpfs.target, tmpfs.size) == ("tmpfs", "/t", 64 << 20)
    assert (bind.type, bind.source, bind.readonly) == ("bind", "src", False)
    assert run.network == "none"


def test_onbuild_keeps_the_trigger_text():
    _, st = stages("FROM a\nonbuild   RUN echo hi\n")
    assert st[0].commands[0].expression == "RUN echo hi"
    assert isinstance(I.parse_trigger("RUN echo hi"), I.Run)
    with pytest.raises(InvalidArgument):
        I.parse_trigger("RUN a\nRUN b\n")


def test_expansion_of_words():
    _, st = stages("FROM a\nENV A=$X B=${X:-d}\nCOPY $SRC ${DST}\nWORKDIR $W\n")
    env = {"X": "x", "SRC": "s", "DST": "/d", "W": "/w"}
    lex = Lex()
    e, c, w = (cmd.expanded(lambda word: lex.process_word(word, env))
               for cmd in st[0].commands)
    assert e.pairs == (("A", "x"), ("B", "x")) and c.sources == ("s",) and c.dest == "/d"
    assert w.path == "/w"


# --- words ------------------------------------------------------------------------------------

@pytest.mark.parametrize("word,expected", [
    ("$A", "1"), ("${A}", "1"), ("pre${A}post", "pre1post"), ("${A:-x}", "1"),
    ("${E:-def}", "def"), ("${U:-def}", "def"), ("${A:+alt}", "alt"), ("${E:+alt}", ""),
    ("${U:+alt}", ""), ("'$A'", "$A"), ('"$A b"', "1 b"), ("a\\ b", "a b"),
    ("${X:-${A}y}", "1y"), ('"\\$A"', "$A"), ('"a\\b"', "a\\b"), ("$", "$"),
    ("$1", ""), ("a$", "a$"), ("${A:-'q'}", "1"), ('\\"', '"'), ("'it''s'", "its"),
])
def test_process_word(word, expected):
    assert Lex().process_word(word, {"A": "1", "E": ""}) == expected


@pytest.mark.parametrize("word,message", [
    ("${A", "missing ':' in substitution"), ("${}", "syntax error: bad substitution"),
    ("${A-x}", "missing ':' in substitution"), ("${E:?must}", "E: must"),
    ("${U:?}", "U: is not allowed to be unset"), ("${A:%x}", "unsupported modifier (%) in "
                                                    "substitution"),
    ("'open", "unexpected end of statement while looking for matching single-quote"),
    ('"open', "unexpected end of statement while looking for matching double-quote"),
])
def test_process_word_errors(word, message):
    with pytest.raises(InvalidArgument) as e:
        Lex().process_word(word, {"A": "1", "E": ""})
    assert e.value.message == f'failed to process "{word}": {message}'


def test_process_words_splits_expansions_not_quotes():
    lex = Lex()
    assert lex.process_words("$P 22", {"P": "80 443"}) == ["80", "443", "22"]
    assert lex.process_words('"$P" x', {"P": "80 443"}) == ["80 443", "x"]


def test_backtick_escape():
    assert Lex("`").process_word("a` b", {}) == "a b"
    assert Lex("`").process_word("c:\\dir", {}) == "c:\\dir"


def test_raw_modes_keep_quotes_and_escapes():
    lex = Lex(raw_quotes=True, raw_escapes=True)
    assert lex.process_word("'a' \"$A\" \\x", {"A": "1"}) == "'a' \"1\" \\x"


# --- Go formatting --------------------------------------------------------------------------

def test_go_formatting():
    assert gofmt.quote_list(["/bin/sh", "-c", 'echo "hi"\n']) == \
        '["/bin/sh" "-c" "echo \\"hi\\"\\n"]'
    assert gofmt.quote_list(None) == "[]"
    assert gofmt.list_v(["/a", "/b"]) == "[/a /b]"
    assert [duration_string(d) for d in (0, 5_000_000_000, 90_000_000_000, 500_000_000, 1500,
                                         3_661_000_000_000)] == \
        ["0s", "5s", "1m30s", "500ms", "1.5µs", "1h1m1s"]
    assert gofmt.quote_rune(0) == "'\\x00'" and gofmt.quote_rune(65) == "'A'"
    assert parse_go_duration("1m30.5s") == 90_500_000_000
    with pytest.raises(InvalidArgument, match='missing unit in duration "10"'):
        I._interval("--interval", "10")
