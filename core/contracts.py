"""The contract of every role: what its object does, written once.

``kernel.provide(role)`` returns the object of the plugin that fills the
role (``pallet_provide_<role>``); callers rely on these interfaces and on
nothing else.  Failures are raised as :mod:`pallet.core.errors` classes
(``NotFound``, ``AlreadyExists``, ``InvalidArgument``, ``FailedPrecondition``,
``Conflict``, ``Unavailable``, ``NotImplementedYet``; ``PalletError`` for the
rest) with lower-case messages, and each frontend maps them to its protocol.
``tests/contracts/<role>/`` checks every installed implementation against
its contract.

The shim is a process rather than an object: its contract is a wire protocol
(:class:`ShimTask`), and containerd's runtime-name mapping picks the binary.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, NoReturn, Protocol, Sequence, runtime_checkable

from pallet.core.models import Descriptor, Mount


# --- client_protocol: palletd's API (api_rest) ------------------------------------------

@runtime_checkable
class ClientProtocol(Protocol):
    """A protocol that serves the Docker engine library (``pallet.engine``) to
    clients, in palletd.  palletd opens the listeners (``-H``) and closes
    them; ``listeners`` are ``(name, socket)`` pairs (TLS ones carry
    ``ssl``)."""

    async def serve(self, engine: Any, listeners: Sequence[Any]) -> None:
        """Serve ``engine`` until :meth:`stop`; state changes a client asked
        for run to completion even if the client goes away."""

    def stop(self) -> None:
        """Make :meth:`serve` return (called on the event loop)."""


# --- containerd: pallet-containerd's API (api_grpc) ----------------------------------------

@runtime_checkable
class ContainerdAPI(Protocol):
    """containerd's v1 gRPC API over pallet-containerd's service layer
    (``pallet.containerd_services``), in pallet-containerd."""

    def listen(self, address: str) -> None:
        """Bind the unix socket ``address`` (mode 0660); ``AlreadyExists`` if
        another process serves it."""

    def start(self, services: Any) -> None:
        """Register every service over ``services`` (and plugins' services
        through ``pallet_register_grpc_services``) and start answering."""

    def stop(self) -> None:
        """Stop answering and remove the socket; tasks keep running."""


# --- image_store: content, metadata, snapshots (store_overlay, store_native) --------------

@runtime_checkable
class Snapshotter(Protocol):
    """containerd's snapshotter: a tree of filesystem snapshots by key.

    Keys are per namespace once :meth:`namespaced`; ``prepare`` and ``view``
    return the mounts that assemble the snapshot (``NotFound`` for a parent
    that does not exist, ``InvalidArgument`` for one that is not committed,
    ``AlreadyExists`` for a key in use)."""

    name: str

    def prepare(self, key: str, parent: str | None = None,
                labels: Mapping[str, str] | None = None) -> list[Mount]: ...

    def view(self, key: str, parent: str | None = None,
             labels: Mapping[str, str] | None = None) -> list[Mount]: ...

    def mounts(self, key: str) -> list[Mount]:
        """Of an active snapshot or a view (``FailedPrecondition`` if committed)."""

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """The active ``key`` becomes the committed ``name`` (``FailedPrecondition``
        unless active)."""

    def remove(self, key: str) -> None:
        """``FailedPrecondition`` while a child snapshot exists."""

    def stat(self, key: str) -> Any:
        """The snapshot's info: ``name``, ``parent``, ``kind``, ``labels``, times."""

    def update(self, key: str, labels: Mapping[str, str],
               fieldpaths: Sequence[str] | None = None) -> Any: ...

    def list(self, filters: Sequence[str] | str | None = None) -> list[Any]: ...

    def usage(self, key: str) -> Any:
        """``size`` (bytes) and ``inodes`` of what the snapshot itself holds."""

    def cleanup(self) -> list[str]:
        """Remove directories nothing refers to (after a crash); their names."""

    def namespaced(self, namespace: str) -> "Snapshotter":
        """The same snapshotter with keys scoped to a containerd namespace."""


