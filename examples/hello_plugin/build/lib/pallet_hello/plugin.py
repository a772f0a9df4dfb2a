"""Append a line to a file for every container event, whoever made the container.

Configure it in pallet.toml::

    [plugins.hello]
    path = "/var/log/pallet-hello.log"

It fills no role (``PALLET_ROLE = None``): it only listens to the container
event hooks, which pallet-containerd calls for the containers of every
namespace (palletd's, ctr's, pallet-ctr's), so the daemons run the same with
or without it.  Each line is ``hello: <event> <json>`` where the JSON is the
hook's ``container`` dict.
"""
import json

from pallet.core.hookspecs import hookimpl

PALLET_ROLE = None


def _record(kernel, event: str, container: dict) -> None:
    path = kernel.plugin_config("hello").get("path")
    if not path:
        return
    with open(path, "a") as f:
        f.write(f"hello: {event} {json.dumps(container, sort_keys=True)}\n")


@hookimpl
def pallet_on_container_created(kernel, container):
    _record(kernel, "created", container)


@hookimpl
def pallet_on_container_started(kernel, container):
    _record(kernel, "started", container)


@hookimpl
def pallet_on_container_exited(kernel, container, exit_code):
    _record(kernel, "exited", container)


@hookimpl
def pallet_on_container_removed(kernel, container):
    _record(kernel, "removed", container)
