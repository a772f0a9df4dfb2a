"""runtime_ns: the ``runtime`` role (runc's place in the chain).

Wiring only; the runtime is ``runtime.NsRuntime``.  Configuration
(``[plugins.runtime_ns]``): ``root`` overrides the state root (default
``kernel.paths.runtime_root``).  When an init role is loaded, its object is
handed to the runtime for specs that ask for the builtin init.
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "runtime"


@hookimpl
def pallet_provide_runtime(kernel):
    from pallet.plugins.runtime_ns.runtime import NsRuntime

    root = kernel.plugin_config("runtime_ns").get("root") or kernel.paths.runtime_root
    init = kernel.provide("init") if kernel.has_role("init") else None
    return NsRuntime(root=root, init=init)
