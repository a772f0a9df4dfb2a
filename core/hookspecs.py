"""Every hook a pallet plugin may implement.

Two kinds of hooks:

* provider hooks (``pallet_provide_<role>``, firstresult): exactly one
  plugin fills each role; the configuration says which, and only that plugin
  is registered for the role, so the first (only) answer wins.  They return an
  object whose methods do the work;
* pipeline, registration and event hooks, where every loaded plugin takes part.

Hooks are synchronous and their order carries no meaning.  Event hooks must
not block: they run on the daemon's event loop.  Every hook receives the
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

@hookspec(firstresult=True)
def pallet_provide_client_protocol(kernel):
    """Return the frontend palletd serves (the Docker Engine API).

    The object has ``serve(listeners)``, a coroutine that runs until the
    daemon stops.  Called in palletd.
    """


@hookspec(firstresult=True)
def pallet_provide_containerd(kernel):
    """Return containerd's services for pallet-containerd.

    The object has ``serve(address)``; it runs the gRPC server until stopped.
    Called in pallet-containerd.
    """


@hookspec(firstresult=True)
def pallet_provide_image_store(kernel):
    """Return the image store: content blobs, image metadata, snapshotters,
    the layer applier and the readers of image archives.

    Called in pallet-containerd (which owns the store) and in clients that read
    archives (``docker load``).  Construction must be cheap: open lazily.
    """


@hookspec(firstresult=True)
def pallet_provide_runtime(kernel):
    """Return the OCI runtime used in-process by the shim and by pallet-runc.

    See docs/CONTRACTS.md for its methods (create, start, kill, delete,
    state, list).
    """


@hookspec(firstresult=True)
def pallet_provide_init(kernel):
    """Return the init for ``--init``: an object with ``run(argv, env)`` that
    becomes PID 1 of the container, reaps zombies, forwards signals and exits
    with its child's status.  Called in the process that runs the runtime.
    """


@hookspec(firstresult=True)
def pallet_provide_network(kernel):
    """Return the network driver used by palletd (dockerd's networking).

    Container side, each taking the container dict palletd builds (``id``,
    ``name``, ``hostname``, ``domainname``, ``host_config``,
    ``exposed_ports``, ``hosts_path``, ``hostname_path``,
    ``resolv_conf_path``; ``networking_config`` at create; ``links`` at
    start: the running containers it links to, each ``id``, ``name``,
    ``alias``, ``hostname``):
    ``register(container)`` at create (checks network mode, networks,
    aliases, ``--ip``; raises the core errors); ``setup(container) -> dict``
    at start, before the spec is built: makes the sandbox (a named network
    namespace the ``pallet_build_spec`` hook puts in the spec, with the
    /etc/hosts, /etc/hostname, /etc/resolv.conf bind mounts, the links'
    names resolvable in it) and returns docker's ``NetworkSettings``
    without ``Ports``; ``release(id)`` once the
    container's process is gone; ``unregister(id)`` at removal;
    ``settings(id) -> dict`` (inspect); ``port_target(id)`` (where published
    ports go, for the port proxy); ``connect(network, container,
    endpoint_config)`` and ``disconnect(network, id, force)``.
    Network side (``/networks``): ``create_network(body)``,
    ``list_networks(filters)``, ``inspect_network(ref)``,
    ``remove_network(ref)``, ``prune_networks(filters)``.  Methods are
    blocking (milliseconds) and thread-safe; palletd calls them off its loop.
    """


@hookspec(firstresult=True)
def pallet_provide_port_proxy(kernel):
    """Return the port publisher used by palletd (dockerd's port mapper and
    docker-proxy's role).

    ``check(host_config, exposed_ports)`` at create; ``publish(container)
    -> dict`` at start, after the network's ``setup`` (``-p`` and ``-P``:
    host ports taken, rules and userland proxies set up; returns docker's
    ``NetworkSettings.Ports``; "port is already allocated" raised as a
    PalletError); ``unpublish(id)`` once the container's process is gone;
    ``ports(id)`` and ``ports_list(id)`` for inspect and ``docker ps``.
    """


# --- registration --------------------------------------------------------------

@hookspec
def pallet_register_rest_routes(kernel, app):
    """Add routes to palletd's aiohttp application (called before it serves)."""


@hookspec
def pallet_register_grpc_services(kernel, server):
    """Add gRPC services to pallet-containerd's server (called before it serves)."""


# --- pipelines -----------------------------------------------------------------

@hookspec
def pallet_build_spec(kernel, spec, container):
    """Add this plugin's part to a container's OCI runtime spec.

    ``spec`` is the ``config.json`` as a dict, to be changed in place;
    ``container`` is a dict of the container's create-time settings
    (``id``, ``name``, ``image``, ``init``, ``network_mode``, ``host_config``).
    Called in palletd before the container is created in pallet-containerd.
    Every plugin takes part: init adds its PID 1, network its namespace,
    volumes their mounts, security its capabilities and seccomp profile.
    """


# --- events (must not block) ------------------------------------------------------

@hookspec
def pallet_on_container_created(kernel, container):
    """A container was created (``container`` is a dict: id, name, image)."""


@hookspec
def pallet_on_container_started(kernel, container):
    """A container's process is running (``container`` has id, name, image, pid)."""


@hookspec
def pallet_on_container_exited(kernel, container, exit_code):
    """A container's process exited with ``exit_code`` (128+N for a signal)."""


@hookspec
def pallet_on_container_removed(kernel, container):
    """A container was removed."""


@hookspec
def pallet_on_image_loaded(kernel, name, digest):
    """An image was loaded, pulled or imported under ``name``."""
