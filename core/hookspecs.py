"""Every hook a pallet plugin may implement.

Two kinds of hooks:

* provider hooks (``pallet_provide_<role>``, firstresult): exactly one
  plugin fills each role; the configuration says which, and only that plugin
  is registered for the role, so the first (only) answer wins.  They return an
  object whose methods do the work;
* pipeline, registration and event hooks, where every loaded plugin takes part.

Hooks are synchronous and their order carries no meaning.  Event hooks must
not block: they run on a daemon's event loop or event thread (each says
which process calls it).  Every hook receives the
``kernel`` (``pallet.core.kernel.Kernel``), which gives the configuration,
the derived paths and the other roles.
"""
from __future__ import annotations

import pluggy

PROJECT = "pallet"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: role name -> the plugin that fills it by default, in the order the roles
#: are listed by ``palletd --list-plugins``.
ROLES = {
    "client_protocol": "api_rest",
    "containerd": "api_grpc",
    "image_store": "store_overlay",
    "runtime": "runtime_ns",
    "init": "init_tini",
    "network": "net_bridge",
    "port_proxy": "net_proxy",
    "builder": "builder_dockerfile",
}


# --- lifecycle -----------------------------------------------------------------

@hookspec
def pallet_configure(kernel):
    """Called once after every plugin of the process is registered.

    A plugin reads its configuration section (``kernel.plugin_config(name)``)
    and checks it here; raising ``pallet.core.errors.ConfigError`` stops the
    process at start-up with that message.
    """


@hookspec
def pallet_startup(kernel):
    """Called when the process that loaded the plugin starts serving.

    palletd, pallet-containerd and the embedding program call it once; a plugin
    reconciles its state here (stale rules, orphan processes).
    """


@hookspec
def pallet_shutdown(kernel):
    """Called once when the process stops in an orderly way."""


# --- providers: one plugin per role -------------------------------------------
# Each returns the object of its role; ``pallet.core.contracts`` says what that
# object must do, and ``kernel.provide`` checks it against the contract.

@hookspec(firstresult=True)
def pallet_provide_client_protocol(kernel):
    """Return the protocol palletd serves its engine with
    (:class:`~pallet.core.contracts.ClientProtocol`).  Called in palletd."""


@hookspec(firstresult=True)
def pallet_provide_containerd(kernel):
    """Return containerd's API over pallet-containerd's service layer
    (:class:`~pallet.core.contracts.ContainerdAPI`).  Called in
    pallet-containerd."""


@hookspec(firstresult=True)
def pallet_provide_image_store(kernel):
    """Return the image store (:class:`~pallet.core.contracts.ImageStore`):
    content, metadata, snapshotters and the layer applier.  Called in
    pallet-containerd, which owns the store, and in programs that embed it.
    Construction must be cheap: open lazily."""


@hookspec(firstresult=True)
def pallet_provide_runtime(kernel):
    """Return the OCI runtime (:class:`~pallet.core.contracts.Runtime`) that
    the shim and pallet-runc drive.  The shim receives it pickled from a
    throwaway process that loaded the kernel, so it should pickle (an object
    that does not is provided in the shim itself)."""


@hookspec(firstresult=True)
def pallet_provide_init(kernel):
    """Return the init for ``--init`` (:class:`~pallet.core.contracts.Init`).
    Called in palletd (to prepare the spec) and beside the runtime."""


@hookspec(firstresult=True)
def pallet_provide_network(kernel):
    """Return container networking (:class:`~pallet.core.contracts.Network`)
    for palletd's engine."""


@hookspec(firstresult=True)
def pallet_provide_port_proxy(kernel):
    """Return the port publisher (:class:`~pallet.core.contracts.PortProxy`)
    for palletd's engine."""


@hookspec(firstresult=True)
def pallet_provide_builder(kernel):
    """Return the image builder (:class:`~pallet.core.contracts.Builder`) that
    serves ``docker build`` in palletd, over the engine library.  Called in
    palletd."""


# --- registration --------------------------------------------------------------

@hookspec
def pallet_register_rest_routes(kernel, app):
    """Add routes to palletd's aiohttp application (called before it serves)."""


@hookspec
def pallet_register_grpc_services(kernel, server, services):
    """Add gRPC services to pallet-containerd's ``grpc.Server`` (called before
    it serves); ``services`` is pallet-containerd's service layer
    (``pallet.containerd_services``: containers, tasks, images, content,
    snapshots and events of every namespace)."""


# --- pipelines -----------------------------------------------------------------

@hookspec
def pallet_build_spec(kernel, spec, container):
    """Add this plugin's part to a container's OCI runtime spec.

    ``spec`` is the ``config.json`` as a dict, to be changed in place;
    ``container`` is a dict of the container's create-time settings
    (``id``, ``name``, ``image``, ``init``, ``network_mode``, ``host_config``).
    Called in palletd's engine before the container is created in
    pallet-containerd, after the engine's own parts (mounts, security, the
    network's namespace, the init role's PID 1); extension plugins add theirs.
    """


# --- events (must not block) ------------------------------------------------------
# The container events are called in pallet-containerd, from its containerd
# events, for every container of every namespace whoever made it (palletd's
# in ``moby``, ctr's and pallet-ctr's in ``default``, a CRI client's in
# ``k8s.io``), one after the other in the order they happened, on a thread of
# their own (a slow hook delays the next ones, never containerd).  They run
# only in pallet-containerd: with palletd on another containerd
# (``--containerd``), nothing calls them.  ``container`` is a fresh dict:
#
#   id          the containerd container id (palletd's: the docker container id)
#   namespace   the containerd namespace
#   image       the image name the container record names ("" if none)
#   runtime     the runtime name (``io.containerd.pallet.v2``, ``io.containerd.runc.v2``)
#   labels      the container record's labels (dict)
#   pid         the host pid of the task's PID 1 (0 before the task exists)
#   exit_code   the exit status of PID 1 once it exited (128+N for signal N), else None
#   exited_at   when it exited (epoch seconds), else None
#
# A container whose record is already gone when the event is handled (a
# removal right after creation) may carry id and namespace only.

@hookspec
def pallet_on_container_created(kernel, container):
    """A container record was created (containerd's ``/containers/create``):
    ``docker create``, ``ctr containers create``, the create of ``ctr run``."""


@hookspec
def pallet_on_container_started(kernel, container):
    """A container's task started (``/tasks/start``); ``container["pid"]`` is its PID 1."""


@hookspec
def pallet_on_container_exited(kernel, container, exit_code):
    """A container's PID 1 exited (``/tasks/exit`` of the task, not of an exec
    process) with ``exit_code`` (128+N for signal N; also ``container["exit_code"]``)."""


@hookspec
def pallet_on_container_removed(kernel, container):
    """A container record was deleted (``/containers/delete``): ``docker rm``,
    ``ctr containers rm``, the end of ``ctr run --rm``."""


@hookspec
def pallet_on_image_loaded(kernel, name, digest):
    """An image was loaded, pulled or imported under ``name`` (called in palletd)."""
