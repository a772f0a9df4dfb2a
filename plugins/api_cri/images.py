"""CRI's ImageService over pallet-containerd's image store, as containerd's
CRI plugin keeps images in the ``k8s.io`` namespace.

An image is known by its ID, the digest of its config, which is what
``PullImageResponse.image_ref``, ``Image.id`` and containers' ``image_id``
all say.  A pull stores the image under its reference (through the same
distribution library and content store as the rest of pallet) and adds,
as containerd does, a record named by its repo digest
(``repo@sha256:<manifest>``) and one named by its ID, all labelled
``io.cri-containerd.image=managed``; removing the image removes every name
that leads to that ID.  Images imported otherwise (``ctr -n k8s.io images
import``) are listed too, grouped by ID.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time

from pallet.core import errors
from pallet.core.models import Descriptor
from pallet.distribution import manifests
from pallet.distribution.auth import Credentials
from pallet.distribution.reference import Reference
from pallet.proto.containerd.services.images.v1 import images_pb2
from pallet.proto.cri.runtime.v1 import api_pb2 as cri

from pallet.plugins.api_cri.config import NAMESPACE

log = logging.getLogger("pallet.cri.images")

MANAGED_LABEL = "io.cri-containerd.image"
PINNED_LABEL = "io.cri-containerd.pinned"


class ImageInfo:
    """One image as CRI sees it: its ID, names, config and top snapshot."""

    def __init__(self, id: str, target: Descriptor, resolved, names: list[str], labels: dict):
        self.id, self.target, self.resolved = id, target, resolved
        self.names = sorted(set(names))
        self.labels = labels

    @property
    def config(self) -> dict:
        return self.resolved.config.get("config") or {}

    @property
    def chain_id(self) -> str:
        ids = self.resolved.chain_ids
        return ids[-1] if ids else ""

    @property
    def repo_tags(self) -> list[str]:
        return [n for n in self.names if "@" not in n and not n.startswith("sha256:")]

    @property
    def repo_digests(self) -> list[str]:
        return [n for n in self.names if "@" in n]

    def size(self) -> int:
        r = self.resolved
        return r.manifest_desc.size + r.config_desc.size + sum(l.size for l in r.layers)

    def message(self) -> cri.Image:
        img = cri.Image(id=self.id, repo_tags=self.repo_tags, repo_digests=self.repo_digests,
                        size=self.size(), spec=cri.ImageSpec(image=self.id),
                        pinned=self.labels.get(PINNED_LABEL) == "pinned")
        user = str(self.config.get("User") or "")
        name = user.split(":", 1)[0]
        if name.isdigit():
            img.uid.value = int(name)
        elif name:
            img.username = name
        return img


def normalize(ref: str) -> str:
    """The stored name of a reference (``busybox`` -> ``docker.io/library/busybox:latest``)."""
    return str(Reference.parse(ref))


def credentials(auth: cri.AuthConfig | None) -> Credentials | None:
    if auth is None:
        return None
    user, password = auth.username, auth.password
    if auth.auth and not user:
        try:
            user, _, password = base64.b64decode(auth.auth).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise errors.InvalidArgument("invalid auth in the pull request") from None
    creds = Credentials(username=user, password=password, identity_token=auth.identity_token,
                        registry_token=auth.registry_token)
    return creds or None


class Images:
    """The image side of api_cri."""

    def __init__(self, services, store, snapshotter: str, registry_options=None):
        self.services = services          # pallet.containerd_services Backend
        self.store = store                # the image_store role
        self.snapshotter = snapshotter or store.default_snapshotter
        self.registry_options = registry_options
        self._resolved: dict[str, object] = {}
        self._lock = threading.Lock()

    # --- lookups --------------------------------------------------------------------------
    def _resolve(self, target: Descriptor):
        with self._lock:
            hit = self._resolved.get(target.digest)
        if hit is None:
            hit = manifests.resolve(self.store.content, target)
            with self._lock:
                self._resolved[target.digest] = hit
        return hit

    def all(self) -> dict[str, ImageInfo]:
        """Every image of the namespace by ID."""
        out: dict[str, ImageInfo] = {}
        for rec in self.services.image_list(NAMESPACE, None):
            try:
                resolved = self._resolve(rec.target)
            except errors.PalletError as e:
                log.debug("image %s: %s", rec.name, e)
                continue
            id = resolved.image_id
            info = out.get(id)
            if info is None:
                out[id] = ImageInfo(id, rec.target, resolved, [rec.name], dict(rec.labels))
            else:
                info.names = sorted(set(info.names) | {rec.name})
                info.labels.update(rec.labels)
        return out

    def find(self, ref: str) -> ImageInfo | None:
        """By ID (``sha256:...``, the bare hex, or a unique prefix), name or repo digest."""
        if not ref:
            raise errors.InvalidArgument("image must not be empty")
        images = self.all()
        hexid = ref[len("sha256:"):] if ref.startswith("sha256:") else ref
        if all(c in "0123456789abcdef" for c in hexid) and len(hexid) >= 4:
            found = [i for i in images.values() if i.id[len("sha256:"):].startswith(hexid)]
            if len(found) == 1:
                return found[0]
        try:
            name = normalize(ref)
        except errors.InvalidArgument:
            return None
        for info in images.values():
            if name in info.names:
                return info
        return None

    def get(self, ref: str) -> ImageInfo:
        info = self.find(ref)
        if info is None:
            raise errors.NotFound(f'failed to resolve image "{ref}": not found')
        return info

    # --- the RPCs ----------------------------------------------------------------------------
    def list(self, flt: cri.ImageFilter | None) -> list[cri.Image]:
        images = sorted(self.all().values(), key=lambda i: i.id)
        if flt is not None and flt.image.image:
            info = self.find(flt.image.image)
            images = [info] if info is not None else []
        return [i.message() for i in images]

    def status(self, spec: cri.ImageSpec, verbose: bool) -> tuple[cri.Image | None, dict]:
        info = self.find(spec.image)
        if info is None:
            return None, {}
        extra = {}
        if verbose:
            extra["info"] = json.dumps({"chainID": info.chain_id,
                                        "imageSpec": info.resolved.config})
        return info.message(), extra

    def pull(self, spec: cri.ImageSpec, auth: cri.AuthConfig | None) -> str:
        """Pull, name and unpack; the image ID."""
        from pallet.distribution.pull import pull_sync

        if not spec.image:
            raise errors.InvalidArgument("image must not be empty")
        ref = Reference.parse(spec.image)
        result = pull_sync(ref, self.store.target(NAMESPACE, self.snapshotter),
                           credentials=credentials(auth), options=self.registry_options)
        id = result.config.digest
        labels = {MANAGED_LABEL: "managed"}
        names = [result.name, f"{ref.repository}@{result.target.digest}", id]
        for name in dict.fromkeys(names):
            self._put(name, result.target, labels)
        return id

    def _put(self, name: str, target: Descriptor, labels: dict) -> None:
        msg = images_pb2.Image(name=name, labels=labels)
        msg.target.media_type, msg.target.digest, msg.target.size = \
            target.media_type, target.digest, target.size
        try:
            existing = self.services.image_get(NAMESPACE, name)
        except errors.NotFound:
            self.services.image_create(NAMESPACE, msg)
            return
        if existing.target.digest != target.digest or \
                any(existing.labels.get(k) != v for k, v in labels.items()):
            merged = {**dict(existing.labels), **labels}
            msg.labels.clear()
            msg.labels.update(merged)
            self.services.image_update(NAMESPACE, msg, [])

    def remove(self, spec: cri.ImageSpec) -> None:
        """Every name of the image goes (idempotent: a missing image is fine)."""
        info = self.find(spec.image)
        if info is None:
            return
        for name in info.names:
            try:
                self.services.image_delete(NAMESPACE, name)
            except errors.NotFound:
                pass

    def ensure_unpacked(self, info: ImageInfo) -> str:
        """The image's top snapshot in our snapshotter, unpacking it if need be."""
        sn = self.store.snapshotter(self.snapshotter).namespaced(NAMESPACE)
        try:
            sn.stat(info.chain_id)
            return info.chain_id
        except errors.NotFound:
            pass
        return self.store.unpack(info.target, self.snapshotter, namespace=NAMESPACE)

    def fs_info(self) -> cri.ImageFsInfoResponse:
        """Usage of the snapshotter's file system by images: bytes and inodes of
        the committed snapshots."""
        root = self._snapshot_root()
        sn = self.store.snapshotter(self.snapshotter).namespaced(NAMESPACE)
        used = inodes = 0
        try:
            for info in sn.list():
                if info.kind != "committed":
                    continue
                try:
                    u = sn.usage(info.name)
                except errors.PalletError:
                    continue
                used += int(getattr(u, "size", 0) or 0)
                inodes += int(getattr(u, "inodes", 0) or 0)
        except errors.PalletError as e:
            log.debug("snapshot usage: %s", e)
        now = time.time_ns()
        fs = cri.FilesystemUsage(timestamp=now, fs_id=cri.FilesystemIdentifier(mountpoint=root))
        fs.used_bytes.value = used
        fs.inodes_used.value = inodes
        return cri.ImageFsInfoResponse(image_filesystems=[fs], container_filesystems=[fs])

    def _snapshot_root(self) -> str:
        return self.services.paths.snapshotter_root(self.snapshotter)
