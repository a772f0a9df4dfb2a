"""Append a line to a file every time a container starts.

Configure it in pallet.toml::

    [plugins.hello]
    path = "/var/log/pallet-hello.log"

It fills no role (``PALLET_ROLE = None``): it only listens to an event hook,
so the daemon runs the same with or without it.
"""
import json
import time

from pallet.core.hookspecs import hookimpl

PALLET_ROLE = None


@hookimpl
def pallet_on_container_started(kernel, container):
    path = kernel.plugin_config("hello").get("path")
    if not path:
        return
    line = json.dumps({"time": time.time(), "id": container.get("id"),
                       "name": container.get("name"), "image": container.get("image")})
    with open(path, "a") as f:
        f.write(f"hello: container started {line}\n")
