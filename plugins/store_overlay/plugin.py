"""store_overlay: containerd's image and storage role over overlayfs.

Wiring only: the snapshotter is :mod:`.overlay`, the rest of the store the
library :mod:`pallet.imagestore`.  It offers containerd's ``overlayfs``
snapshotter only: on a filesystem where overlayfs cannot be stacked (a data
root that is itself overlayfs, some rootless set-ups) choose store_native,
whose copies work anywhere.  One snapshotter per plugin keeps each swap a
choice of the role, and neither plugin imports the other.  Configuration::

    [plugins.store_overlay]
    # registries of the pulls and pushes made next to the store (dockerd's
    # names; see pallet.distribution.registry.RegistryOptions.from_config);
    # palletd's own pulls read [engine.registry]
    insecure-registries = ["myregistry:5000", "10.0.0.0/8"]
    registry-mirrors = ["https://mirror.example"]
    max-concurrent-downloads = 3
    max-concurrent-uploads = 5

The former ``snapshotter`` key is accepted only as ``"overlayfs"``; its
``"native"`` is now ``[roles] image_store = "store_native"``.
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "image_store"
NAME = "store_overlay"


@hookimpl
def pallet_configure(kernel):
    from pallet.core.errors import ConfigError
    from pallet.imagestore.store import registry_options

    section = kernel.plugin_config(NAME)
    snapshotter = section.get("snapshotter", "overlayfs")
    if snapshotter != "overlayfs":
        raise ConfigError(f"plugins.{NAME}: snapshotter {snapshotter!r}: this plugin offers "
                          "[overlayfs]; for native copies set [roles] image_store = "
                          '"store_native"')
    registry_options(section, NAME)


@hookimpl
def pallet_provide_image_store(kernel):
    from pallet.imagestore.store import ImageStore, registry_options
    from pallet.plugins.store_overlay.overlay import OverlaySnapshotter

    return ImageStore.at(kernel.paths, [OverlaySnapshotter],
                         registry_options(kernel.plugin_config(NAME), NAME))
