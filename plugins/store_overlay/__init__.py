"""store_overlay: the image_store role with containerd's overlayfs snapshotter.

``overlay``  the overlayfs snapshotter (upper and work directories per
             snapshot, its parents as lower directories)
``plugin``   wiring only

Everything else of the role (content store, metadata, GC, unpack, archives)
is the library :mod:`pallet.imagestore`, shared with store_native.
"""
