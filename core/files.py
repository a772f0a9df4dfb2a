"""Writing a state file so that a reader, or a daemon restarted after a crash,
sees the old file or the whole new one, never half of it."""
from __future__ import annotations

import json
import os


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
