"""builder_dockerfile: the ``builder`` role, ``docker build`` from a Dockerfile
through the whole chain (containers, snapshots, the diff service and images
of pallet-containerd, reached through the engine library).

Wiring only: the parser is ``dockerfile.py`` and ``instructions.py``, the
steps ``dispatch.py`` (``filesteps.py``, ``runstep.py``), the context
``context.py``, the cache ``cache.py``.  It has no configuration of its own:
the steps' containers follow the ``[engine]`` table like every container.
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "builder"
NAME = "builder_dockerfile"


@hookimpl
def pallet_provide_builder(kernel):
    from pallet.plugins.builder_dockerfile.builder import DockerfileBuilder

    return DockerfileBuilder(kernel, kernel.plugin_config(NAME))
