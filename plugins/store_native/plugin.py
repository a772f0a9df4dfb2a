"""store_native: containerd's image and storage role over plain copies.

Wiring only: the snapshotter is :mod:`.native`, the rest of the store the
library :mod:`pallet.imagestore`.  Chosen with::

    [roles]
    image_store = "store_native"

    [plugins.store_native]
    # registries of the pulls and pushes made next to the store, as in
    # [plugins.store_overlay]
    insecure-registries = ["myregistry:5000"]

Snapshots live in containerd's native root
(``io.containerd.snapshotter.v1.native``); content and metadata are where
store_overlay keeps them, so switching the role keeps images, containers
and leases (the snapshots of the other snapshotter stay on disk, unused).
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "image_store"
NAME = "store_native"


@hookimpl
def pallet_configure(kernel):
    from pallet.imagestore.store import registry_options

    registry_options(kernel.plugin_config(NAME), NAME)


@hookimpl
def pallet_provide_image_store(kernel):
    from pallet.imagestore.store import ImageStore, registry_options
    from pallet.plugins.store_native.native import NativeSnapshotter

    return ImageStore.at(kernel.paths, [NativeSnapshotter],
                         registry_options(kernel.plugin_config(NAME), NAME))