@runtime_checkable
class ImageStore(Protocol):
    """containerd's image and storage services, in pallet-containerd.

    One owner per piece of state: ``metadata`` holds namespaces, images,
    leases and containers, so that :meth:`gc` sees every reference.
    Construction is cheap; files open on first use.
    """

    default_snapshotter: str

    @property
    def content(self) -> Any:
        """The content store: blobs by digest (``info``, ``read``, ``writer``,
        ``delete``, ``list``, ``update``)."""

    @property
    def metadata(self) -> Any:
        """containerd's metadata per namespace, one owner for all of it:
        namespaces, images, leases (and their resources), containers
        (``create/get/list/update/delete_container``: ``id``, ``runtime``,
        ``spec``, ``image``, ``snapshotter``, ``snapshot_key``, ``labels``...)
        and which namespace holds which blob (``get/list/add/update/
        delete_content_ref``, ``claimed_digests``).  :meth:`gc` keeps what
        containers hold."""

    @property
    def applier(self) -> Any:
        """containerd's Diff.Apply: ``apply(descriptor, mounts) -> descriptor``."""

    def snapshotter_names(self) -> Sequence[str]:
        """The snapshotters this store offers (containerd's names)."""

    def snapshotter(self, name: str | None = None) -> Snapshotter:
        """A snapshotter by name (default: :attr:`default_snapshotter`);
        ``NotFound`` for one this store does not offer."""

    def unpack(self, target: Descriptor, snapshotter: str | None = None,
               namespace: str = "default") -> str:
        """Unpack an image's layers; returns the chain ID of its top snapshot."""

    def import_archive(self, src: Any, namespace: str, **kw) -> list[Any]:
        """Import a docker-save or OCI archive; the images it named."""

    def export_archive(self, out: Any, namespace: str, names: Sequence[str], **kw) -> None:
        """Write a docker-save archive of ``names``."""

    def target(self, namespace: str, snapshotter: str | None = None) -> Any:
        """Where a pull writes and a push reads, next to the store."""

    def gc(self, dry_run: bool = False) -> Any:
        """Remove content and snapshots nothing refers to: roots are images,
        containers, live leases and ``containerd.io/gc.root`` labels."""

    def close(self) -> None: ...


# --- runtime: runc's operations (runtime_ns, runtime_oci) ------------------------------------

@runtime_checkable
class Runtime(Protocol):
    """An OCI runtime, runc's operations as methods, used by the shim and by
    pallet-runc.  State lives under the root it was made with.

    ``stdin``/``stdout``/``stderr`` are file descriptors that become 0/1/2 of
    the container process (None: /dev/null); ``terminal_socket`` is a unix
    socket that receives the pty master (runc's ``--console-socket``).  The
    caller of :meth:`create` and :meth:`exec` is a child subreaper and reaps
    the pid returned.  Errors are runc's messages (``container not running``).
    """

    name: str

    def create(self, id: str, bundle: str, *, stdin: int | None = None,
               stdout: int | None = None, stderr: int | None = None,
               terminal_socket: str | None = None, pid_file: str | None = None,
               no_pivot: bool = False, preserve_fds: int = 0) -> int:
        """Create the container (its process waits for :meth:`start`); the
        host pid of its PID 1."""

    def start(self, id: str) -> None: ...

    def kill(self, id: str, signal: int, all: bool = False) -> None: ...

    def delete(self, id: str, force: bool = False) -> None:
        """Remove the state, cgroups and mounts the runtime made."""

    def state(self, id: str) -> dict:
        """runc's state JSON fields (``id``, ``pid``, ``status``, ``bundle``...)."""

    def list(self) -> list[dict]: ...

    def exec(self, id: str, process: dict, *, stdin: int | None = None,
             stdout: int | None = None, stderr: int | None = None,
             terminal_socket: str | None = None, pid_file: str | None = None,
             preserve_fds: int = 0) -> int:
        """Start ``process`` (an OCI process object) in the container; its pid."""

    def pause(self, id: str) -> None: ...

    def resume(self, id: str) -> None: ...

    def pids(self, id: str) -> list[int]: ...

    def update(self, id: str, resources: dict) -> None:
        """Apply ``linux.resources`` to the running container."""

    def stats(self, id: str) -> dict:
        """runc's ``events --stats`` data (cpu, memory, pids, blkio)."""

    def features(self) -> dict:
        """runc's ``features`` document of what this runtime implements."""

    def with_root(self, root: str) -> "Runtime":
        """The same runtime on another state root (one per containerd namespace)."""


# --- init: PID 1 with --init (init_tini, init_exec) ----------------------------------------

@runtime_checkable
class Init(Protocol):
    """The init that becomes PID 1 of a container started with ``--init``."""

    name: str

    def prepare_spec(self, spec: dict) -> None:
        """Make ``spec``'s process run under this init (in place): e.g. a
        static binary bind-mounted and put in front of ``process.args``, as
        dockerd's ``--init-path`` does.  ``ConfigError`` when it cannot."""

    def run(self, argv: Sequence[str], env: Mapping[str, str] | Sequence[str]) -> NoReturn:
        """Be PID 1 in this process (for runtimes that fork it in-process):
        run ``argv``, forward signals, reap zombies, exit with the child's
        status (128+N for signal N).  ``NotImplementedYet`` if this init
        only runs as a binary."""


# --- network: dockerd's networking (net_bridge, net_cni) -------------------------------------

