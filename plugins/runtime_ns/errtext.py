"""One-line, lower-case error messages (STYLE.md rule 8), shared by every module."""
from __future__ import annotations

import os


def describe(e: BaseException) -> str:
    """An exception as one lower-case line: ``<what>: <why>``.

    The wrappers in ``linux`` already put ``<what>: <why>`` into ``strerror``;
    plain ``os`` errors get their file name and a lower-case strerror.
    """
    if isinstance(e, OSError) and e.strerror:
        if ":" in e.strerror:
            return e.strerror
        msg = e.strerror.lower()
        return f"{e.filename}: {msg}" if e.filename is not None else msg
    return str(e)


def strerror(errno_: int) -> str:
    return os.strerror(errno_).lower()
