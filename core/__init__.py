"""pallet's microkernel: hook specifications, configuration, plugin loading,
models, errors and the supervisor.  Nothing here touches Linux; that is the
plugins' work.

Another Python program can embed the engine::

    from pallet.core.kernel import Kernel
    kernel = Kernel.load(roles=("runtime", "init"))
    runtime = kernel.provide("runtime")
"""
