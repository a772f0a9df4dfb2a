"""api_cri: the Container Runtime Interface (``runtime.v1.RuntimeService``
and ``runtime.v1.ImageService``, k8s.io/cri-api v0.36) served by
pallet-containerd on its own socket, as containerd's CRI plugin serves it,
so that kubelet and crictl drive pallet.

An extension plugin: pallet-containerd loads it with the others and it
registers its services through the gRPC-services hook, over
pallet-containerd's service layer.  Wiring only: the runtime is in
``cri.py``, the translators in ``services.py``, pods in ``sandbox.py``,
containers in ``container.py``, logs in ``logs.py``, the streaming server
in ``streaming.py``.  Configuration: ``[plugins.api_cri]`` (see
``config.py``).
"""
import weakref

from pallet.core.hookspecs import hookimpl

PALLET_ROLE = None
#: kernel -> its runtime, once pallet-containerd has registered the services
_runtimes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@hookimpl
def pallet_configure(kernel):
    from pallet.plugins.api_cri.config import CRIConfig

    section = kernel.plugin_config("api_cri")
    section.pop("registry", None)
    CRIConfig.load(section, "/", "/")


@hookimpl
def pallet_register_grpc_services(kernel, server, services):
    from pallet.plugins.api_cri.cri import CRI
    from pallet.plugins.api_cri.services import register

    runtime = _runtimes[kernel] = CRI(kernel, services)
    register(server, runtime)


@hookimpl
def pallet_startup(kernel):
    runtime = _runtimes.get(kernel)
    if runtime is not None:
        runtime.start()


@hookimpl
def pallet_shutdown(kernel):
    runtime = _runtimes.pop(kernel, None)
    if runtime is not None:
        runtime.stop()
