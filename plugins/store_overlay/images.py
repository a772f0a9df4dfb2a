"""Reading images out of the content store: manifests, indexes, configs,
platforms, chain IDs, and unpacking layers into a snapshotter.

These are the steps containerd's client library does (``images.Manifest``,
``identity.ChainIDs``, ``rootfs.ApplyLayers``); pallet runs them next to the
store, for palletd (image inspect, create) and for tests.
"""
from __future__ import annotations

import hashlib
import json
import platform as _platform
import time
import uuid
from typing import Sequence

import attrs

from pallet.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pallet.core.models import Descriptor

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
#: label on the config blob naming the top snapshot of an unpacked image
LABEL_GC_SNAPSHOT = "containerd.io/gc.ref.snapshot.{}"
#: label containerd's unpacker puts on layer blobs: their uncompressed digest
LABEL_UNCOMPRESSED = "containerd.io/uncompressed"

_GOARCH = {"x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", "v8"),
           "arm64": ("arm64", "v8"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
           "i386": ("386", ""), "i686": ("386", ""), "ppc64le": ("ppc64le", ""),
           "s390x": ("s390x", ""), "riscv64": ("riscv64", "")}


@attrs.frozen
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    @classmethod
    def host(cls) -> "Platform":
        """The platform of this machine, in Go's names (``amd64``, ``arm64/v8``)."""
        machine = _platform.machine()
        arch, variant = _GOARCH.get(machine, (machine, ""))
        return cls("linux", arch, variant)

    def matches(self, d: dict | None) -> bool:
        """Whether an OCI platform object fits this platform (arm64's v8 is optional)."""
        if not d:
            return False
        if d.get("os") != self.os or d.get("architecture") != self.architecture:
            return False
        variant = d.get("variant", "")
        return not variant or not self.variant or variant == self.variant


@attrs.frozen
class ResolvedImage:
    """One platform's manifest of an image, with its parsed config."""

    manifest_desc: Descriptor
    config_desc: Descriptor
    layers: tuple[Descriptor, ...]
    config: dict = attrs.field(eq=False, repr=False)

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(self.config.get("rootfs", {}).get("diff_ids", ()))

    @property
    def chain_ids(self) -> tuple[str, ...]:
        return chain_ids(self.diff_ids)

    @property
    def image_id(self) -> str:
        """Docker's image ID: the config digest."""
        return self.config_desc.digest


def chain_ids(diff_ids: Sequence[str]) -> tuple[str, ...]:
    """OCI chain IDs: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else
                   "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return tuple(out)


def read_json(content, digest: str) -> dict:
    """A JSON blob of the content store."""
    try:
        return json.loads(content.read(digest))
    except ValueError as e:
        raise InvalidArgument(f"content {digest}: not valid JSON ({e})") from None


def resolve(content, target: Descriptor, platform: Platform | None = None) -> ResolvedImage:
    """Follow an image's target (index or manifest) to the manifest for
    ``platform`` (default: this machine) and read its config."""
    platform = platform or Platform.host()
    desc = target
    for _ in range(4):  # an index of indexes, at most a few levels deep
        if desc.media_type in INDEX_TYPES:
            index = read_json(content, desc.digest)
            chosen = None
            manifests = index.get("manifests") or []
            for m in manifests:
                if platform.matches(m.get("platform")):
                    chosen = m
                    break
            if chosen is None and len(manifests) == 1 and not manifests[0].get("platform"):
                chosen = manifests[0]
            if chosen is None:
                raise NotFound(f"image index {desc.digest}: no manifest for platform "
                               f"{platform.os}/{platform.architecture}")
            desc = Descriptor.from_oci(chosen)
            continue
        break
    if desc.media_type not in MANIFEST_TYPES:
        raise InvalidArgument(f"content {desc.digest}: unsupported manifest media type "
                              f"{desc.media_type!r}")
    manifest = read_json(content, desc.digest)
    config_desc = Descriptor.from_oci(manifest["config"])
    layers = tuple(Descriptor.from_oci(layer) for layer in manifest.get("layers") or ())
    config = read_json(content, config_desc.digest)
    if len(config.get("rootfs", {}).get("diff_ids", ())) != len(layers):
        raise InvalidArgument(f"image {desc.digest}: {len(layers)} layers but "
                              f"{len(config.get('rootfs', {}).get('diff_ids', ()))} diff IDs")
    return ResolvedImage(desc, config_desc, layers, config)


def unpack_layer(snapshotter, applier, layer: Descriptor, diff_id: str, chain_id: str,
                 parent: str | None, on_key=None) -> bool:
    """Make ``layer`` the committed snapshot ``chain_id`` on top of ``parent``
    unless it exists; return whether it was unpacked now.

    The layer is applied into a fresh active snapshot (``extract-...`` key,
    passed to ``on_key`` first so that a caller can lease it), checked against
    its diff ID and committed; any failure removes the half-applied snapshot.
    """
    try:
        info = snapshotter.stat(chain_id)
    except NotFound:
        info = None
    if info is not None:
        if info.kind != "committed":
            raise FailedPrecondition(f"snapshot {chain_id} exists but is not committed")
        return False
    key = f"extract-{time.time_ns()}-{uuid.uuid4().hex[:8]} {chain_id}"
    if on_key is not None:
        on_key(key)
    mounts = snapshotter.prepare(key, parent, {LABEL_SNAPSHOT_REF: chain_id})
    try:
        diff = applier.apply(layer, mounts)
        if diff.digest != diff_id:
            raise InvalidArgument(f"layer {layer.digest}: uncompressed digest {diff.digest} "
                                  f"does not match diff ID {diff_id}")
        try:
            snapshotter.commit(chain_id, key, {LABEL_SNAPSHOT_REF: chain_id})
        except AlreadyExists:  # unpacked meanwhile by another caller
            snapshotter.remove(key)
            return False
    except BaseException:
        try:
            snapshotter.remove(key)
        except NotFound:
            pass
        raise
    return True


def label_unpacked(content, config_digest: str, snapshotter_name: str, top: str) -> None:
    """Label an image's config blob with the top snapshot of its unpacked layers
    (containerd's ``gc.ref.snapshot.<snapshotter>``), so that GC keeps them."""
    key = LABEL_GC_SNAPSHOT.format(snapshotter_name)
    try:
        content.update(config_digest, {key: top}, [f"labels.{key}"])
    except NotFound:
        pass


def unpack(content, snapshotter, applier, image: ResolvedImage,
           labels_snapshotter: str | None = None, on_key=None) -> str:
    """Make sure every layer of ``image`` is a committed snapshot named by its
    chain ID; return the top chain ID (the parent for a container's rootfs).

    Layers already unpacked are skipped (see :func:`unpack_layer`).
    ``labels_snapshotter`` names the snapshotter in the GC label put on the
    config blob (None: no label).
    """
    parent = None
    for layer, diff_id, chain_id in zip(image.layers, image.diff_ids, image.chain_ids):
        unpack_layer(snapshotter, applier, layer, diff_id, chain_id, parent, on_key)
        parent = chain_id
    if labels_snapshotter and parent:
        label_unpacked(content, image.config_desc.digest, labels_snapshotter, parent)
    return parent or ""
