"""State files written so that a reader, or a daemon restarted after a crash,
sees the old file or the whole new one, never half of it: every process of
pallet writes its small state files (pid files, records, JSON state) here."""
from __future__ import annotations

import json
import logging
import os

log = logging.getLogger("pallet.files")


def write_atomic(path: str, data: str | bytes, *, fsync: bool = True, mode: int = 0o644) -> None:
    """Write ``data`` to a temporary file beside ``path`` (fsynced unless told
    otherwise), then rename it over ``path``."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data.encode() if isinstance(data, str) else data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_json_atomic(path: str, obj, *, fsync: bool = True, **dump_options) -> None:
    """Write ``obj`` as JSON atomically (see :func:`write_atomic`)."""
    write_atomic(path, json.dumps(obj, **dump_options), fsync=fsync)


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
    """Remove ``path`` if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
