"""Following an image's target (an index or a manifest) to one platform's
manifest and config, over any content reader (``read(digest) -> bytes``),
and the GC labels by which a manifest or an index keeps its children."""
from __future__ import annotations

import json

import attrs

from pallet.core.errors import InvalidArgument
from pallet.core.models import Descriptor
from pallet.distribution.mediatypes import INDEX_TYPES, LABEL_GC_REF_CONTENT, MANIFEST_TYPES
from pallet.distribution.platforms import Platform, chain_ids, select_manifest


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
        if desc.media_type not in INDEX_TYPES:
            break
        index = read_json(content, desc.digest)
        desc = Descriptor.from_oci(select_manifest(index, platform, f"image index {desc.digest}"))
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


def gc_labels(doc: dict) -> dict[str, str]:
    """containerd's GC references of a manifest or an index to its children
    (``containerd.io/gc.ref.content.config``, ``.l.<i>``, ``.m.<i>``), as its
    importer and its pull set them."""
    labels = {}
    cfg = doc.get("config")
    if isinstance(cfg, dict) and cfg.get("digest"):
        labels[LABEL_GC_REF_CONTENT + "config"] = cfg["digest"]
    for i, layer in enumerate(doc.get("layers") or []):
        if isinstance(layer, dict) and layer.get("digest"):
            labels[f"{LABEL_GC_REF_CONTENT}l.{i}"] = layer["digest"]
    for i, m in enumerate(doc.get("manifests") or []):
        if isinstance(m, dict) and m.get("digest"):
            labels[f"{LABEL_GC_REF_CONTENT}m.{i}"] = m["digest"]
    return labels
