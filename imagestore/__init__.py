"""The image store's shared parts, for the plugins of the image_store role
(store_overlay, store_native, a third party's), which add their snapshotters.

``store``        :class:`~.store.ImageStore`, the role's object
                 (:class:`pallet.core.contracts.ImageStore`), built by a plugin
                 with its snapshotter classes
``snapshots``    the snapshotter base class (containerd's snapshot tree over a
                 metadata table) and the per-namespace view of a snapshotter
``content``      blobs by digest; ``ingest`` their resumable uploads
``metadata``     namespaces, images and leases, with ``containers`` (container
                 records) and ``contentrefs`` (which namespace holds which
                 blob): containerd's metadata, one SQLite file, one owner
``gc``           mark and sweep over all of it
``apply``        applying layers safely (containerd's Diff.Apply)
``images``       unpacking an image's layers into snapshots
``imageops``     history, import (with ``-c`` changes), export
``target``       pull and push next to the store
``db``, ``sqlite``  what the tables share
"""
