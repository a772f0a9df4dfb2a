"""init_tini: the ``init`` role (docker's --init) with a tini-like PID 1
written in Python, run in-process by runtimes that fork PID 1 themselves.

Wiring only: the init itself is in ``init.py``, its part of the spec in
``spec.py``.  Configuration (``[plugins.init_tini]``): ``init_path`` names a
static init binary (tini, docker-init) to bind-mount at /sbin/docker-init
instead of the builtin one; ``kill_group`` forwards signals to the child's
process group (tini -g).
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "init"


@hookimpl
def pallet_provide_init(kernel):
    from pallet.plugins.init_tini.init import TiniInit

    cfg = kernel.plugin_config("init_tini")
    return TiniInit(kill_group=bool(cfg.get("kill_group")), init_path=cfg.get("init_path"))
