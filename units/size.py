"""Sizes as docker/go-units (``size.go``) writes and reads them.

Writing: ``human_size`` (decimal units, ``1.984MB``; docker's tables use 3
significant digits, ``1.98MB``, go-units' HumanSize 4), ``bytes_size``
(binary units, ``23.54GiB``) and ``progress_bytes`` (containerd's progress
counter, ``1.5 MiB``).  Reading: ``ram_in_bytes`` (``512m``, ``1.5 GiB``).

This module imports nothing: pallet-runc's ``update`` parses its sizes with it.
"""

#: go-units' decimapAbbrs and binaryAbbrs
DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")

_BINARY_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def scaled(size: float, base: float, names: tuple[str, ...]) -> tuple[float, str]:
    """go-units' getSizeAndUnit: divide by ``base`` while the size reaches it,
    up to the last unit of ``names``; the divided size and its unit."""
    size = float(size)
    i = 0
    while size >= base and i < len(names) - 1:
        size /= base
        i += 1
    return size, names[i]


def human_size(size: float, precision: int = 4) -> str:
    """go-units' HumanSizeWithPrecision: decimal units and ``%.{precision}g``
    (``1.984MB`` at 4, go-units' HumanSize; ``1.98MB`` at 3, the precision of
    docker's ``images``, ``ps --size``, ``volumes`` and ``stats`` columns)."""
    value, unit = scaled(size, 1000.0, DECIMAL)
    return "%.*g%s" % (precision, value, unit)


def bytes_size(size: float) -> str:
    """go-units' BytesSize: binary units, 4 significant digits (``23.54GiB``)."""
    value, unit = scaled(size, 1024.0, BINARY)
    return "%.4g%s" % (value, unit)


def progress_bytes(size: float) -> str:
    """containerd's ``progress.Bytes`` (ctr's transfer counters): binary units,
    one decimal and a space (``1.5 MiB``, ``0.0 B``)."""
    value, unit = scaled(size, 1024.0, BINARY)
    return "%.1f %s" % (value, unit)


def ram_in_bytes(text: str) -> int:
    """go-units v0.4 RAMInBytes (vendored by runc 1.1 and dockerd 20.10):
    digits with dot-separated groups, one optional space, then each optional
    ``[kmgtp]``, ``i``, ``b`` in any case (``512``, ``64k``, ``1.5 GiB``);
    binary multiples.  ValueError with go-units' message otherwise:
    ``invalid size: '<text>'``, or strconv's for several dots."""
    # Written out rather than with go-units' regular expression: pallet-runc
    # must not import re, and Python's \d and $ would also take non-ASCII
    # digits and a trailing newline, which Go's do not.
    i = 0
    while i < len(text) and (text[i].isdigit() and text[i].isascii() or
                             text[i] == "." and i > 0 and text[i - 1].isdigit()):
        i += 1
    number, rest = text[:i], text[i:]
    rest = rest[1:] if rest.startswith(" ") else rest
    unit = rest[:1].lower() if rest[:1].lower() in ("k", "m", "g", "t", "p") else ""
    rest = rest[len(unit):]
    rest = rest[1:] if rest[:1] in ("i", "I") else rest
    rest = rest[1:] if rest[:1] in ("b", "B") else rest
    if not number or number.endswith(".") or rest:
        raise ValueError(f"invalid size: '{text}'")
    if number.count(".") > 1:
        # the expression matched; Go's strconv.ParseFloat then refuses it
        raise ValueError(f'strconv.ParseFloat: parsing "{number}": invalid syntax')
    return int(float(number) * _BINARY_SCALE[unit])
