"""Reading cgroup interface files, as every process that looks at a cgroup
does (pallet-runc's ``events --stats``, the shim's metrics, palletd's
``docker stats``): whole text, one number (``max`` and a missing file give
the default), flat-keyed ``name value`` lines (``memory.stat``,
``cpu.stat``).  Imports nothing: pallet-runc's start-up reads with it."""


def read(path: str) -> str:
    """The file's text."""
    with open(path) as f:
        return f.read()


def read_int(path: str, default: int = 0) -> int:
    """A single-value file (``memory.max``, ``pids.current``); ``default`` for
    ``max``, a missing file or anything else that is not a number."""
    try:
        text = read(path).strip()
        return default if text == "max" else int(text)
    except (OSError, ValueError):
        return default


def read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file (``user 12``, one pair a line) as a dict; lines that
    are not a name and a number are skipped, a missing file is empty."""
    out = {}
    try:
        text = read(path)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out
