"""Following an image's target (an index or a manifest) to one platform's
manifest and config, over any content reader (``read(digest) -> bytes``)."""
from __future__ import annotations

import json

import attrs

from pallet.core.errors import InvalidArgument, NotFound
from pallet.core.models import Descriptor
from pallet.distribution.mediatypes import INDEX_TYPES, MANIFEST_TYPES
from pallet.distribution.platforms import Platform, chain_ids


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
