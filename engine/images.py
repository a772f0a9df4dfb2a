"""Images as palletd sees them: containerd's images in the ``moby`` namespace,
shown in docker's shapes (ImageSummary, ImageInspect, history entries), and
the operations on their names: tag, rmi, prune.

Names follow docker's containerd image store: every name of an image is a
containerd image (``docker.io/library/busybox:latest``, or ``repo@sha256:...``
for a pull by digest).  An image that loses its last name while something
still needs it (a tag moved to another image, ``rmi -f`` of an image a
container uses) keeps a ``moby-dangling@<digest>`` name, and shows as
``<none>``.  RepoDigests come from containerd's
``containerd.io/distribution.source.<host>`` labels on the image's manifest
(set by pull and push), so loaded and imported images have none, as in docker.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time

from pallet.core import errors
from pallet.distribution.reference import Reference, familiar_name
from pallet.engine.image_filters import (
    bool_filter,
    created_unix,
    labels_match,
    reference_matches,
    until_time)

log = logging.getLogger("pallet.api_rest.images")

DANGLING = "moby-dangling"
LABEL_SOURCE = "containerd.io/distribution.source."
_HEXPREFIX = re.compile(r"^(sha256:)?([0-9a-f]{1,64})$")


def emit(kernel, action: str, actor: str, name: str, labels: dict | None = None,
         **extra: str) -> None:
    """An image event of ``GET /events`` (dockerd's attributes: the image's
    labels and ``name``)."""
    try:
        from pallet.engine import events
    except ImportError:  # pragma: no cover — palletd without an event stream
        return
    events.emit(kernel, "image", action, actor, {**(labels or {}), "name": name, **extra})


def is_dangling_name(name: str) -> bool:
    return name.startswith(DANGLING + "@")


class ImageRecord:
    """One image: every name pointing at it, its manifest, config, the labels of
    its target blob and the (uncompressed) size of each layer."""

    def __init__(self, target: dict, manifest_desc: dict, manifest: dict, config: dict,
                 names: list[str], created_at: float, labels: dict | None = None,
                 layer_sizes: list[int] | None = None):
        self.target = target
        self.manifest_desc = manifest_desc
        self.manifest = manifest
        self.config = config
        self.names = names
        self.created_at = created_at
        self.labels = dict(labels or {})
        self.layer_sizes = list(layer_sizes) if layer_sizes is not None else \
            [int(x.get("size", 0)) for x in manifest.get("layers") or ()]

    @property
    def id(self) -> str:
        return self.manifest["config"]["digest"]

    @property
    def manifest_digest(self) -> str:
        return self.manifest_desc["digest"]

    @property
    def short_id(self) -> str:
        return self.id.partition(":")[2][:12]

    @property
    def size(self) -> int:
        return sum(self.layer_sizes)

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def chain_ids(self) -> list[str]:
        from pallet.containerd.client import chain_ids
        return chain_ids(self.diff_ids) if self.diff_ids else []

    @property
    def ref_names(self) -> list[str]:
        """The names that are references (tags and digests), not the dangling one."""
        return [n for n in self.names if not is_dangling_name(n)]

    @property
    def repo_tags(self) -> list[str]:
        return sorted(familiar_name(n) for n in self.ref_names if "@" not in n)

    @property
    def repo_digests(self) -> list[str]:
        """Digest references: the ``repo@digest`` names, and ``repo@<target>`` for
        each repository the manifest was pulled from or pushed to while the
        image has a tag in it (as dockerd drops a digest reference with the
        last tag of its repository)."""
        digest = self.target.get("digest", "")
        out = {familiar_name(n) for n in self.ref_names if "@" in n}
        tagged = {_repository(n) for n in self.ref_names if "@" not in n}
        for key, value in self.labels.items():
            if not key.startswith(LABEL_SOURCE):
                continue
            host = key[len(LABEL_SOURCE):]
            for repo in value.split(","):
                if repo and _repository(f"{host}/{repo}") in tagged:
                    out.add(familiar_name(f"{host}/{repo}@{digest}"))
        return sorted(out)

    @property
    def dangling(self) -> bool:
        return not self.repo_tags and not self.repo_digests

    @property
    def created_unix(self) -> int:
        return created_unix(self.config.get("created")) or int(self.created_at)

    @property
    def image_labels(self) -> dict:
        return (self.config.get("config") or {}).get("Labels") or {}

    def summary(self, containers: int = -1, shared_size: int = -1) -> dict:
        return {
            "Id": self.id, "ParentId": "", "RepoTags": self.repo_tags,
            "RepoDigests": self.repo_digests, "Created": self.created_unix, "Size": self.size,
            "SharedSize": shared_size, "VirtualSize": self.size, "Labels": self.image_labels,
            "Containers": containers,
        }

    def inspect(self) -> dict:
        cfg = self.config.get("config") or {}
        out = {
            "Id": self.id, "RepoTags": self.repo_tags, "RepoDigests": self.repo_digests,
            "Parent": "", "Comment": self.config.get("comment", ""),
            "Created": self.config.get("created", ""),
            "Container": self.config.get("container", ""),
            "ContainerConfig": _container_config(self.config.get("container_config") or {}),
            "DockerVersion": self.config.get("docker_version", ""),
            "Author": self.config.get("author", ""), "Config": _container_config(cfg),
            "Architecture": self.config.get("architecture", ""),
            "Os": self.config.get("os", ""), "Size": self.size, "VirtualSize": self.size,
            "GraphDriver": {"Name": "overlayfs", "Data": None},
            "RootFS": {"Type": "layers", "Layers": self.diff_ids},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }
        if self.config.get("variant"):
            out["Variant"] = self.config["variant"]
        if self.config.get("os.version"):
            out["OsVersion"] = self.config["os.version"]
        return out


def _container_config(cfg: dict) -> dict:
    """An image config's ``config`` in docker's ContainerConfig shape."""
    return {
        "Hostname": cfg.get("Hostname", ""), "Domainname": cfg.get("Domainname", ""),
        "User": cfg.get("User", ""),
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "ExposedPorts": cfg.get("ExposedPorts"), "Tty": False, "OpenStdin": False,
        "StdinOnce": False, "Env": cfg.get("Env"), "Cmd": cfg.get("Cmd"),
        "Healthcheck": cfg.get("Healthcheck"), "ArgsEscaped": cfg.get("ArgsEscaped"),
        "Image": cfg.get("Image", ""), "Volumes": cfg.get("Volumes"),
        "WorkingDir": cfg.get("WorkingDir", ""), "Entrypoint": cfg.get("Entrypoint"),
        "OnBuild": cfg.get("OnBuild"), "Labels": cfg.get("Labels"),
        "StopSignal": cfg.get("StopSignal"), "Shell": cfg.get("Shell"),
    } if cfg else {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
        "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
        "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
    }


class ImageService:
    """docker's image operations over containerd's Images, Content and Snapshots."""

    def __init__(self, kernel, ctrd, snapshotter: str = "overlayfs"):
        self.kernel = kernel
        self.ctrd = ctrd
        self.snapshotter = snapshotter
        self._docs: dict[str, dict] = {}  # digest -> parsed manifest/config (immutable)
        # chain ID -> bytes of that layer's snapshot (a chain ID names its content for good)
        self._usage: dict[str, int] = {}
        self.in_use = lambda image_id: []  # set by the container service
        self.names_lock = asyncio.Lock()

    # --- reading -------------------------------------------------------------
    async def _json(self, digest: str) -> dict:
        doc = self._docs.get(digest)
        if doc is None:
            doc = await self.ctrd.content_read_json(digest)
            if len(self._docs) > 4096:
                self._docs.clear()
            self._docs[digest] = doc
        return doc

    async def _layer_sizes(self, manifest: dict, config: dict) -> list[int]:
        """The unpacked size of each layer (its snapshot's usage), else its blob size."""
        from pallet.containerd.client import chain_ids

        layers = manifest.get("layers") or []
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layers):
            return [int(x.get("size", 0)) for x in layers]
        out = []
        for layer, chain in zip(layers, chain_ids(diff_ids) if diff_ids else []):
            size = self._usage.get(chain)
            if size is None:
                try:
                    size = int((await self.ctrd.snapshot_usage(
                        chain, snapshotter=self.snapshotter))["size"])
                    self._usage[chain] = size
                except errors.PalletError:
                    size = int(layer.get("size", 0))
            out.append(size)
        return out

    async def _record(self, image, names: list[str]) -> ImageRecord:
        from pallet.containerd.client import INDEX_TYPES, descriptor_to_dict, select_manifest

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
        try:
            labels = dict((await self.ctrd.content_info(target["digest"])).labels)
        except errors.PalletError:
            labels = {}
        sizes = await self._layer_sizes(doc, config)
        return ImageRecord(target, desc, doc, config, names, created, labels, sizes)

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

    async def _by_target(self, img) -> ImageRecord:
        others = await self.ctrd.images([f"target.digest=={img.target.digest}"])
        return await self._record(img, sorted({img.name, *(o.name for o in others)}))

    async def get(self, ref: str) -> ImageRecord:
        """By name (``busybox``, ``busybox:latest``, full name, ``repo@digest``) or
        id / unique id prefix."""
        if not ref:
            raise errors.NotFound("No such image: ")
        parsed = None
        try:
            parsed = Reference.parse(ref)
        except errors.InvalidArgument:
            if not _HEXPREFIX.match(ref):
                raise
        if parsed is not None:
            try:
                return await self._by_target(await self.ctrd.image_get(str(parsed)))
            except errors.NotFound:
                pass
            if parsed.digest:
                # repo@digest: an image pulled by tag whose manifest has this digest
                for img in await self.ctrd.images([f"target.digest=={parsed.digest}"]):
                    rec = await self._by_target(img)
                    if any(Reference.parse(d, default_tag=False).repository
                           == parsed.repository for d in rec.repo_digests):
                        return rec
        m = _HEXPREFIX.match(ref)
        if m:
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

    # --- listing ----------------------------------------------------------------
    async def list(self, filters: dict[str, list[str]], *, all_: bool = False,
                   shared_size: bool = False) -> list[dict]:
        """``GET /images/json``: summaries, with docker's filters."""
        for key in filters:
            if key not in ("reference", "dangling", "label", "before", "since", "until"):
                raise errors.InvalidArgument(f"invalid filter '{key}'")
        records = await self.all()
        dangling = bool_filter(filters["dangling"], "dangling") if "dangling" in filters \
            else None
        before = since = None
        if "before" in filters:
            before = min([(await self.get(v)).created_unix for v in filters["before"]])
        if "since" in filters:
            since = max([(await self.get(v)).created_unix for v in filters["since"]])
        until = min(until_time(v) for v in filters["until"]) if "until" in filters else None
        shared = self._shared_sizes(records) if shared_size else {}
        out = []
        for rec in records:
            if dangling is not None and rec.dangling != dangling:
                continue
            if "label" in filters and not labels_match(rec.image_labels, filters["label"]):
                continue
            if before is not None and rec.created_unix >= before:
                continue
            if since is not None and rec.created_unix <= since:
                continue
            if until is not None and rec.created_unix >= until:
                continue
            summary = rec.summary(len(self.in_use(rec.id)) if shared_size else -1,
                                  shared.get(rec.id, -1))
            if "reference" in filters:
                names = [n for n in rec.ref_names
                         if any(reference_matches(p, n) for p in filters["reference"])]
                if not names:
                    continue
                summary["RepoTags"] = sorted(familiar_name(n) for n in names if "@" not in n)
                summary["RepoDigests"] = [d for d in rec.repo_digests
                                          if any(reference_matches(p, d)
                                                 for p in filters["reference"])]
            out.append(summary)
        return out

    @staticmethod
    def _shared_sizes(records: list[ImageRecord]) -> dict[str, int]:
        """Per image, the size of its layers that other images have too."""
        count: dict[str, int] = {}
        for rec in records:
            for chain in set(rec.chain_ids):
                count[chain] = count.get(chain, 0) + 1
        out = {}
        for rec in records:
            out[rec.id] = sum(size for chain, size in zip(rec.chain_ids, rec.layer_sizes)
                              if count.get(chain, 0) > 1)
        return out

    async def df(self) -> tuple[int, list[dict]]:
        """``GET /system/df``'s image part: (LayersSize, image summaries with
        Containers and SharedSize)."""
        records = await self.all()
        shared = self._shared_sizes(records)
        layers: dict[str, int] = {}
        for rec in records:
            layers.update(zip(rec.chain_ids, rec.layer_sizes))
        return sum(layers.values()), [rec.summary(len(self.in_use(rec.id)), shared[rec.id])
                                      for rec in records]

    async def history(self, ref: str) -> list[dict]:
        from pallet.imagestore.imageops import history

        rec = await self.get(ref)
        return history(rec.config, rec.id, rec.layer_sizes, rec.repo_tags)

    # --- names --------------------------------------------------------------------
    async def repoint(self, name: str, target: dict, labels: dict | None = None) -> None:
        """Point ``name`` at ``target`` (create or update); the image it named
        before keeps a dangling name if it has no other, and ``target``'s own
        dangling name goes."""
        async with self.names_lock:
            try:
                before = await self.ctrd.image_get(name)
            except errors.NotFound:
                before = None
            await self.ctrd.image_put(name, target, labels or None)
            dangling = f"{DANGLING}@{target['digest']}"
            if name != dangling:
                try:
                    await self.ctrd.image_delete(dangling)
                except errors.NotFound:
                    pass
            if before is not None and before.target.digest != target["digest"]:
                from pallet.containerd.client import descriptor_to_dict

                left = await self.ctrd.images([f"target.digest=={before.target.digest}"])
                if not left:
                    await self.ctrd.image_put(f"{DANGLING}@{before.target.digest}",
                                              descriptor_to_dict(before.target))

    async def tag(self, source: str, repo: str, tag: str | None) -> str:
        """``docker tag``: give the image ``source`` the name ``repo:tag``."""
        rec = await self.get(source)
        if not repo:
            raise errors.InvalidArgument("repository name must have at least one component")
        try:
            ref = Reference.parse(repo, default_tag=False)
        except errors.InvalidArgument as e:
            raise errors.InvalidArgument(f"Error parsing reference: {repo!r} is not a valid "
                                         f"repository/tag: {e.message}") from None
        if ref.digest:
            raise errors.InvalidArgument("refusing to create a tag with a digest reference")
        if tag:
            if ref.tag:
                raise errors.InvalidArgument(f"invalid reference format: {repo}:{tag}")
            try:
                ref = Reference.parse(f"{ref.repository}:{tag}")
            except errors.InvalidArgument:
                raise errors.InvalidArgument(f"invalid tag format: {tag!r}") from None
        elif not ref.tag:
            ref = Reference.parse(ref.repository)
        await self.repoint(str(ref), rec.target)
        emit(self.kernel, "tag", rec.id, ref.familiar, rec.image_labels)
        return str(ref)

    # --- removing (image_remove.py) ----------------------------------------------
    async def delete(self, ref: str, *, force: bool = False, running=lambda cid: False,
                     sync: bool = True) -> list[dict]:
        """``docker rmi``, with dockerd's rules: a name is untagged (the image
        goes with its last reference); an ID removes the image when its
        references are all in one repository (else ``-f``); containers using
        it stop the removal unless forced (running ones even then)."""
        from pallet.engine import image_remove
        return await image_remove.delete(self, ref, force=force, running=running, sync=sync)

    delete._emits_events = True  # the frontend need not make untag/delete events

    async def prune(self, filters: dict[str, list[str]]) -> dict:
        """``docker image prune``: dangling images (``dangling=false``: every
        image no container uses), then one garbage collection."""
        from pallet.engine import image_remove
        return await image_remove.prune(self, filters)

    # --- loading -----------------------------------------------------------------
    async def load(self, body, progress) -> None:
        """``docker load``: a docker-save tarball or an OCI layout archive from
        ``body`` (an aiohttp StreamReader); ``progress(dict)`` gets docker's
        JSON-lines messages."""
        from pallet.engine import loader

        path = await self.spool(body, "load")
        try:
            if os.path.getsize(path) == 0:
                raise errors.InvalidArgument("empty export - not a tar archive")
            await loader.load_archive(self, path, progress)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass

    async def spool(self, body, what: str) -> str:
        """Copy a request body to a private file under the data root; its path."""
        tmpdir = os.path.join(self.kernel.paths.data_root, "tmp")
        os.makedirs(tmpdir, mode=0o700, exist_ok=True)
        path = os.path.join(tmpdir, f"{what}-{secrets.token_hex(8)}.tar")
        loop = asyncio.get_running_loop()
        try:
            with open(path, "wb") as f:
                while True:
                    chunk = await body.read(1 << 20)
                    if not chunk:
                        break
                    await loop.run_in_executor(None, f.write, chunk)
        except BaseException:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        return path


def _repository(name: str) -> str:
    try:
        return Reference.parse(name, default_tag=False).repository
    except errors.InvalidArgument:
        return name


def _display(ref: str) -> str:
    """How docker names a missing image: the familiar reference, with its tag."""
    try:
        return Reference.parse(ref).familiar
    except errors.InvalidArgument:
        return ref
