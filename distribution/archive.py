"""Image archives: ``docker save`` tarballs and OCI image layouts, read and written.

Reading (:func:`read_archive`) accepts a tar file (plain, gzip, bzip2 or
xz), a seekable binary file object, or a directory holding an OCI layout.
It recognises, as containerd's importer does:

* ``docker save`` archives: ``manifest.json`` (``Config``, ``RepoTags``,
  ``Layers``), the older ``repositories`` file for names, layers as
  ``<id>/layer.tar`` (older docker) or ``blobs/sha256/<hex>`` (docker 25+).
  For each image a Docker schema 2 manifest is synthesised (config
  ``application/vnd.docker.container.image.v1+json``, layers
  ``...rootfs.diff.tar`` or ``.tar.gzip`` by sniffing the blob), serialised as
  containerd does so that digests agree.  When ``manifest.json`` is present
  it wins over an ``index.json`` beside it (containerd 1.7's rule);
* OCI layouts: ``oci-layout``, ``index.json``, ``blobs/sha256``; names come
  from the ``io.containerd.image.name`` annotation, else from
  ``org.opencontainers.image.ref.name`` when that is a full reference.

Writing (:func:`write_docker_archive`, :func:`export_images`) produces what
``docker save`` 25+ produces: blobs under ``blobs/sha256``, ``index.json`` and
``oci-layout`` for OCI tools, and ``manifest.json`` for every docker.  It is
deterministic: sorted entries, fixed owners and times.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import posixpath
import re
import tarfile
from typing import AsyncIterator, BinaryIO, Callable, Iterator, Sequence

import attrs

from pallet.core.errors import InvalidArgument, NotFound
from pallet.core.models import Descriptor
from pallet.distribution.reference import Reference

from pallet.distribution.compression import HashingReader, detect_compression
from pallet.distribution.digests import sha256_digest
from pallet.distribution.mediatypes import (
    MT_DOCKER_CONFIG,
    MT_DOCKER_LAYER,
    MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_MANIFEST,
    MT_OCI_INDEX,
    MT_OCI_LAYER_ZSTD,
    INDEX_TYPES,
    MANIFEST_TYPES)
from pallet.distribution.manifests import gc_labels, resolve

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
_BLOB_PATH = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
_CONFIG_PATH = re.compile(r"^([a-f0-9]{64})\.json$")
_CHUNK = 1 << 20


@attrs.frozen
class ArchiveBlob:
    """A blob of an archive; ``open()`` gives a fresh binary reader of it.

    ``digest`` is taken from the path for ``blobs/sha256/<hex>`` entries (the
    content store checks it when committing) and computed otherwise."""

    digest: str
    size: int
    media_type: str
    open: Callable[[], BinaryIO] = attrs.field(eq=False, repr=False)

    async def chunks(self, on_bytes=None) -> AsyncIterator[bytes]:
        """The blob's bytes in 1 MiB chunks, read in a worker thread so that an
        event loop goes on meanwhile; ``on_bytes(bytes so far)`` is awaited
        after each chunk."""
        loop = asyncio.get_running_loop()
        f = await loop.run_in_executor(None, self.open)
        done = 0
        try:
            while True:
                chunk = await loop.run_in_executor(None, f.read, _CHUNK)
                if not chunk:
                    return
                done += len(chunk)
                yield chunk
                if on_bytes is not None:
                    await on_bytes(done)
        finally:
            f.close()

    def gc_labels(self) -> dict[str, str]:
        """The GC labels a manifest or index blob is stored with, so that
        containerd keeps its children (:func:`.manifests.gc_labels`); none
        for other blobs."""
        if self.media_type not in INDEX_TYPES + MANIFEST_TYPES or self.size > 4 << 20:
            return {}
        with self.open() as f:
            try:
                return gc_labels(json.loads(f.read()))
            except ValueError:
                return {}


@attrs.frozen
class ArchiveImage:
    """An image the archive names: the normalised ``name`` (None when the
    archive gives none usable), the root descriptor, and the name as written
    in the archive (a RepoTag, or an OCI ref name such as ``latest``)."""

    name: str | None
    target: Descriptor
    ref_name: str | None = None


def normalize_name(name: str) -> str:
    """``busybox:latest`` -> ``docker.io/library/busybox:latest``."""
    return str(Reference.parse(name))


def _clean(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")) if name else name


# --- sources: a tar file or a directory ---------------------------------------------------


class _TarSource:
    def __init__(self, fileobj_or_path):
        if isinstance(fileobj_or_path, str):
            self._tf = tarfile.open(fileobj_or_path, "r:*")
        else:
            self._tf = tarfile.open(fileobj=fileobj_or_path, mode="r:*")
        self._members: dict[str, tarfile.TarInfo] = {}
        for m in self._tf.getmembers():
            self._members[_clean(m.name)] = m

    def _resolve(self, name: str) -> tarfile.TarInfo:
        m = self._members.get(_clean(name))
        for _ in range(16):  # docker save links identical layers with symlinks
            if m is None:
                raise InvalidArgument(f"archive: missing file {name}")
            if m.issym():
                m = self._members.get(_clean(posixpath.join(posixpath.dirname(m.name),
                                                            m.linkname)))
            elif m.islnk():
                m = self._members.get(_clean(m.linkname))
            else:
                break
        if m is None or not m.isreg():
            raise InvalidArgument(f"archive: {name} is not a regular file")
        return m

    def exists(self, name: str) -> bool:
        return _clean(name) in self._members

    def names(self) -> list[str]:
        return sorted(self._members)

    def size(self, name: str) -> int:
        return self._resolve(name).size

    def open(self, name: str) -> BinaryIO:
        return self._tf.extractfile(self._resolve(name))

    def close(self) -> None:
        self._tf.close()


class _DirSource:
    def __init__(self, root: str):
        self.root = os.path.realpath(root)

    def _path(self, name: str) -> str:
        path = os.path.realpath(os.path.join(self.root, _clean(name)))
        if not path.startswith(self.root + os.sep):
            raise InvalidArgument(f"archive: {name} points outside {self.root}")
        return path

    def exists(self, name: str) -> bool:
        try:
            return os.path.lexists(self._path(name))
        except InvalidArgument:
            return False

    def names(self) -> list[str]:
        out = []
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                out.append(os.path.relpath(os.path.join(dirpath, f), self.root))
        return sorted(out)

    def size(self, name: str) -> int:
        try:
            return os.path.getsize(self._path(name))
        except FileNotFoundError:
            raise InvalidArgument(f"archive: missing file {name}") from None

    def open(self, name: str) -> BinaryIO:
        try:
            return open(self._path(name), "rb")
        except FileNotFoundError:
            raise InvalidArgument(f"archive: missing file {name}") from None

    def close(self) -> None:
        pass


def _read_json(source, name: str):
    with source.open(name) as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise InvalidArgument(f"archive: {name} is not valid JSON ({e})") from None


def _hash_file(source, name: str) -> str:
    with source.open(name) as f:
        reader = HashingReader(f)
        reader.drain()
    return "sha256:" + reader.hash.hexdigest()


def manifest_bytes(manifest: dict) -> bytes:
    """A manifest serialised as containerd's importer does (Go's
    ``json.MarshalIndent(m, "", "   ")``), so that synthesised digests agree."""
    return json.dumps(manifest, indent=3, separators=(",", ": ")).encode()


def docker_manifest(config: Descriptor, layers: Sequence[Descriptor]) -> dict:
    """A Docker schema 2 manifest, keys in the order Go writes them."""
    def d(x: Descriptor) -> dict:
        return {"mediaType": x.media_type, "digest": x.digest, "size": x.size}
    return {"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST, "config": d(config),
            "layers": [d(layer) for layer in layers]}


def layer_media_type(head: bytes) -> str:
    """The media type containerd's importer gives a docker-save layer, by sniffing."""
    kind = detect_compression(head)
    if kind == "gzip":
        return MT_DOCKER_LAYER_GZIP
    if kind == "zstd":
        return MT_OCI_LAYER_ZSTD
    return MT_DOCKER_LAYER


