"""store_overlay: containerd's image and storage role for pallet.

Modules, one job each:

``store``        the ImageStore the plugin provides (lazy handle on the rest)
``content``      blobs by digest; ``ingest`` its resumable uploads
``metadata``     images, namespaces, leases per containerd namespace (SQLite)
``snapshots``    overlayfs and native snapshotters; ``mount`` mounts their Mounts
``apply``        applying layers safely (``confined`` path resolution,
                 ``compression`` sniffing)
``images``       manifests, indexes, platforms, chain IDs, unpack
``archive``      docker-save / OCI layout reader and docker-save writer
``builtin``      the busybox image built from the host's busybox-static
``gc``           mark-and-sweep of content, snapshots, ingests, ended leases
``registry``     the OCI distribution client (aiohttp); ``auth`` its
                 credentials (config.json, X-Registry-Auth) and challenges
``pull``, ``push``  docker pull / push (and ``/auth`` login) over a
                 ``targets.ContentTarget``: this store (``LocalTarget``) or
                 containerd's gRPC API (``ContainerdTarget``)
``progress``     docker's JSON progress messages
``imageops``     history, import (with ``-c`` changes), export
``db``, ``digests``, ``filters``  shared helpers (SQLite, digests, list filters)
``plugin``       wiring only
"""
