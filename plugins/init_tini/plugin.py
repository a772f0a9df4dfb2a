"""init_tini: the ``init`` role (docker's --init).

Wiring only: the init itself is in ``init.py``.  Configuration
(``[plugins.init_tini]``): ``init_path`` names a static init binary (tini,
docker-init) to bind-mount at /sbin/docker-init instead of the builtin one;
``kill_group`` forwards signals to the child's process group (tini -g).
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "init"

#: where dockerd puts its init inside the container
INIT_TARGET = "/sbin/docker-init"


@hookimpl
def pallet_provide_init(kernel):
    from .init import TiniInit

    return TiniInit(kill_group=bool(kernel.plugin_config("init_tini").get("kill_group")))


@hookimpl
def pallet_build_spec(kernel, spec, container):
    if not container.get("init"):
        return
    from .spec import add_init

    add_init(spec, kernel.plugin_config("init_tini").get("init_path"), INIT_TARGET)
