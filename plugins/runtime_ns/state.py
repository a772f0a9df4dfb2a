"""The runtime's state on disk: ``<root>/<id>/state.json`` and ``exec.fifo``.

The file keeps the names of runc's libcontainer state (``init_process_pid``,
``init_process_start``, ``created``, ``cgroup_paths``, ``namespace_paths``,
``config.rootfs``, ``config.labels`` with ``bundle=``) so that tools reading
runc's state find their way; pallet's own additions sit under ``pallet``.
It is written to a temporary file and renamed, so a reader sees either the
old or the new state, never half of it.

The status is not stored but derived, as runc does: the init process is
alive (same pid *and* start time, so a recycled pid is not mistaken for it)
and not a zombie; ``exec.fifo`` still exists until ``start``; the freezer
says ``paused``.
"""
from __future__ import annotations

import os
import time

from pallet.oci import jsonlite as json

STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
OCI_VERSION = "1.0.2"

#: OCI namespace type -> (libcontainer's key in namespace_paths, /proc/<pid>/ns/ name)
_NS_NAMES = {"pid": ("NEWPID", "pid"), "network": ("NEWNET", "net"), "mount": ("NEWNS", "mnt"),
             "ipc": ("NEWIPC", "ipc"), "uts": ("NEWUTS", "uts"), "cgroup": ("NEWCGROUP", "cgroup"),
             "user": ("NEWUSER", "user"), "time": ("NEWTIME", "time")}

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def valid_id(cid: str) -> bool:
    """runc's rule for container ids: letters, digits, ``_+-.``; not . or .."""
    return (bool(cid) and cid not in (".", "..") and len(cid) <= 1024
            and all(c in _ID_CHARS for c in cid))


def now_rfc3339() -> str:
    """The current UTC time as Go's RFC3339Nano prints it (trailing zeros of
    the fraction dropped, and the dot with them if none is left)."""
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    fraction = f"{frac:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + \
        (f".{fraction}" if fraction else "") + "Z"


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a temporary file and rename(2).

    No fsync: the state lives under a tmpfs (/run) and describes processes
    that a reboot ends anyway; rename alone keeps readers from half a file.
    """
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def proc_start_time(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks, state letter) of ``pid``, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    rest = raw[raw.rindex(b")") + 2:].split()
    return int(rest[19]), rest[0].decode()


class ContainerState:
    """What the runtime remembers about one container."""

    def __init__(self, data: dict, directory: str):
        self.data = data
        self.dir = directory

    # --- construction ------------------------------------------------------------
    @classmethod
    def new(cls, directory: str, cid: str, pid: int, bundle: str, rootfs: str,
            spec: dict, cgroup_paths: dict, cgroups_created: list, owner: str = "",
            cgroup_version: int = 1) -> "ContainerState":
        started = proc_start_time(pid) if pid else None
        ns = {}
        for entry in (spec.get("linux") or {}).get("namespaces") or ():
            known = _NS_NAMES.get(entry.get("type"))
            if known:
                ns[known[0]] = entry.get("path") or f"/proc/{pid}/ns/{known[1]}"
        data = {
            "id": cid,
            "init_process_pid": pid,
            "init_process_start": started[0] if started else 0,
            "created": now_rfc3339(),
            "config": {
                "rootfs": rootfs,
                "labels": [f"bundle={bundle}"],
                "cgroups": {"path": (spec.get("linux") or {}).get("cgroupsPath", "")},
            },
            "cgroup_paths": cgroup_paths,
            "namespace_paths": ns,
            "pallet": {
                "ociVersion": spec.get("ociVersion", OCI_VERSION),
                "namespaces": list((spec.get("linux") or {}).get("namespaces") or ()),
                "bundle": bundle,
                "owner": owner,
                "annotations": spec.get("annotations") or {},
                "cgroups_created": cgroups_created,
                "cgroup_version": cgroup_version,
            },
        }
        return cls(data, directory)

    @classmethod
    def placeholder(cls, directory: str, cid: str, bundle: str, rootfs: str, spec: dict) -> "ContainerState":
        """The state while create runs: status "creating", no process yet."""
        st = cls.new(directory, cid, 0, bundle, rootfs, {"annotations": spec.get("annotations"),
                                                         "ociVersion": spec.get("ociVersion")},
                     {}, [])
        st.data["pallet"]["creating"] = os.getpid()
        return st

    @classmethod
    def load(cls, directory: str) -> "ContainerState":
        with open(os.path.join(directory, STATE_FILE), "rb") as f:
            return cls(json.loads(f.read()), directory)

    def save(self) -> None:
        write_atomic(os.path.join(self.dir, STATE_FILE), json.dumps(self.data).encode())

    # --- accessors -------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def pid(self) -> int:
        return self.data["init_process_pid"]

    @property
    def bundle(self) -> str:
        return self.data["pallet"]["bundle"]

    @property
    def cgroup_paths(self) -> dict:
        return self.data.get("cgroup_paths") or {}

    @property
    def cgroups_created(self) -> list:
        return self.data["pallet"].get("cgroups_created") or []

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, EXEC_FIFO)

    def alive(self) -> bool:
        """The init process still runs (not a zombie, not a recycled pid)."""
        info = proc_start_time(self.pid)
        if info is None:
            return False
        start, letter = info
        return start == self.data["init_process_start"] and letter not in ("Z", "X")

    @property
    def cgroup_version(self) -> int:
        return self.data["pallet"].get("cgroup_version", 1)

    @property
    def cgroup_module(self):
        """The cgroup driver the container was made with (v1 or v2 functions)."""
        if self.cgroup_version == 2:
            from pallet.plugins.runtime_ns import cgroups2
            return cgroups2
        from pallet.plugins.runtime_ns import cgroups
        return cgroups

    @property
    def creating(self) -> bool:
        """create is still at work (its process lives on)."""
        creator = self.data["pallet"].get("creating")
        return bool(creator) and proc_start_time(creator) is not None

    def status(self) -> str:
        if self.data["pallet"].get("creating"):
            return "creating" if self.creating else "stopped"
        if not self.alive():
            return "stopped"
        if self.cgroup_paths and self.cgroup_module.is_frozen(self.cgroup_paths):
            return "paused"  # runc: the freezer says FROZEN
        if os.path.exists(self.fifo):
            return "created"
        return "running"

    def oci(self) -> dict:
        """runc's ``state`` output (the OCI runtime state plus runc's extras),
        in the order of runc's containerState struct."""
        status = self.status()
        extra = self.data["pallet"]
        out = {
            "ociVersion": extra.get("ociVersion", OCI_VERSION),
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": extra["bundle"],
            "rootfs": self.data["config"]["rootfs"],
            "created": self.data["created"],
        }
        if extra.get("annotations"):
            out["annotations"] = extra["annotations"]
        out["owner"] = extra.get("owner", "")
        return out
