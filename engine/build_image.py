"""Images as a build (and ``docker commit``) makes them: the base image of a
stage (local, pulled, or scratch), the config of each step's image as
dockerd's legacy builder writes it, and the blobs and name of a new image,
written through containerd's Content and Images services.

Each step's image is a docker schema 2 manifest over uncompressed layers
(what the diff service produces for a build; a push compresses them), its
config labelled with the snapshot of its top layer, its manifest with its
children, so that containerd's garbage collector keeps what a name or a
lease holds.
"""
from __future__ import annotations

import copy
import datetime
import hashlib
import json
import time

import attrs

from pallet.core import errors
from pallet.core.models import Descriptor
from pallet.distribution.archive import docker_manifest, manifest_bytes
from pallet.distribution.mediatypes import (MT_DOCKER_CONFIG, MT_DOCKER_LAYER,
                                           MT_DOCKER_LAYER_GZIP, MT_DOCKER_MANIFEST,
                                           MT_OCI_LAYER, MT_OCI_LAYER_GZIP)
from pallet.distribution.platforms import Platform, chain_ids

#: sha256 of the 1024 zero bytes of an empty tar: docker's mark of an empty layer
EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LABEL_GC_CONTENT = "containerd.io/gc.ref.content."
LABEL_GC_SNAPSHOT = "containerd.io/gc.ref.snapshot."

#: docker's container.Config, every key its JSON always has, in its order
_CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout",
                "AttachStderr", "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd",
                "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint",
                "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
                "StopTimeout", "Shell")
#: the keys Go leaves out when empty (``omitempty``)
_OMIT_EMPTY = ("ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress",
               "StopSignal", "StopTimeout", "Shell")
_DEFAULTS = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
             "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
             "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
             "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None}


def run_config(cfg: dict | None) -> dict:
    """A container config in the shape docker's JSON gives it (every key)."""
    cfg = dict(cfg or {})
    out = {}
    for key in _CONFIG_KEYS:
        value = cfg.pop(key, _DEFAULTS.get(key))
        if key in _OMIT_EMPTY and not value:
            continue
        out[key] = value
    out.update(cfg)
    return out


def now_rfc3339() -> str:
    """The time as Go's RFC 3339 with nanoseconds."""
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
    text = base.strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return text + ("." + digits if digits else "") + "Z"


@attrs.frozen
class BuildImage:
    """An image of a build: its config (a dict, not to be changed), its
    layers' descriptors and, once written, its ID and manifest."""

    config: dict = attrs.field(eq=False, repr=False)
    layers: tuple[Descriptor, ...] = ()
    id: str = ""
    manifest: Descriptor | None = None

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def chain(self) -> str:
        """The chain ID of the top layer (the snapshot to start from), "" for none."""
        ids = chain_ids(self.diff_ids)
        return ids[-1] if ids else ""

    @property
    def run_config(self) -> dict:
        return self.config.get("config") or {}

    @property
    def os(self) -> str:
        return self.config.get("os") or "linux"

    def record(self):
        """The engine's :class:`~pallet.engine.images.ImageRecord` of this image
        (what a step's container is created from)."""
        from pallet.engine.images import ImageRecord

        manifest = docker_manifest(Descriptor(MT_DOCKER_CONFIG, self.id, 0), self.layers)
        desc = self.manifest.to_oci() if self.manifest else {}
        return ImageRecord(desc, desc, manifest, self.config, [], time.time(),
                           layer_sizes=[d.size for d in self.layers])


