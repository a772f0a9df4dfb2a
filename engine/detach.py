"""Detach keys: the key sequence that ends an attach (or an attached exec)
while the container keeps running.  Default ``ctrl-p,ctrl-q``; ``detachKeys``
(or the exec's ``DetachKeys``) chooses another, in docker's notation: comma
separated, each a single character or ``ctrl-<x>`` (x a letter or one of
``@[\\]^_``)."""
from __future__ import annotations

from pallet.core.errors import InvalidArgument

DEFAULT = b"\x10\x11"   # ctrl-p ctrl-q


def parse_keys(spec: str | None) -> bytes:
    if not spec:
        return DEFAULT
    out = bytearray()
    for key in spec.split(","):
        k = key.strip()
        if len(k) == 1:
            out.append(ord(k))
            continue
        low = k.lower()
        if low.startswith("ctrl-") and len(k) == 6:
            ch = k[5]
            if ch.isalpha() and ch.isascii():
                out.append(ord(ch.lower()) - ord("a") + 1)
                continue
            if ch in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[ch])
                continue
        raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class EscapeFilter:
    """Passes input through until it meets the detach sequence.  Bytes that
    start the sequence are held back until it is clear whether the sequence
    follows; if it does not, they go through after all."""

    def __init__(self, keys: bytes):
        self.keys = keys
        self.held = b""
        self.detached = False

    def feed(self, data: bytes) -> bytes:
        """The bytes to forward; sets :attr:`detached` when the sequence came."""
        if not self.keys:
            return data
        out = bytearray()
        for b in data:
            if self.detached:
                break
            candidate = self.held + bytes([b])
            if self.keys.startswith(candidate):
                if candidate == self.keys:
                    self.detached = True
                    self.held = b""
                else:
                    self.held = candidate
                continue
            out += self.held
            self.held = b""
            if self.keys.startswith(bytes([b])):
                self.held = bytes([b])
            else:
                out.append(b)
        return bytes(out)