class ImageArchive:
    """An opened archive: :meth:`blobs` to copy into a content store, then
    :meth:`images` to name them.  Close it (or use ``with``) when done."""

    def __init__(self, source):
        self._source = source
        self._blobs: dict[str, ArchiveBlob] = {}
        self._images: list[ArchiveImage] = []
        if source.exists("manifest.json"):
            self.format = "docker"
            self._load_docker()
        elif source.exists("index.json"):
            self.format = "oci"
            self._load_oci()
        else:
            raise InvalidArgument("archive: neither manifest.json (docker save) nor index.json "
                                  "(OCI layout) found")

    def __enter__(self) -> "ImageArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._source.close()

    def blobs(self) -> Iterator[ArchiveBlob]:
        """Every blob the images need (configs, layers, manifests, indexes)."""
        return iter(list(self._blobs.values()))

    def images(self) -> list[ArchiveImage]:
        """The images of the archive, one per name (one unnamed entry for an
        image without a name)."""
        return list(self._images)

    # --- docker save ---

    def _file_blob(self, path: str, media_type: str | None) -> ArchiveBlob:
        path = _clean(path)
        m = _BLOB_PATH.match(path)
        cm = _CONFIG_PATH.match(path)
        if m:
            digest = "sha256:" + m.group(1)
        elif cm:
            digest = "sha256:" + cm.group(1)
        else:
            digest = _hash_file(self._source, path)
        if media_type is None:
            with self._source.open(path) as f:
                media_type = layer_media_type(f.read(6))
        source = self._source
        blob = ArchiveBlob(digest, source.size(path), media_type, lambda: source.open(path))
        self._blobs.setdefault(digest, blob)
        return blob

    def _load_docker(self) -> None:
        entries = _read_json(self._source, "manifest.json")
        if not isinstance(entries, list):
            raise InvalidArgument("archive: manifest.json is not a list")
        repositories = {}
        if self._source.exists("repositories"):
            # {"busybox": {"latest": "<v1 id of the top layer>"}}
            for repo, tags in (_read_json(self._source, "repositories") or {}).items():
                for tag, v1id in (tags or {}).items():
                    repositories.setdefault(v1id, []).append(f"{repo}:{tag}")
        for entry in entries:
            try:
                config_path, layer_paths = entry["Config"], entry.get("Layers") or []
            except (KeyError, TypeError):
                raise InvalidArgument("archive: manifest.json entry without Config") from None
            config = self._file_blob(config_path, MT_DOCKER_CONFIG)
            layers = [self._file_blob(p, None) for p in layer_paths]
            manifest = manifest_bytes(docker_manifest(
                Descriptor(config.media_type, config.digest, config.size),
                [Descriptor(b.media_type, b.digest, b.size) for b in layers]))
            digest = sha256_digest(manifest)
            self._blobs.setdefault(digest, ArchiveBlob(
                digest, len(manifest), MT_DOCKER_MANIFEST, lambda data=manifest: io.BytesIO(data)))
            target = Descriptor(MT_DOCKER_MANIFEST, digest, len(manifest))
            tags = list(entry.get("RepoTags") or [])
            if not tags and layer_paths:
                tags = repositories.get(posixpath.dirname(_clean(layer_paths[-1])), [])
            for tag in tags:
                self._images.append(ArchiveImage(normalize_name(tag), target, tag))
            if not tags:
                self._images.append(ArchiveImage(None, target, None))

    # --- OCI layout ---

    def _load_oci(self) -> None:
        if self._source.exists("oci-layout"):
            layout = _read_json(self._source, "oci-layout")
            if layout.get("imageLayoutVersion") != "1.0.0":
                raise InvalidArgument(f"archive: unsupported OCI layout version "
                                      f"{layout.get('imageLayoutVersion')!r}")
        index = _read_json(self._source, "index.json")
        types: dict[str, str] = {}
        for d in index.get("manifests") or []:
            self._walk(d, types, depth=0)
        for path in self._source.names():
            m = _BLOB_PATH.match(path)
            if not m:
                continue
            digest = "sha256:" + m.group(1)
            source = self._source
            self._blobs[digest] = ArchiveBlob(
                digest, source.size(path), types.get(digest, "application/octet-stream"),
                lambda p=path: source.open(p))
        for d in index.get("manifests") or []:
            target = Descriptor.from_oci(d)
            ann = d.get("annotations") or {}
            name, ref = ann.get(ANNOTATION_IMAGE_NAME), ann.get(ANNOTATION_REF_NAME)
            if name:
                name = normalize_name(name)
            elif ref and ("/" in ref or ":" in ref):
                try:
                    name = normalize_name(ref)
                except InvalidArgument:
                    name = None
            self._images.append(ArchiveImage(name, target, ref or name))

    def _walk(self, d: dict, types: dict[str, str], depth: int) -> None:
        """Record the media type of every blob reachable from descriptor ``d``."""
        digest, mt = d.get("digest"), d.get("mediaType", "")
        if not digest or depth > 8:
            return
        types[digest] = mt
        path = f"blobs/sha256/{digest.partition(':')[2]}"
        if mt in MANIFEST_TYPES and self._source.exists(path):
            m = _read_json(self._source, path)
            for child in [m.get("config") or {}, *(m.get("layers") or [])]:
                if child.get("digest"):
                    types[child["digest"]] = child.get("mediaType", "")
        elif mt in INDEX_TYPES and self._source.exists(path):
            for child in _read_json(self._source, path).get("manifests") or []:
                self._walk(child, types, depth + 1)


