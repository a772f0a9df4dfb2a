"""What the store's metadata tables share: times, labels, containerd's
field-path rule and its identifiers.  Every table (content labels, images,
namespaces, leases, containers, content references, snapshots) lives in a
:class:`pallet.imagestore.sqlite.Database`."""
from __future__ import annotations

import datetime
import json
import re
import time
from typing import Mapping, Sequence

from pallet.core.errors import InvalidArgument
from pallet.imagestore.sqlite import Database  # noqa: F401  (re-exported for the store)


def now_ns() -> int:
    """The current time in nanoseconds since the epoch (what the tables store)."""
    return time.time_ns()


def ns_to_datetime(ns: int | None) -> datetime.datetime | None:
    """A stored timestamp as an aware UTC datetime (None stays None)."""
    if ns is None:
        return None
    return datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc)


def dump_labels(labels: Mapping[str, str] | None) -> str:
    """Labels as the JSON text stored in a ``labels`` column."""
    return json.dumps(dict(labels or {}), sort_keys=True)


def load_labels(text: str | None) -> dict[str, str]:
    """The labels of a ``labels`` column."""
    return json.loads(text) if text else {}


def apply_label_fieldpaths(old: Mapping[str, str], new: Mapping[str, str],
                           fieldpaths: Sequence[str] | None) -> dict[str, str]:
    """containerd's field-path rule for labels (shared by content, images, snapshots).

    No fieldpaths: ``new`` replaces everything.  ``labels``: replace all.
    ``labels.KEY``: set KEY from ``new`` or delete it when ``new`` lacks it.
    Other paths are refused.
    """
    new = dict(new or {})
    if not fieldpaths:
        return new
    out = dict(old)
    for path in fieldpaths:
        if path == "labels":
            out = dict(new)
        elif path.startswith("labels."):
            key = path[len("labels."):]
            if key in new:
                out[key] = new[key]
            else:
                out.pop(key, None)
        else:
            raise InvalidArgument(f"cannot update {path!r}: only labels can be updated")
    return out


# containerd's identifiers package: namespaces, containers and lease ids
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")


def validate_identifier(kind: str, name: str) -> None:
    """Refuse a namespace or container id containerd would refuse."""
    if not name or len(name) > 76 or not _IDENTIFIER.match(name):
        raise InvalidArgument(f"{kind} {name!r}: identifier must match "
                              f"{_IDENTIFIER.pattern} and be at most 76 characters")
