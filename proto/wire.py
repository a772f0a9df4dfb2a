"""A small protobuf (proto3) wire codec for the messages a shim speaks.

pallet-shim exists once per container, so it does not load the protobuf
runtime and the generated modules (several MiB per process): the few
messages it reads and writes are declared here as field tables and encoded
by hand, byte for byte as protobuf does (proto3: default values are left
out, repeated scalars are packed, unknown fields are skipped on decoding).
``tests/shim/test_pbwire.py`` checks every declared message against the
generated classes of :mod:`pallet.proto`.

Declaring a message::

    Mount = message("containerd.types.Mount",
                    (1, "type", "string"), (2, "source", "string"),
                    (3, "target", "string"), (4, "options", "*string"))

Kinds: ``string bytes bool uint32 uint64 int32 int64 enum`` (``*`` in front:
repeated), ``map`` (map<string, string>), or a message class (``*`` form:
``("*", Cls)``).  Instances have one attribute per field; ``encode()``
serialises, ``Cls.decode(data)`` parses.
"""
from __future__ import annotations

__all__ = ["message", "Message", "DecodeError", "Any", "Timestamp", "Empty", "timestamp"]

_VARINT = {"bool", "uint32", "uint64", "int32", "int64", "enum"}


class DecodeError(ValueError):
    """The bytes are not a valid encoding of the message."""


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # negative int32/int64 take ten bytes, as protobuf writes them
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data, pos: int) -> tuple[int, int]:
    result = shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _signed(value: int, bits: int) -> int:
    value &= (1 << 64) - 1
    if bits == 32:
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >> 31 else value
    return value - (1 << 64) if value >> 63 else value


