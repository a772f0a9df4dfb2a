"""Layer decompression by sniffing, with a digest of the uncompressed bytes.

Layers arrive gzip'd (most registries), zstd'd (newer OCI images; needs the
optional ``zstandard`` module), bzip2'd or xz'd (``docker load`` accepts
both), or plain.  The media type is not trusted: the first bytes decide, as
in containerd's ``compression.DecompressStream``.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
from typing import BinaryIO

from pallet.core.errors import InvalidArgument

_CHUNK = 1 << 20


class HashingReader:
    """Reads a stream, hashing and counting every byte handed out."""

    def __init__(self, raw):
        self._raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


class _Prefixed:
    """A stream with a few already-read bytes put back in front."""

    def __init__(self, head: bytes, raw):
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                out, self._head = self._head + self._raw.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            if len(out) < n:
                out += self._raw.read(n - len(out))
            return out
        return self._raw.read(n)


def detect_compression(head: bytes) -> str:
    """``gzip``, ``zstd``, ``bzip2``, ``xz`` or ``none`` from a stream's first bytes."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return "none"


def decompressed(stream: BinaryIO):
    """A reader of the uncompressed bytes of a (maybe compressed) stream."""
    head = stream.read(6)
    kind = detect_compression(head)
    raw = _Prefixed(head, stream)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, "rb")
    if kind == "xz":
        return lzma.LZMAFile(raw, "rb")
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise InvalidArgument("zstd-compressed layer: the zstandard module is not "
                                  "installed") from None
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw
