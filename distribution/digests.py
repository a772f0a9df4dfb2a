"""Digests as the store spells them: ``sha256:<64 hex digits>``."""
from __future__ import annotations

import hashlib
import re

from pallet.core.errors import InvalidArgument

_HEX = re.compile(r"^[a-f0-9]{64}$")


def parse_digest(digest: str) -> str:
    """The hex part of a ``sha256:<hex>`` digest; anything else is refused.

    Only sha256 is supported, as in every image pallet builds or loads.
    """
    algo, sep, hexpart = (digest or "").partition(":")
    if not sep or algo != "sha256" or not _HEX.match(hexpart):
        raise InvalidArgument(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return hexpart


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