def fields(data):
    """Yield (number, wire type, value) of a serialised message."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > end:
                raise DecodeError("truncated field")
            value = bytes(data[pos:pos + size])
            pos += size
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        if pos > end or number == 0:
            raise DecodeError("truncated field")
        yield number, wire, value


class Message:
    """Base of the declared messages (see :func:`message`)."""

    __slots__ = ()
    NAME = ""
    FIELDS: tuple = ()
    _BY_NUMBER: dict = {}

    def __init__(self, **values):
        for _num, name, kind, repeated in self.FIELDS:
            if name in values:
                v = values.pop(name)
                if repeated and v is not None:
                    v = list(v)
                elif kind == "map" and v is not None:
                    v = dict(v)
                setattr(self, name, v)
            else:
                setattr(self, name, _default(kind, repeated))
        if values:
            raise TypeError(f"{self.NAME} has no field {next(iter(values))!r}")

    def __repr__(self) -> str:
        parts = []
        for _num, name, kind, repeated in self.FIELDS:
            v = getattr(self, name)
            if v != _default(kind, repeated):
                parts.append(f"{name}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and all(
            getattr(self, f[1]) == getattr(other, f[1]) for f in self.FIELDS)

    def encode(self) -> bytes:
        """The protobuf serialisation (proto3: defaults omitted)."""
        out = []
        for number, name, kind, repeated in self.FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if kind == "map":
                for k in value:
                    entry = _enc_scalar(1, "string", k) + _enc_scalar(2, "string", value[k])
                    out.append(_key(number, 2) + _varint(len(entry)) + entry)
            elif repeated:
                if kind in _VARINT:
                    if value:
                        packed = b"".join(_varint(int(v)) for v in value)
                        out.append(_key(number, 2) + _varint(len(packed)) + packed)
                else:
                    for v in value:
                        out.append(_enc_one(number, kind, v, True))
            else:
                out.append(_enc_one(number, kind, value, False))
        return b"".join(out)

    SerializeToString = encode  # so that ttrpc.Client can send these as it sends protobufs

    @classmethod
    def decode(cls, data) -> "Message":
        """Parse ``data``; unknown fields are skipped."""
        msg = cls()
        by_number = cls._BY_NUMBER
        for number, wire, value in fields(data):
            spec = by_number.get(number)
            if spec is None:
                continue
            name, kind, repeated = spec
            if kind == "map":
                if wire != 2:
                    raise DecodeError(f"{cls.NAME}.{name}: wrong wire type")
                k = v = ""
                for n, w, x in fields(value):
                    if w == 2 and n == 1:
                        k = x.decode("utf-8", "replace")
                    elif w == 2 and n == 2:
                        v = x.decode("utf-8", "replace")
                getattr(msg, name)[k] = v
            elif repeated and kind in _VARINT and wire == 2:
                pos, items = 0, getattr(msg, name)
                while pos < len(value):
                    item, pos = _read_varint(value, pos)
                    items.append(_dec_varint(kind, item))
            elif repeated:
                getattr(msg, name).append(_dec_one(cls, name, kind, wire, value))
            else:
                setattr(msg, name, _dec_one(cls, name, kind, wire, value))
        return msg

    FromString = decode

    def ParseFromString(self, data) -> None:  # noqa: N802 - the protobuf spelling
        other = self.decode(data)
        for f in self.FIELDS:
            setattr(self, f[1], getattr(other, f[1]))


def _default(kind, repeated):
    if repeated:
        return []
    if kind == "map":
        return {}
    if kind in ("string",):
        return ""
    if kind == "bytes":
        return b""
    if kind == "bool":
        return False
    if kind in _VARINT:
        return 0
    return None  # a message field: absent


def _enc_scalar(number: int, kind: str, value) -> bytes:
    if kind == "string":
        data = value.encode()
        return _key(number, 2) + _varint(len(data)) + data
    if kind == "bytes":
        return _key(number, 2) + _varint(len(value)) + bytes(value)
    return _key(number, 0) + _varint(int(value))


def _enc_one(number: int, kind, value, repeated: bool) -> bytes:
    if isinstance(kind, type):
        data = value.encode()
        return _key(number, 2) + _varint(len(data)) + data
    if not repeated and not value:
        return b""  # proto3 leaves defaults out
    return _enc_scalar(number, kind, value)


def _dec_varint(kind: str, value: int):
    if kind == "bool":
        return bool(value)
    if kind == "int32":
        return _signed(value, 32)
    if kind == "int64":
        return _signed(value, 64)
    if kind in ("uint32", "enum"):
        return value & 0xFFFFFFFF
    return value


def _dec_one(cls, name, kind, wire, value):
    if isinstance(kind, type):
        if wire != 2:
            raise DecodeError(f"{cls.NAME}.{name}: wrong wire type")
        return kind.decode(value)
    if kind in ("string", "bytes"):
        if wire != 2:
            raise DecodeError(f"{cls.NAME}.{name}: wrong wire type")
        return value.decode("utf-8", "replace") if kind == "string" else value
    if wire != 0:
        raise DecodeError(f"{cls.NAME}.{name}: wrong wire type")
    return _dec_varint(kind, value)


def message(full_name: str, *specs) -> type:
    """Declare a message: ``(number, name, kind)`` per field (see the module docstring)."""
    table = []
    for number, name, kind in specs:
        repeated = False
        if isinstance(kind, tuple):
            repeated, kind = kind[0] == "*", kind[1]
        elif isinstance(kind, str) and kind.startswith("*"):
            repeated, kind = True, kind[1:]
        if not (isinstance(kind, type) or kind in _VARINT or kind in ("string", "bytes", "map")):
            raise ValueError(f"{full_name}.{name}: unknown kind {kind!r}")
        table.append((number, name, kind, repeated))
    short = full_name.rsplit(".", 1)[-1]
    return type(short, (Message,), {
        "__slots__": tuple(t[1] for t in table), "NAME": full_name, "FIELDS": tuple(table),
        "_BY_NUMBER": {t[0]: (t[1], t[2], t[3]) for t in table}})


Empty = message("google.protobuf.Empty")
Any = message("google.protobuf.Any", (1, "type_url", "string"), (2, "value", "bytes"))
Timestamp = message("google.protobuf.Timestamp", (1, "seconds", "int64"), (2, "nanos", "int32"))


def timestamp(ns: int) -> Timestamp:
    """A Timestamp from epoch nanoseconds (0 gives the empty Timestamp)."""
    seconds, nanos = divmod(int(ns), 1_000_000_000) if ns else (0, 0)
    return Timestamp(seconds=seconds, nanos=nanos)
