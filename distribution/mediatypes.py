"""The media types of images and their parts (Docker's schema 2 and OCI's),
and the content labels containerd's client and garbage collector read."""
from __future__ import annotations

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

MANIFEST_TYPES = (MT_DOCKER_MANIFEST, MT_OCI_MANIFEST)
INDEX_TYPES = (MT_DOCKER_MANIFEST_LIST, MT_OCI_INDEX)

#: label containerd puts on a committed layer snapshot: the chain ID it holds
LABEL_SNAPSHOT_REF = "containerd.io/snapshot.ref"
#: containerd's GC labels: a root; a lease's expiry (RFC 3339 UTC); references
#: to a blob (prefix of ``...content.<anything>``) and to a snapshot (prefix of
#: ``...snapshot.<snapshotter>[/<anything>]``)
LABEL_GC_ROOT = "containerd.io/gc.root"
LABEL_GC_EXPIRE = "containerd.io/gc.expire"
LABEL_GC_REF_CONTENT = "containerd.io/gc.ref.content."
LABEL_GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
#: label on the config blob naming the top snapshot of an unpacked image
LABEL_GC_SNAPSHOT = LABEL_GC_REF_SNAPSHOT + "{}"
#: label containerd's unpacker puts on layer blobs: their uncompressed digest
LABEL_UNCOMPRESSED = "containerd.io/uncompressed"
