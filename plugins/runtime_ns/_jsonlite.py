"""JSON through the C accelerator ``_json`` without importing ``json``.

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
        value, end = _scan(text, i)
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
