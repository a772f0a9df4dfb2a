"""Reading cgroup interface files, as every process that looks at a cgroup
does (pallet-runc's ``events --stats``, the shim's metrics, palletd's
``docker stats``): whole text, one number (``max`` and a missing file give
the default), flat-keyed ``name value`` lines (``memory.stat``,
``cpu.stat``); where cgroups are: a process's (``membership``,
``by_controller``, from ``/proc/<pid>/cgroup``), the hierarchies' mounts
(``cgroup_mounts``, ``mount_points``) and the two together, a process's
cgroup directories (``directories``); and ``warm_migration``, which gets the
kernel's wait before a process's first move between cgroups out of a
runtime's way.  Imports nothing beyond ``os``: pallet-runc's start-up uses it."""
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
        # looked up each time: a long-lived caller may have been moved since
        path = _own_procs_file()
        if path is None:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except (OSError, ValueError):
        return
    global _at_fork
    if not _at_fork:
        os.register_at_fork(after_in_child=_close_in_flight)
        _at_fork = True
    _in_flight.add(fd)
    writing = _thread.allocate_lock()
    writing.acquire()
    try:
        _thread.start_new_thread(_move, (fd, writing))
    except RuntimeError:
        _in_flight.discard(fd)
        os.close(fd)
        return
    # until the thread is at its write: a new thread waits for the GIL, up to
    # the switch interval (5 ms) behind a busy caller, and the kernel's wait
    # is to start now
    writing.acquire()


#: descriptors warm_migration's threads are writing through
_in_flight: set[int] = set()
_at_fork = False


def _move(fd: int, writing) -> None:
    try:
        writing.release()
        os.write(fd, b"0")  # 0: the writer, whole (cgroup.procs moves thread groups)
    except BaseException:  # a thread's traceback would land on the caller's stderr
        pass
    finally:
        # forgotten first: once closed, the number may be reused by the caller
        _in_flight.discard(fd)
        os.close(fd)


def _close_in_flight() -> None:
    """In a child forked meanwhile (a container's process): the parent's
    descriptors, which no thread of the child will close."""
    for fd in list(_in_flight):
        try:
            os.close(fd)
        except OSError:
            pass
    _in_flight.clear()


def _own_procs_file() -> str | None:
    """``cgroup.procs`` of the caller's own cgroup in the first hierarchy mounted
    with its root at or above it."""
    own = dict(membership())
    for kind, options, root, point in cgroup_mounts():
        if kind == "cgroup2":
            mine = own.get("")
        else:
            mine = next((p for names, p in own.items()
                         if names and set(names.split(",")) <= set(options)), None)
        if mine is None or "\\" in point:  # an escaped mount point: skip rather than decode
            continue
        if root != "/":
            if mine != root and not mine.startswith(root + "/"):
                continue
            mine = mine[len(root):]
        return point.rstrip("/") + mine.rstrip("/") + "/cgroup.procs"
    return None


def membership(pid: int | str = "self") -> list[tuple[str, str]]:
    """A process's cgroups, one (hierarchy, path) for each line of
    ``/proc/<pid>/cgroup``: the hierarchy as its comma-separated controllers
    and names (``cpu,cpuacct``, ``name=systemd``), "" for cgroup v2, and the
    path as the process sees it.  OSError when there is no such process."""
    with open(f"/proc/{pid}/cgroup", "rb") as f:
        text = f.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append((parts[1], parts[2]))
    return out


def by_controller(pid: int | str = "self") -> dict[str, str]:
    """:func:`membership` by each controller or name of a hierarchy ("" for
    cgroup v2): controller -> the process's cgroup path there."""
    out: dict[str, str] = {}
    for names, path in membership(pid):
        if not names:
            out[""] = path
        for name in names.split(","):
            if name:
                out[name] = path
    return out


_mounts: list | None = None


def cgroup_mounts() -> list[tuple[str, tuple[str, ...], str, str]]:
    """(type, super options, root, mount point) of each cgroup and cgroup2
    mount, in mountinfo's order; read once per process: the kernel takes half a
    millisecond to write mountinfo out, and hierarchies are not mounted and
    moved under a running runtime."""
    global _mounts
    if _mounts is None:
        found = []
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        for line in lines:
            left, _, right = line.partition(" - ")
            rf = right.split()
            if len(rf) < 3 or rf[0] not in ("cgroup", "cgroup2"):
                continue
            fields = left.split()
            found.append((rf[0], tuple(rf[2].split(",")), fields[3], fields[4]))
        _mounts = found
    return _mounts


def mount_points() -> dict[str, str]:
    """Controller or name (any super option of a v1 mount) -> mount point of
    the first cgroup v1 hierarchy mounted with it, and "" -> the first
    cgroup2 mount, from :func:`cgroup_mounts`."""
    out: dict[str, str] = {}
    for kind, options, _root, point in cgroup_mounts():
        if kind == "cgroup2":
            out.setdefault("", point)
            continue
        for opt in options:
            out.setdefault(opt, point)
    return out


def directories(pid: int | str = "self") -> dict[str, str]:
    """A process's cgroup directories: controller or name (as
    :func:`by_controller` keys them, "" for cgroup v2) -> its cgroup under the
    first mount point of that hierarchy (:func:`mount_points`); hierarchies
    mounted nowhere here are left out.  OSError when there is no such process."""
    points = mount_points()
    return {name: os.path.normpath(points[name] + "/" + path.lstrip("/"))
            for name, path in by_controller(pid).items() if name in points}
