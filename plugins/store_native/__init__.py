"""store_native: the image_store role with containerd's native snapshotter
(plain copies, like Docker's vfs driver), for filesystems on which overlayfs
cannot be stacked.

``native``   the copy-based snapshotter
``plugin``   wiring only

Everything else of the role (content store, metadata, GC, unpack, archives)
is the library :mod:`pallet.imagestore`, shared with store_overlay.
"""
