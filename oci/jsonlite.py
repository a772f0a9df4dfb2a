"""JSON through the C accelerator ``_json`` without importing ``json``.

``go_dumps`` writes what Go's encoding/json writes (runc's output: HTML
characters escaped, non-ASCII kept, ``MarshalIndent``'s layout).
``import json`` pulls in ``re``, and ``re`` pulls in ``enum``: together a
good part of ``pallet-runc``'s start-up, for documents (config.json, the
state, the child's messages) that the C scanner and encoder handle alone.
Errors are ValueErrors, as json's.  Without ``_json`` (another Python
implementation) this falls back to ``json``.
"""
from __future__ import annotations

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None

_WS = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Context:
    """The attributes the C scanner reads from json.JSONDecoder."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_CONSTANTS.__getitem__)
    memo: dict = {}


def _not_serializable(obj):
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


if _json is not None:
    _scan = _json.make_scanner(_Context())
    _encode = _json.make_encoder(None, _not_serializable, _json.encode_basestring_ascii, None,
                                 ": ", ", ", False, False, True)


def _scan_at(text: str, i: int):
    try:
        return _scan(text, i)
    except SystemError:
        # the C scanner reports a syntax error inside a document through
        # json.decoder.JSONDecodeError, which it finds only if json is loaded
        import json.decoder  # noqa: F401
        return _scan(text, i)


def loads(text):
    """The value of a JSON document (str or UTF-8 bytes)."""
    if _json is None:
        import json
        return json.loads(text)
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    n = len(text)
    i = 0
    while i < n and text[i] in _WS:
        i += 1
    try:
        value, end = _scan_at(text, i)
    except StopIteration as e:
        raise ValueError(f"expecting value: char {e.value}") from None
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise ValueError(f"extra data: char {end}")
    return value


def dumps(value) -> str:
    """Compact JSON text (``json.dumps`` with its default separators)."""
    if _json is None:
        import json
        return json.dumps(value)
    return "".join(_encode(value, 0))


# Go's encoding/json string escapes (encode.go, Go 1.19): \n \r \t short,
# other control characters and <, >, & as \u00XX, U+2028/9 escaped
_GO_ESCAPES = {c: "\\u%04x" % c for c in range(0x20)}
_GO_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
                    ord('"'): '\\"', ord("\\"): "\\\\", ord("<"): "\\u003c",
                    ord(">"): "\\u003e", ord("&"): "\\u0026", 0x2028: "\\u2028",
                    0x2029: "\\u2029"})


def _go_scalar(value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return '"' + value.translate(_GO_ESCAPES) + '"'
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serializable")


def go_dumps(value, indent: str | None = None, _prefix: str = "") -> str:
    """``value`` as Go's json.Marshal (``indent`` None) or MarshalIndent(v, "", indent)."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        if indent is None:
            return "{" + ",".join(_go_scalar(k) + ":" + go_dumps(v) for k, v in value.items()) + "}"
        inner = _prefix + indent
        return "{\n" + ",\n".join(inner + _go_scalar(k) + ": " + go_dumps(v, indent, inner)
                                   for k, v in value.items()) + "\n" + _prefix + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        if indent is None:
            return "[" + ",".join(go_dumps(v) for v in value) + "]"
        inner = _prefix + indent
        return "[\n" + ",\n".join(inner + go_dumps(v, indent, inner) for v in value) + \
            "\n" + _prefix + "]"
    return _go_scalar(value)


def first_value(text: str):
    """The first JSON value of ``text`` and where it ends, as Go's json.Decoder
    reads one value and leaves the rest; ValueError with Go's message."""
    n = len(text)
    i = 0
    while i < n and text[i] in _WS:
        i += 1
    if i == n:
        raise ValueError("EOF")
    try:
        if _json is None:
            import json
            return json.JSONDecoder().raw_decode(text, i)
        return _scan_at(text, i)
    except StopIteration as e:
        raise ValueError(_go_syntax_error(text, e.value, "looking for beginning of value")) \
            from None
    except ValueError as e:  # json.JSONDecodeError: its position and what it expected
        pos = getattr(e, "pos", n)
        what = getattr(e, "msg", str(e))
        context = {"Expecting ':' delimiter": "after object key",
                   "Expecting property name enclosed in double quotes":
                       "looking for beginning of object key string"}.get(what)
        if context is None and what == "Expecting ',' delimiter":
            context = "after object key:value pair" if _in_object(text, pos) \
                else "after array element"
        raise ValueError(_go_syntax_error(text, pos, context or
                                          "looking for beginning of value")) from None


def _in_object(text: str, pos: int) -> bool:
    depth = []
    in_string = escape = False
    for ch in text[:pos]:
        if in_string:
            escape = not escape and ch == "\\"
            in_string = escape or ch != '"'
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth.append(ch)
        elif ch in "]}" and depth:
            depth.pop()
    return bool(depth) and depth[-1] == "{"


def _go_syntax_error(text: str, pos: int, context: str) -> str:
    if pos >= len(text):
        return "unexpected EOF"
    for word in ("null", "true", "false") if context.endswith("of value") else ():
        if text[pos] == word[0]:
            for k, want in enumerate(word):
                got = text[pos + k:pos + k + 1]
                if not got:
                    return "unexpected EOF"
                if got != want:
                    return f"invalid character {_go_char(got)} in literal {word} (expecting " \
                           f"{_go_char(want)})"
    return f"invalid character {_go_char(text[pos])} {context}"


def _go_char(ch: str) -> str:
    """Go's quoteChar: 'x', with \\' and \\" escaped."""
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    if ch.isprintable():
        return f"'{ch}'"
    return "'" + repr(ch)[1:-1] + "'"