def read_archive(src: str | BinaryIO) -> ImageArchive:
    """Open a docker-save tarball or OCI layout (tar or directory) for reading."""
    if isinstance(src, str) and os.path.isdir(src):
        return ImageArchive(_DirSource(src))
    try:
        source = _TarSource(src)
    except FileNotFoundError:
        raise NotFound(f"archive {src}: no such file") from None
    except tarfile.TarError as e:
        raise InvalidArgument(f"archive: not a tar file ({e})") from None
    try:
        return ImageArchive(source)
    except BaseException:
        source.close()
        raise


# --- writing ------------------------------------------------------------------------


@attrs.frozen
class ExportImage:
    """What :func:`write_docker_archive` needs of one image: its names
    (normalised references) and its manifest, config and layer descriptors."""

    names: tuple[str, ...]
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]


def _tarinfo(name: str, size: int, mtime: int, is_dir: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = 0 if is_dir else size
    ti.mtime = mtime
    ti.mode = 0o755 if is_dir else 0o644
    ti.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def write_docker_archive(out: str | BinaryIO, images: Sequence[ExportImage],
                         opener: Callable[[str], BinaryIO], *, mtime: int = 0) -> None:
    """Write ``images`` as one ``docker save`` tarball to ``out`` (a path or a
    binary file object); ``opener(digest)`` gives each blob's bytes.

    A path is written to a temporary name and renamed, so a failed export
    leaves no half tarball.
    """
    if isinstance(out, str):
        tmp = f"{out}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                write_docker_archive(f, images, opener, mtime=mtime)
            os.replace(tmp, out)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return
    blobs: dict[str, int] = {}
    for img in images:
        for d in (img.manifest, img.config, *img.layers):
            blobs[d.digest] = d.size
    manifest_json, index = [], []
    for img in images:
        refs = [Reference.parse(n) for n in img.names]
        manifest_json.append({
            "Config": "blobs/sha256/" + img.config.digest.partition(":")[2],
            "RepoTags": [r.familiar for r in refs if r.tag],
            "Layers": ["blobs/sha256/" + layer.digest.partition(":")[2] for layer in img.layers],
        })
        base = {"mediaType": img.manifest.media_type, "digest": img.manifest.digest,
                "size": img.manifest.size}
        for r in refs:
            index.append({**base, "annotations": {ANNOTATION_IMAGE_NAME: str(r),
                                                  ANNOTATION_REF_NAME: r.tag or r.digest or ""}})
        if not refs:
            index.append(base)
    small = {
        "index.json": json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                                  "manifests": index}, separators=(",", ":")).encode() + b"\n",
        "manifest.json": json.dumps(manifest_json, separators=(",", ":")).encode() + b"\n",
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}\n',
    }
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(_tarinfo("blobs", 0, mtime, True))
        tf.addfile(_tarinfo("blobs/sha256", 0, mtime, True))
        for digest in sorted(blobs):
            with opener(digest) as f:
                tf.addfile(_tarinfo("blobs/sha256/" + digest.partition(":")[2], blobs[digest],
                                    mtime), f)
        for name in sorted(small):
            tf.addfile(_tarinfo(name, len(small[name]), mtime), io.BytesIO(small[name]))


def export_images(content, images: Sequence[tuple[Sequence[str], Descriptor]],
                  out: str | BinaryIO, platform=None) -> None:
    """Write images of the content store as a ``docker save`` tarball.

    ``images`` are ``(names, target)`` pairs (an image record's name and
    target); an index is resolved to the manifest for ``platform`` (default
    this machine), as ``docker save`` does.
    """
    export = []
    for names, target in images:
        r = resolve(content, target, platform)
        export.append(ExportImage(tuple(names), r.manifest_desc, r.config_desc, r.layers))
    write_docker_archive(out, export, content.open)
