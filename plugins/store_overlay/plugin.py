"""store_overlay: containerd's image and storage role (content store, image
metadata, overlayfs and native snapshotters, layer applier, image archives).

Wiring only: the work is in the sibling modules.  Configuration::

    [plugins.store_overlay]
    snapshotter = "overlayfs"    # default snapshotter: "overlayfs" or "native"
    # registries (dockerd's names; see registry.RegistryOptions.from_config)
    insecure-registries = ["myregistry:5000", "10.0.0.0/8"]
    registry-mirrors = ["https://mirror.example"]
    max-concurrent-downloads = 3
    max-concurrent-uploads = 5
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "image_store"
NAME = "store_overlay"


@hookimpl
def pallet_configure(kernel):
    from pallet.core.errors import ConfigError
    from pallet.imagestore.store import SNAPSHOTTERS

    from pallet.core.errors import InvalidArgument
    from pallet.distribution.registry import RegistryOptions

    section = kernel.plugin_config(NAME)
    name = section.get("snapshotter", "overlayfs")
    if name not in SNAPSHOTTERS:
        raise ConfigError(f"plugins.{NAME}: configured snapshotter {name!r}, "
                          f"found [{', '.join(SNAPSHOTTERS)}]")
    try:
        RegistryOptions.from_config(section)
    except InvalidArgument as e:
        raise ConfigError(f"plugins.{NAME}: {e.message}") from None


@hookimpl
def pallet_provide_image_store(kernel):
    from pallet.distribution.registry import RegistryOptions
    from pallet.imagestore.store import SNAPSHOTTERS, ImageStore

    paths = kernel.paths
    section = kernel.plugin_config(NAME)
    return ImageStore(
        content_root=paths.content_root,
        metadata_db=paths.metadata_db,
        snapshotter_roots={name: paths.snapshotter_root(name) for name in SNAPSHOTTERS},
        default_snapshotter=section.get("snapshotter", "overlayfs"),
        registry_options=RegistryOptions.from_config(section))
