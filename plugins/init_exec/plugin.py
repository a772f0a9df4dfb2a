"""init_exec: the ``init`` role with a static init binary from the host.

Wiring only; the init is ``init.ExecInit``.  Configuration
(``[plugins.init_exec]``): ``binary``, the init on the host (a path or a
name on PATH; default ``/usr/bin/tini-static``, from Debian's ``tini``),
bind-mounted read-only at ``/sbin/docker-init`` in every container started
with ``--init``.
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "init"


@hookimpl
def pallet_provide_init(kernel):
    from pallet.plugins.init_exec.init import DEFAULT_BINARY, ExecInit

    return ExecInit(str(kernel.plugin_config("init_exec").get("binary") or DEFAULT_BINARY))
