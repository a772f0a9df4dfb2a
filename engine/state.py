"""Containers as palletd keeps them: one ``config.v2.json`` per container
(docker's inspect shape, written atomically) and the in-memory index by id
and name, rebuilt from disk when palletd starts."""
from __future__ import annotations

import json
import logging
import os
import re
import time

from pallet.core.errors import AlreadyExists, InvalidArgument, NotFound
from pallet.core.files import write_json_atomic
from pallet.units.duration import human_duration

log = logging.getLogger("pallet.api_rest.state")

ZERO_TIME = "0001-01-01T00:00:00Z"
_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_HEX = re.compile(r"^[0-9a-f]+$")


def now_rfc3339() -> str:
    from pallet.engine.logs import rfc3339nano

    return rfc3339nano()


class Container:
    """One container: ``data`` is what ``config.v2.json`` holds (docker's
    inspect shape); the rest is live state that exists while palletd runs."""

    def __init__(self, data: dict, directory: str):
        self.data = data
        self.dir = directory
        # live state
        self.log = None            # logs.ContainerLog while the task runs
        self.io = None             # the FIFO readers while the task runs
        self.exit_waiters: list = []   # futures resolved with the exit code at the next exit
        self.removed_waiters: list = []
        self.op_lock = None        # asyncio.Lock serialising start/stop/remove
        self.wait_task = None
        self.removing = False
        self.restart_task = None   # the pending restart of a restart policy
        self.restart_timeout = 0.0 # the restart policy's current backoff (seconds)
        self.exit_on_next = False  # kill/stop asked: no restart at this exit
        self.cgroups: dict = {}    # controller -> cgroup dir while the task runs
        self.volumes: list = []    # volumes mounted for the running task
        self.health_task = None    # the health check loop while it runs (health.py)
        self.snapshot_mounts = None  # the rootfs mounts from create, for the first start
        self.oom_killed = False    # containerd reported an OOM kill in the running task
        self.task_may_exist = True # a containerd task may be left to delete

    @property
    def id(self) -> str:
        return self.data["Id"]

    @property
    def name(self) -> str:
        return self.data["Name"].lstrip("/")

    @property
    def state(self) -> dict:
        return self.data["State"]

    @property
    def running(self) -> bool:
        """A task exists (running or paused); inspect's ``Running`` is also true
        while a restart policy waits, as dockerd shows it."""
        return self.state.get("Status") in ("running", "paused")

    @property
    def paused(self) -> bool:
        return self.state.get("Status") == "paused"

    @property
    def tty(self) -> bool:
        return bool(self.data["Config"].get("Tty"))

    @property
    def log_path(self) -> str:
        return self.data["LogPath"]

    def save(self) -> None:
        write_json_atomic(os.path.join(self.dir, "config.v2.json"), self.data)

    def set_running(self, pid: int) -> None:
        self.data["State"].update({
            "Status": "running", "Running": True, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": pid, "ExitCode": 0, "Error": "",
            "StartedAt": now_rfc3339(), "FinishedAt": ZERO_TIME})

    def set_exited(self, code: int, error: str = "", *, oom: bool = False) -> None:
        self.data["State"].update({
            "Status": "exited", "Running": False, "Paused": False, "Restarting": False,
            "Pid": 0, "ExitCode": code, "Error": error, "FinishedAt": now_rfc3339(),
            "OOMKilled": oom})

    def set_restarting(self) -> None:
        self.data["State"].update({"Status": "restarting", "Running": True, "Paused": False,
                                   "Restarting": True, "Pid": 0})

    def set_paused(self, paused: bool) -> None:
        self.data["State"].update({"Status": "paused" if paused else "running",
                                   "Paused": paused})

    def summary(self) -> dict:
        """Docker's ContainerSummary (``GET /containers/json``)."""
        cfg = self.data["Config"]
        args = [self.data.get("Path", "")] + list(self.data.get("Args") or [])
        command = " ".join(a for a in args if a is not None).strip()
        return {
            "Id": self.id,
            "Names": ["/" + self.name],
            "Image": cfg.get("Image", ""),
            "ImageID": self.data.get("Image", ""),
            "Command": command,
            "Created": int(self.data.get("CreatedUnix", 0)),
            "Ports": [],
            "Labels": cfg.get("Labels") or {},
            "State": self.state.get("Status", "created"),
            "Status": status_text(self.state),
            "HostConfig": {"NetworkMode": self.data["HostConfig"].get("NetworkMode") or "default"},
            "NetworkSettings": {"Networks": (self.data.get("NetworkSettings") or {}).get(
                "Networks") or {}},
            "Mounts": _mounts(self.data),
        }


