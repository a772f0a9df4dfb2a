"""runtime_ns: the ``runtime`` role (runc's place in the chain).

Wiring only; the runtime is ``runtime.NsRuntime``.  Configuration
(``[plugins.runtime_ns]``): ``root`` overrides the state root (default
``kernel.paths.runtime_root``).  When an init role is loaded, its object is
handed to the runtime for specs that ask for the builtin init, provided the
first time one does.

The hook is left unmarked (the kernel finds it by its ``pallet_`` name), so
that importing this module loads neither pluggy nor the runtime:
``pallet-runc`` imports it on the kernel's fast path for every command.
"""
PALLET_ROLE = "runtime"


def pallet_provide_runtime(kernel):
    from pallet.plugins.runtime_ns.runtime import NsRuntime

    root = kernel.plugin_config("runtime_ns").get("root")
    init = (lambda: kernel.provide("init")) if kernel.has_role("init") else None
    # the default root needs the kernel's paths: only computed if used (pallet-runc
    # gives its own --root through with_root)
    return NsRuntime(root=root or (lambda: kernel.paths.runtime_root), init_loader=init)
