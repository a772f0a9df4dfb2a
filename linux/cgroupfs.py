"""Reading cgroup interface files, as every process that looks at a cgroup
does (pallet-runc's ``events --stats``, the shim's metrics, palletd's
``docker stats``): whole text, one number (``max`` and a missing file give
the default), flat-keyed ``name value`` lines (``memory.stat``,
``cpu.stat``); and ``warm_migration``, which gets the kernel's wait before a
process's first move between cgroups out of a runtime's way.  Imports nothing
beyond ``os``: pallet-runc's start-up uses it."""
import os


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


# --- the first move of a process between cgroups ---------------------------------------

def warm_migration() -> None:
    """Start, in a thread of its own, the wait the kernel puts on a move between cgroups.

    Writing ``cgroup.procs`` takes the global cgroup_threadgroup_rwsem for
    writing, and after a quiet spell that begins with an RCU grace period
    (percpu_down_write -> rcu_sync_enter -> synchronize_rcu): 8-20 ms here,
    more than the rest of a container's set-up.  A move that comes within
    about a grace period of the previous one skips it.  A runtime that is
    about to put a new process in its cgroups calls this first: the thread
    moves the calling process into the cgroup it is already in (the kernel
    takes the lock, nothing changes) while the caller gets on with its own
    work, so that the container process's move finds the wait paid.  It
    holds cgroup_mutex meanwhile, as any move does.  Best effort: any failure
    (no cgroupfs, a read-only one, no right to write) leaves things as they
    were.
    """
    import _thread  # not threading: that module costs more than the thread
    try:
        _thread.start_new_thread(_move_to_own_cgroup, ())
    except RuntimeError:
        pass


def _move_to_own_cgroup() -> None:
    try:
        path = _own_procs_file()
        if path is None:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")  # 0: the writer, whole (cgroup.procs moves thread groups)
        finally:
            os.close(fd)
    except BaseException:  # a thread's traceback would land on the caller's stderr
        pass


def _own_procs_file() -> str | None:
    """``cgroup.procs`` of the caller's own cgroup in the first hierarchy mounted
    with its root at or above it."""
    own = {}
    with open("/proc/self/cgroup", "rb") as f:
        for line in f.read().decode(errors="replace").splitlines():
            hid, names, path = line.split(":", 2)
            own["" if hid == "0" and not names else names] = path
    with open("/proc/self/mountinfo", "rb") as f:
        lines = f.read().decode(errors="replace").splitlines()
    for line in lines:
        left, _, right = line.partition(" - ")
        rf = right.split()
        if len(rf) < 3 or rf[0] not in ("cgroup", "cgroup2"):
            continue
        fields = left.split()
        root, point = fields[3], fields[4]
        if rf[0] == "cgroup2":
            mine = own.get("")
        else:
            opts = set(rf[2].split(","))
            mine = next((p for names, p in own.items() if names and set(names.split(",")) <= opts),
                        None)
        if mine is None or "\\" in point:  # an escaped mount point: skip rather than decode
            continue
        if root != "/":
            if mine != root and not mine.startswith(root + "/"):
                continue
            mine = mine[len(root):]
        return point.rstrip("/") + mine.rstrip("/") + "/cgroup.procs"
    return None
