"""Writing a state file so that a reader, or a daemon restarted after a crash,
sees the old file or the whole new one, never half of it."""
from __future__ import annotations

import json
import logging
import os

log = logging.getLogger("pallet.files")


def write_json_atomic(path: str, obj, *, fsync: bool = True, **dump_options) -> None:
    """Write ``obj`` as JSON to a temporary file beside ``path`` (fsynced unless
    told otherwise), then rename it over ``path``."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, **dump_options)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str, obj) -> None:
    """Write-temp-then-rename (atomic for readers and for a daemon crash)."""
    write_json_atomic(path, obj, fsync=False, separators=(",", ":"), sort_keys=True)


def read_json(path: str, default=None):
    """The file's JSON, ``default`` when it is missing or unreadable (logged)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable state file %s: %s", path, e)
        return default


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
