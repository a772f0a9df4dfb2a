"""Images as palletd sees them: containerd's images in the ``moby`` namespace,
shown in docker's shapes (ImageSummary, ImageInspect), and ``docker load``."""
from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time

from pallet.core import errors
from pallet.core.models import Reference, familiar_name

log = logging.getLogger("pallet.api_rest.images")

_HEXPREFIX = re.compile(r"^(sha256:)?([0-9a-f]{1,64})$")


class ImageRecord:
    """One image: every name pointing at it, its manifest and config."""

    def __init__(self, target: dict, manifest_digest: str, manifest: dict, config: dict,
                 names: list[str], created_at: float):
        self.target = target
        self.manifest_digest = manifest_digest
        self.manifest = manifest
        self.config = config
        self.names = names
        self.created_at = created_at

    @property
    def id(self) -> str:
        return self.manifest["config"]["digest"]

    @property
    def size(self) -> int:
        return sum(int(layer.get("size", 0)) for layer in self.manifest.get("layers") or ())

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def repo_tags(self) -> list[str]:
        return sorted(familiar_name(n) for n in self.names if "@" not in n)

    @property
    def created_unix(self) -> int:
        from pallet.plugins.api_rest.logs import parse_time

        try:
            return int(parse_time(_normalise_time(self.config.get("created", ""))) / 1e9)
        except (TypeError, ValueError):
            return int(self.created_at)

    def summary(self, containers: int = -1) -> dict:
        return {
            "Id": self.id, "ParentId": "", "RepoTags": self.repo_tags, "RepoDigests": [],
            "Created": self.created_unix, "Size": self.size, "SharedSize": -1,
            "VirtualSize": self.size, "Labels": (self.config.get("config") or {}).get("Labels")
            or {}, "Containers": containers,
        }

    def inspect(self) -> dict:
        cfg = self.config.get("config") or {}
        return {
            "Id": self.id, "RepoTags": self.repo_tags, "RepoDigests": [], "Parent": "",
            "Comment": self.config.get("comment", ""),
            "Created": self.config.get("created", ""),
            "Container": "", "ContainerConfig": _container_config(cfg),
            "DockerVersion": self.config.get("docker_version", ""),
            "Author": self.config.get("author", ""), "Config": _container_config(cfg),
            "Architecture": self.config.get("architecture", ""),
            "Variant": self.config.get("variant", "") or None,
            "Os": self.config.get("os", ""), "Size": self.size, "VirtualSize": self.size,
            "GraphDriver": {"Name": "overlayfs", "Data": None},
            "RootFS": {"Type": "layers", "Layers": self.diff_ids},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }


def _container_config(cfg: dict) -> dict:
    """An image config's ``config`` in docker's ContainerConfig shape."""
    return {
        "Hostname": "", "Domainname": "", "User": cfg.get("User", ""),
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "ExposedPorts": cfg.get("ExposedPorts"), "Tty": False, "OpenStdin": False,
        "StdinOnce": False, "Env": cfg.get("Env"), "Cmd": cfg.get("Cmd"),
        "Image": "", "Volumes": cfg.get("Volumes"), "WorkingDir": cfg.get("WorkingDir", ""),
        "Entrypoint": cfg.get("Entrypoint"), "OnBuild": cfg.get("OnBuild"),
        "Labels": cfg.get("Labels"), "StopSignal": cfg.get("StopSignal"),
    }


