"""Pods and containers as api_cri keeps them, and where they survive a restart.

Each pod sandbox and each container is also a containerd container record
in the ``k8s.io`` namespace (as containerd's CRI plugin keeps them): labelled
``io.cri-containerd.kind`` (``sandbox`` or ``container``) and carrying its
CRI metadata (the request's config, ids, paths) as an extension, so that
``ctr -n k8s.io containers ls`` sees them and a restarted pallet-containerd
finds them again.  What changes afterwards (state, exit code, times, the
pod's IP) is a small status file beside the pod's or container's other
files, written atomically.  Names are reserved as containerd reserves them:
one id per ``name_namespace_uid_attempt``.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import threading

import attrs
from google.protobuf import any_pb2

from pallet.core import errors
from pallet.core.files import read_json, write_json_atomic
from pallet.proto.containerd.services.containers.v1 import containers_pb2
from pallet.proto.cri.runtime.v1 import api_pb2 as cri

from pallet.plugins.api_cri.config import NAMESPACE

log = logging.getLogger("pallet.cri.store")

KIND_LABEL = "io.cri-containerd.kind"
SANDBOX, CONTAINER = "sandbox", "container"
EXTENSIONS = {SANDBOX: "io.cri-containerd.sandbox.metadata",
              CONTAINER: "io.cri-containerd.container.metadata"}
METADATA_TYPE = "pallet.cri.v1.Metadata"
SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
STATUS_FILE = "status"

# container states as CRI names them
CREATED, RUNNING, EXITED, UNKNOWN = "created", "running", "exited", "unknown"
READY, NOTREADY = "ready", "notready"


def _b64(msg) -> str:
    return base64.b64encode(msg.SerializeToString()).decode()


def _msg(cls, text: str):
    return cls.FromString(base64.b64decode(text or ""))


@attrs.define(eq=False)
class Sandbox:
    """A pod sandbox.  ``namespaces`` maps net/ipc/uts/pid to the paths
    containers join (absent: the host's, or a new one per container for pid)."""

    id: str
    name: str
    config: cri.PodSandboxConfig
    runtime_handler: str = ""
    created_at: int = 0
    root: str = ""
    state_dir: str = ""
    netns: str = ""
    namespaces: dict = attrs.field(factory=dict)
    cgroup_parent: str = ""
    image: str = ""
    has_task: bool = False
    # the status part
    state: str = READY
    ip: str = ""
    additional_ips: list = attrs.field(factory=list)
    pid: int = 0
    pid_inode: int = 0
    network_ready: bool = False
    stopped: bool = False
    lock: threading.RLock = attrs.field(factory=threading.RLock, repr=False)

    @property
    def metadata(self) -> cri.PodSandboxMetadata:
        return self.config.metadata

    def describe(self) -> dict:
        return {"id": self.id, "name": self.name, "config": _b64(self.config),
                "runtime_handler": self.runtime_handler, "created_at": self.created_at,
                "root": self.root, "state_dir": self.state_dir, "netns": self.netns,
                "namespaces": self.namespaces, "cgroup_parent": self.cgroup_parent,
                "image": self.image, "has_task": self.has_task}

    def status(self) -> dict:
        return {"state": self.state, "ip": self.ip, "additional_ips": self.additional_ips,
                "pid": self.pid, "pid_inode": self.pid_inode,
                "network_ready": self.network_ready, "stopped": self.stopped}

    @classmethod
    def restore(cls, meta: dict, status: dict) -> "Sandbox":
        sb = cls(id=meta["id"], name=meta["name"],
                 config=_msg(cri.PodSandboxConfig, meta.get("config")),
                 runtime_handler=meta.get("runtime_handler", ""),
                 created_at=int(meta.get("created_at") or 0), root=meta.get("root", ""),
                 state_dir=meta.get("state_dir", ""), netns=meta.get("netns", ""),
                 namespaces=dict(meta.get("namespaces") or {}),
                 cgroup_parent=meta.get("cgroup_parent", ""), image=meta.get("image", ""),
                 has_task=bool(meta.get("has_task")))
        for key in ("state", "ip", "additional_ips", "pid", "pid_inode", "network_ready",
                    "stopped"):
            if key in status:
                setattr(sb, key, status[key])
        return sb


@attrs.define(eq=False)
class Container:
    """A container of a pod, with what its status reports."""

    id: str
    sandbox_id: str
    name: str
    config: cri.ContainerConfig
    image_id: str = ""
    image_name: str = ""
    image_ref: str = ""
    log_path: str = ""
    created_at: int = 0
    runtime: str = ""
    root: str = ""
    user: dict = attrs.field(factory=dict)
    # the status part
    state: str = CREATED
    pid: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    resources: cri.LinuxContainerResources | None = None
    removing: bool = False
    oom: bool = False
    lock: threading.RLock = attrs.field(factory=threading.RLock, repr=False)
    #: set once the container's process has exited (stop waits on it)
    exited: threading.Event = attrs.field(factory=threading.Event, repr=False)
    #: the container's stdio in this process (logs.ContainerIO), not persisted
    io: object = attrs.field(default=None, repr=False)

    @property
    def metadata(self) -> cri.ContainerMetadata:
        return self.config.metadata

    def describe(self) -> dict:
        return {"id": self.id, "sandbox_id": self.sandbox_id, "name": self.name,
                "config": _b64(self.config), "image_id": self.image_id,
                "image_name": self.image_name, "image_ref": self.image_ref,
                "log_path": self.log_path,
                "created_at": self.created_at, "runtime": self.runtime, "root": self.root,
                "user": self.user}

    def status(self) -> dict:
        return {"state": self.state, "pid": self.pid, "started_at": self.started_at,
                "finished_at": self.finished_at, "exit_code": self.exit_code,
                "reason": self.reason, "message": self.message, "removing": self.removing,
                "resources": _b64(self.resources) if self.resources is not None else ""}

    @classmethod
    def restore(cls, meta: dict, status: dict) -> "Container":
        c = cls(id=meta["id"], sandbox_id=meta["sandbox_id"], name=meta["name"],
                config=_msg(cri.ContainerConfig, meta.get("config")),
                image_id=meta.get("image_id", ""), image_name=meta.get("image_name", ""),
                image_ref=meta.get("image_ref", ""),
                log_path=meta.get("log_path", ""), created_at=int(meta.get("created_at") or 0),
                runtime=meta.get("runtime", ""), root=meta.get("root", ""),
                user=dict(meta.get("user") or {}))
        for key in ("state", "pid", "started_at", "finished_at", "exit_code", "reason",
                    "message", "removing"):
            if key in status:
                setattr(c, key, status[key])
        if status.get("resources"):
            c.resources = _msg(cri.LinuxContainerResources, status["resources"])
        return c


class Records:
    """The in-memory tables, their name reservations, and their persistence
    through pallet-containerd's service layer (``services``)."""

    def __init__(self, services):
        self.services = services
        self.sandboxes: dict[str, Sandbox] = {}
        self.containers: dict[str, Container] = {}
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- names ----------------------------------------------------------------------------
    def reserve(self, kind: str, name: str, id: str) -> None:
        """Take ``name`` for ``id``; taken, the error names the holder (containerd
        answers UNKNOWN with this message)."""
        with self._lock:
            holder = self._names.get(name)
            if holder is not None and holder != id:
                raise errors.PalletError(f'failed to reserve {kind} name "{name}": name '
                                         f'"{name}" is reserved for "{holder}"')
            self._names[name] = id

    def release(self, name: str) -> None:
        with self._lock:
            self._names.pop(name, None)

    # --- lookups --------------------------------------------------------------------------------
    def sandbox(self, id: str) -> Sandbox:
        """By full id or unique prefix, as containerd resolves CRI ids."""
        return self._find(self.sandboxes, id, "sandbox")

    def container(self, id: str) -> Container:
        return self._find(self.containers, id, "container")

    def _find(self, table: dict, id: str, what: str):
        if not id:
            raise errors.PalletError(f'an error occurred when try to find {what} "": '
                                     "Prefix can't be empty")
        found = table.get(id)
        if found is not None:
            return found
        with self._lock:
            matches = [v for k, v in table.items() if k.startswith(id)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise errors.InvalidArgument(f"{what} id {id!r} is ambiguous")
        raise errors.NotFound(f'an error occurred when try to find {what} "{id}": not found')

    def containers_of(self, sandbox_id: str) -> list[Container]:
        with self._lock:
            return [c for c in self.containers.values() if c.sandbox_id == sandbox_id]

    # --- persistence ------------------------------------------------------------------------
    def create(self, kind: str, rec, spec: dict, *, image: str = "", snapshotter: str = "",
               snapshot_key: str = "", runtime: str = "", labels: dict | None = None) -> None:
        """The containerd container record of a new pod or container, then its status file."""
        ext = any_pb2.Any(type_url=METADATA_TYPE, value=json.dumps(rec.describe()).encode())
        record = containers_pb2.Container(
            id=rec.id, image=image, snapshotter=snapshotter, snapshot_key=snapshot_key,
            labels={**(labels or {}), KIND_LABEL: kind},
            runtime=containers_pb2.Container.Runtime(name=runtime),
            spec=any_pb2.Any(type_url=SPEC_TYPE, value=json.dumps(spec).encode()))
        record.extensions[EXTENSIONS[kind]].CopyFrom(ext)
        os.makedirs(rec.root, mode=0o711, exist_ok=True)
        self.save(rec)
        self.services.container_create(NAMESPACE, record)

    def save(self, rec) -> None:
        """Write the record's status file (atomically)."""
        write_json_atomic(os.path.join(rec.root, STATUS_FILE), rec.status(), fsync=False)

    def spec(self, id: str) -> dict:
        record = self.services.containers.get(NAMESPACE, id)
        return json.loads(record.spec.value or b"{}")

    def delete(self, rec) -> None:
        try:
            self.services.container_delete(NAMESPACE, rec.id)
        except errors.NotFound:
            pass
        try:
            os.unlink(os.path.join(rec.root, STATUS_FILE))
        except FileNotFoundError:
            pass

    def load(self) -> tuple[list[Sandbox], list[Container]]:
        """Every pod and container the namespace's records describe."""
        sandboxes, containers = [], []
        for record in self.services.containers.list(NAMESPACE):
            kind = record.labels.get(KIND_LABEL)
            ext = record.extensions.get(EXTENSIONS.get(kind, ""))
            if ext is None or ext.type_url != METADATA_TYPE:
                continue  # not ours (ctr's, or containerd's own CRI plugin's)
            try:
                meta = json.loads(ext.value)
                status = read_json(os.path.join(meta.get("root", ""), STATUS_FILE), {}) or {}
                if kind == SANDBOX:
                    sandboxes.append(Sandbox.restore(meta, status))
                else:
                    containers.append(Container.restore(meta, status))
            except (KeyError, ValueError, TypeError) as e:
                log.error("record %s in %s unreadable: %s", record.id, NAMESPACE, e)
        return sandboxes, containers