def _mounts(data: dict) -> list:
    from pallet.engine.mounts import inspect_mounts

    return inspect_mounts(data.get("MountPoints") or [])


def status_text(state: dict) -> str:
    """The STATUS column of ``docker ps``: ``Up 3 seconds``, ``Exited (0) 5 seconds ago``."""
    from pallet.engine.logs import parse_time

    status = state.get("Status", "created")
    if status == "running":
        up = "Up " + human_duration(_since(state.get("StartedAt"), parse_time))
        health = (state.get("Health") or {}).get("Status")
        if health:
            return f"{up} (health: starting)" if health == "starting" else f"{up} ({health})"
        return up
    if status == "paused":
        return "Up " + human_duration(_since(state.get("StartedAt"), parse_time)) + " (Paused)"
    if status == "restarting":
        return (f"Restarting ({state.get('ExitCode', 0)}) "
                f"{human_duration(_since(state.get('FinishedAt'), parse_time))} ago")
    if status == "exited":
        finished = state.get("FinishedAt")
        if not finished or finished == ZERO_TIME:
            return f"Exited ({state.get('ExitCode', 0)})"
        return (f"Exited ({state.get('ExitCode', 0)}) "
                f"{human_duration(_since(finished, parse_time))} ago")
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    return "Created"


def _since(stamp, parse_time) -> float:
    try:
        return max(0.0, time.time() - parse_time(stamp) / 1e9)
    except (TypeError, ValueError):
        return 0.0


class ContainerStore:
    """Every container palletd knows, by id and by name."""

    def __init__(self, paths):
        self.paths = paths
        self.root = os.path.dirname(paths.container_dir("x"))
        self.by_id: dict[str, Container] = {}
        self.names: dict[str, str] = {}

    def load(self) -> None:
        """Read every ``config.v2.json`` under the data root."""
        os.makedirs(self.root, mode=0o710, exist_ok=True)
        for cid in sorted(os.listdir(self.root)):
            d = os.path.join(self.root, cid)
            path = os.path.join(d, "config.v2.json")
            try:
                with open(path) as f:
                    data = json.load(f)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                log.warning("skipping container %s: cannot read %s: %s", cid, path, e)
                continue
            c = Container(data, d)
            self.by_id[c.id] = c
            self.names[c.name] = c.id

    def check_name(self, name: str) -> str:
        if not _NAME.match(name):
            raise InvalidArgument(f"Invalid container name ({name}), only "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        name = name.lstrip("/")
        if name in self.names:
            owner = self.names[name]
            raise AlreadyExists(f'Conflict. The container name "/{name}" is already in use by '
                                f'container "{owner}". You have to remove (or rename) that '
                                "container to be able to reuse that name.")
        return name

    def add(self, c: Container) -> None:
        self.by_id[c.id] = c
        self.names[c.name] = c.id

    def drop(self, c: Container) -> None:
        self.by_id.pop(c.id, None)
        if self.names.get(c.name) == c.id:
            del self.names[c.name]

    def get(self, ref: str) -> Container:
        """By full id, name (with or without ``/``) or unique id prefix, as docker does."""
        if not ref:
            raise NotFound("No such container: ")
        c = self.by_id.get(ref)
        if c is not None:
            return c
        cid = self.names.get(ref.lstrip("/"))
        if cid is not None:
            return self.by_id[cid]
        if _HEX.match(ref):
            found = [c for i, c in self.by_id.items() if i.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        return list(self.by_id.values())