def _normalise_time(text: str) -> str:
    """Image ``created`` times come with any fraction and offset; keep UTC ``Z`` ones."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]00:00)?$", text or "")
    if not m:
        raise ValueError(text)
    return m.group(1) + (m.group(2) or ".0") + "Z"


class ImageService:
    """docker's image operations over containerd's Images, Content and Snapshots."""

    def __init__(self, kernel, ctrd, snapshotter: str = "overlayfs"):
        self.kernel = kernel
        self.ctrd = ctrd
        self.snapshotter = snapshotter
        self._docs: dict[str, dict] = {}  # digest -> parsed manifest/config (immutable)
        self.in_use = lambda image_id: []  # set by the container service

    # --- reading -------------------------------------------------------------
    async def _json(self, digest: str) -> dict:
        doc = self._docs.get(digest)
        if doc is None:
            doc = await self.ctrd.content_read_json(digest)
            if len(self._docs) > 4096:
                self._docs.clear()
            self._docs[digest] = doc
        return doc

    async def _record(self, image, names: list[str]) -> ImageRecord:
        from pallet.core.containerd import descriptor_to_dict, select_manifest, INDEX_TYPES

        target = descriptor_to_dict(image.target)
        desc = target
        for _ in range(8):
            doc = await self._json(desc["digest"])
            if desc.get("mediaType") in INDEX_TYPES or ("manifests" in doc and "layers" not in doc):
                desc = select_manifest(doc)
                continue
            break
        if "config" not in doc:
            raise errors.InvalidArgument(f"image {image.name}: target is not a manifest")
        config = await self._json(doc["config"]["digest"])
        created = image.created_at.seconds if image.HasField("created_at") else time.time()
        return ImageRecord(target, desc["digest"], doc, config, names, created)

    async def all(self) -> list[ImageRecord]:
        """Every image, one record per config (names grouped), newest first."""
        images = await self.ctrd.images()
        by_target: dict[str, list] = {}
        for img in images:
            by_target.setdefault(img.target.digest, []).append(img)
        records: dict[str, ImageRecord] = {}
        for digest, imgs in by_target.items():
            try:
                rec = await self._record(imgs[0], [i.name for i in imgs])
            except errors.PalletError as e:
                log.warning("skipping image %s: %s", imgs[0].name, e)
                continue
            if rec.id in records:
                records[rec.id].names.extend(rec.names)
            else:
                records[rec.id] = rec
        return sorted(records.values(), key=lambda r: -r.created_unix)

    async def get(self, ref: str) -> ImageRecord:
        """By name (``busybox``, ``busybox:latest``, full name) or id / unique id prefix."""
        if not ref:
            raise errors.NotFound("No such image: ")
        name = None
        try:
            name = str(Reference.parse(ref))
        except errors.InvalidArgument:
            if not _HEXPREFIX.match(ref):
                raise
        if name is not None:
            try:
                img = await self.ctrd.image_get(name)
            except errors.NotFound:
                img = None
            if img is not None:
                rec = await self._record(img, [name])
                others = await self.ctrd.images([f"target.digest=={img.target.digest}"])
                rec.names = sorted({name, *(o.name for o in others)})
                return rec
        m = _HEXPREFIX.match(ref)
        if m and (ref.startswith("sha256:") or len(m.group(2)) >= 1):
            want = "sha256:" + m.group(2)
            found = [r for r in await self.all() if r.id.startswith(want)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1 and len(m.group(2)) < 64:
                raise errors.InvalidArgument(f"multiple images found with provided prefix: {ref}")
        raise errors.NotFound(f"No such image: {_display(ref)}")

    async def unpack(self, rec: ImageRecord) -> str:
        """Make sure the image's layers are snapshots; the top chain ID."""
        if not rec.diff_ids:
            return ""
        name = next((n for n in rec.names), None)
        if name is None:
            raise errors.NotFound(f"image {rec.id} has no name to unpack")
        return await self.ctrd.unpack(name, self.snapshotter)

    # --- removing --------------------------------------------------------------
    async def delete(self, ref: str, *, force: bool = False) -> list[dict]:
        """``docker rmi``: untag a name, and delete the image with its last name."""
        rec = await self.get(ref)
        by_name = False
        name = None
        try:
            name = str(Reference.parse(ref))
            by_name = name in rec.names
        except errors.InvalidArgument:
            pass
        users = self.in_use(rec.id)
        short = rec.id.split(":", 1)[1][:12]
        if by_name and len(rec.names) > 1:
            await self.ctrd.image_delete(name)
            return [{"Untagged": familiar_name(name)}]
        if not by_name and len(rec.names) > 1 and not force:
            raise errors.Conflict(f"conflict: unable to delete {short} (must be forced) - image "
                                  "is referenced in multiple repositories")
        if users and not force:
            if by_name:
                raise errors.Conflict(
                    f'conflict: unable to remove repository reference "{_display(ref)}" '
                    f"(must force) - container {users[0][:12]} is using its referenced image "
                    f"{short}")
            raise errors.Conflict(f"conflict: unable to delete {short} (must be forced) - image "
                                  f"is being used by stopped container {users[0][:12]}")
        out = []
        names = [name] if by_name else list(rec.names)
        for n in names:
            try:
                await self.ctrd.image_delete(n)
            except errors.NotFound:
                continue
            out.append({"Untagged": familiar_name(n)})
        if not users:
            out.append({"Deleted": rec.id})
        return out

    # --- loading -----------------------------------------------------------------
    async def load(self, body, progress) -> None:
        """``docker load``: a docker-save tarball or an OCI layout archive from
        ``body`` (an aiohttp StreamReader); ``progress(dict)`` gets docker's
        JSON-lines messages."""
        from pallet.plugins.api_rest import loader

        tmpdir = os.path.join(self.kernel.paths.data_root, "tmp")
        os.makedirs(tmpdir, mode=0o700, exist_ok=True)
        path = os.path.join(tmpdir, f"load-{secrets.token_hex(8)}.tar")
        try:
            with open(path, "wb") as f:
                while True:
                    chunk = await body.read(1 << 20)
                    if not chunk:
                        break
                    await asyncio.get_running_loop().run_in_executor(None, f.write, chunk)
            if os.path.getsize(path) == 0:
                raise errors.InvalidArgument("empty export - not a tar archive")
            await loader.load_archive(self, path, progress)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass


def _display(ref: str) -> str:
    return ref