def scratch(platform: Platform | None = None) -> BuildImage:
    """``FROM scratch``: no layer, an empty config."""
    p = platform or Platform.host()
    config = {"architecture": p.architecture, "os": p.os, "config": run_config({}),
              "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
    if p.variant:
        config["variant"] = p.variant
    return BuildImage(config)


def from_record(rec) -> BuildImage:
    """A local image (:class:`~pallet.engine.images.ImageRecord`) as a base."""
    layers = tuple(Descriptor.from_oci(x) for x in rec.manifest.get("layers") or ())
    return BuildImage(rec.config, layers, rec.id, Descriptor.from_oci(rec.manifest_desc))


def child_config(parent: BuildImage, config: dict, container_config: dict, *,
                 diff_id: str | None, created_by: str | None = None, author: str = "",
                 comment: str = "", container: str = "") -> dict:
    """The config of an image one step after ``parent`` (dockerd's
    ``NewChildImage``): ``config`` is the new container config, the history
    gets one entry (``empty_layer`` when ``diff_id`` is None or the empty tar)."""
    empty = diff_id is None or diff_id == EMPTY_LAYER
    created = now_rfc3339()
    entry = {"created": created}
    if author:
        entry["author"] = author
    if created_by is None:
        created_by = " ".join(container_config.get("Cmd") or [])
    if created_by:
        entry["created_by"] = created_by
    if comment:
        entry["comment"] = comment
    if empty:
        entry["empty_layer"] = True
    diff_ids = parent.diff_ids + ([] if empty else [diff_id])
    out = {"architecture": parent.config.get("architecture") or Platform.host().architecture}
    if author:
        out["author"] = author
    if comment:
        out["comment"] = comment
    out.update({
        "config": run_config(config),
        "container": container,
        "container_config": run_config(container_config),
        "created": created,
        "docker_version": _version(),
        "history": [*copy.deepcopy(parent.config.get("history") or []), entry],
        "os": parent.os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    for key in ("variant", "os.version", "os.features"):
        if parent.config.get(key):
            out[key] = parent.config[key]
    return out


def _version() -> str:
    from pallet.engine.system import PALLET_VERSION
    return PALLET_VERSION


# --- writing ---------------------------------------------------------------------------------

def _docker_layer(d: Descriptor) -> Descriptor:
    """A layer as a docker manifest lists it (OCI's types in docker's names)."""
    names = {MT_OCI_LAYER: MT_DOCKER_LAYER, MT_OCI_LAYER_GZIP: MT_DOCKER_LAYER_GZIP}
    return Descriptor(names.get(d.media_type, d.media_type), d.digest, d.size)


def _blob(data: bytes, media_type: str) -> Descriptor:
    return Descriptor(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))


async def write_image(ctrd, config: dict, layers, *, snapshotter: str) -> BuildImage:
    """Write ``config`` and the manifest over ``layers`` (the new layer last)
    into the content store; the image (not named).  The config is labelled
    with its top snapshot, the manifest with its children."""
    layers = tuple(_docker_layer(d) for d in layers)
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(layers):
        raise errors.PalletError(f"image config has {len(diff_ids)} layers, "
                                 f"manifest {len(layers)}")
    data = json.dumps(config, separators=(",", ":")).encode()
    cdesc = _blob(data, MT_DOCKER_CONFIG)
    labels = {}
    if diff_ids:
        labels[LABEL_GC_SNAPSHOT + snapshotter] = chain_ids(diff_ids)[-1]
    await ctrd.content_write(f"config-{cdesc.digest}", data, expected=cdesc.digest,
                             size=cdesc.size, labels=labels)
    manifest = docker_manifest(cdesc, layers)
    mdata = manifest_bytes(manifest)
    mdesc = _blob(mdata, MT_DOCKER_MANIFEST)
    mlabels = {LABEL_GC_CONTENT + "config": cdesc.digest}
    for i, layer in enumerate(layers):
        mlabels[f"{LABEL_GC_CONTENT}l.{i}"] = layer.digest
    await ctrd.content_write(f"manifest-{mdesc.digest}", mdata, expected=mdesc.digest,
                             size=mdesc.size, labels=mlabels)
    return BuildImage(config, layers, cdesc.digest, mdesc)


async def read_image(ctrd, manifest: Descriptor) -> BuildImage:
    """An image written before (a cache entry) from its manifest."""
    doc = await ctrd.content_read_json(manifest.digest)
    config = await ctrd.content_read_json(doc["config"]["digest"])
    layers = tuple(Descriptor.from_oci(x) for x in doc.get("layers") or ())
    return BuildImage(config, layers, doc["config"]["digest"], manifest)


async def name_image(images, img: BuildImage, name: str) -> None:
    """Give ``img`` the name ``name`` (what it named before keeps a dangling name)."""
    await images.repoint(name, img.manifest.to_oci())