@runtime_checkable
class Network(Protocol):
    """Container networking for palletd's engine.  Methods block for
    milliseconds and are thread-safe; the engine calls them off its loop.

    ``container`` is the dict the engine builds: ``id``, ``name``,
    ``hostname``, ``domainname``, ``host_config``, ``exposed_ports``,
    ``hosts_path``, ``hostname_path``, ``resolv_conf_path``;
    ``networking_config`` at create; ``links`` at start (running
    containers it links to: ``id``, ``name``, ``alias``, ``hostname``).
    """

    def start(self, loop: Any) -> None:
        """Reconcile state at daemon start (stale rules, namespaces)."""

    def shutdown(self) -> None: ...

    def register(self, container: dict) -> None:
        """At create: check network mode, networks, aliases, ``--ip``
        (``InvalidArgument``, also for an unknown network: a 404 would make
        the docker CLI pull the image)."""

    def setup(self, container: dict) -> dict:
        """At start, before the spec is built: make the sandbox (network
        namespace, /etc/hosts, /etc/hostname, /etc/resolv.conf); returns
        docker's ``NetworkSettings`` without ``Ports``."""

    def build_spec(self, spec: dict, container: dict) -> None:
        """Put the sandbox (namespace path, etc files) into the OCI spec."""

    def release(self, id: str) -> None:
        """Once the container's process is gone: free the sandbox."""

    def unregister(self, id: str) -> None:
        """At removal."""

    def settings(self, id: str) -> dict:
        """docker's ``NetworkSettings`` for inspect."""

    def port_target(self, id: str) -> Any:
        """Where published ports of the container go (for the port proxy)."""

    def connect(self, network: str, container: dict, endpoint_config: dict) -> None: ...

    def disconnect(self, network: str, id: str, force: bool) -> None: ...

    def create_network(self, body: dict) -> dict: ...

    def list_networks(self, filters: Mapping[str, Iterable[str]]) -> list[dict]: ...

    def inspect_network(self, ref: str) -> dict: ...

    def remove_network(self, ref: str) -> None: ...

    def prune_networks(self, filters: Mapping[str, Iterable[str]]) -> list[str]: ...


# --- port_proxy: published ports (net_proxy) ------------------------------------------------

@runtime_checkable
class PortProxy(Protocol):
    """dockerd's port mapper and docker-proxy's role, in palletd."""

    def start(self) -> None:
        """Reconcile at daemon start (rules and proxies of dead containers)."""

    def shutdown(self) -> None: ...

    def check(self, host_config: dict, exposed_ports: Mapping[str, Any]) -> None:
        """At create: refuse bad ``-p`` specs (``InvalidArgument``)."""

    def publish(self, container: dict) -> dict:
        """At start, after the network's setup: take host ports, install
        rules and userland proxies; docker's ``NetworkSettings.Ports``.
        "port is already allocated" is a ``PalletError``."""

    def unpublish(self, id: str) -> None: ...

    def ports(self, id: str) -> dict:
        """``NetworkSettings.Ports`` for inspect."""

    def ports_list(self, id: str) -> list[dict]:
        """The ``Ports`` list of ``docker ps``."""


# --- shim: one process per task, spoken to over ttrpc ----------------------------------------

class ShimTask(Protocol):
    """containerd's shim v2 contract, a wire protocol rather than an object.

    A shim binary is chosen by runtime name as containerd does
    (``io.containerd.runc.v2`` -> ``containerd-shim-runc-v2`` on PATH;
    pallet-containerd serves ``io.containerd.pallet.v2`` with pallet-shim,
    also installed as ``containerd-shim-pallet-v2``).  It is started with
    ``-namespace NS -id ID -address SOCK start`` in the bundle, prints its
    ttrpc address and detaches; ``delete`` cleans up after a dead one.  It
    serves ``containerd.task.v2.Task`` (the methods below, each taking and
    returning the messages of that name) and forwards task events to
    ``TTRPC_ADDRESS``.
    """

    def State(self, request: Any) -> Any: ...
    def Create(self, request: Any) -> Any: ...
    def Start(self, request: Any) -> Any: ...
    def Delete(self, request: Any) -> Any: ...
    def Pids(self, request: Any) -> Any: ...
    def Pause(self, request: Any) -> Any: ...
    def Resume(self, request: Any) -> Any: ...
    def Kill(self, request: Any) -> Any: ...
    def Exec(self, request: Any) -> Any: ...
    def ResizePty(self, request: Any) -> Any: ...
    def CloseIO(self, request: Any) -> Any: ...
    def Update(self, request: Any) -> Any: ...
    def Wait(self, request: Any) -> Any: ...
    def Stats(self, request: Any) -> Any: ...
    def Connect(self, request: Any) -> Any: ...
    def Shutdown(self, request: Any) -> Any: ...


def members(contract: type) -> list[str]:
    """The names a contract asks for (methods and attributes)."""
    names: set[str] = set()
    for klass in contract.__mro__:
        if klass in (Protocol, object) or klass.__name__ == "Generic":
            continue
        names.update(n for n in vars(klass) if not n.startswith("_"))
        names.update(getattr(klass, "__annotations__", {}))
    return sorted(names)


#: role name -> the contract its object satisfies
CONTRACTS: dict[str, type] = {
    "client_protocol": ClientProtocol,
    "containerd": ContainerdAPI,
    "image_store": ImageStore,
    "runtime": Runtime,
    "init": Init,
    "network": Network,
    "port_proxy": PortProxy,
}
