"""The store's side of docker's image commands that are not pull or push:
``history``, ``import`` (a rootfs tarball with ``-c`` changes) and ``export``
(a container's rootfs as a tarball).

``history`` and ``parse_changes`` are pure; ``import_rootfs`` works on any
:class:`~.targets.ContentTarget` (local store or containerd's API);
``export_rootfs`` mounts a snapshot's mounts read-only and streams a tar.
"""
from __future__ import annotations

import datetime
import json
import os
import shlex
import stat
import tarfile
import uuid
from typing import AsyncIterator, BinaryIO, Iterable, Mapping, Sequence

import attrs

from pallet.core.errors import InvalidArgument
from pallet.core.models import Descriptor, Mount

from pallet.distribution.archive import docker_manifest, manifest_bytes
from pallet.distribution.digests import sha256_digest
from pallet.distribution.mediatypes import MT_DOCKER_CONFIG, MT_DOCKER_LAYER, MT_DOCKER_MANIFEST
from pallet.distribution.platforms import Platform, chain_ids

# --- history -----------------------------------------------------------------------------


def _unix(created: str | None) -> int:
    if not created:
        return 0
    text = created.strip().replace("Z", "+00:00")
    # Go writes nanoseconds; Python reads at most microseconds
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tz}"
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return int(when.timestamp())


def history(config: Mapping, image_id: str, layer_sizes: Sequence[int] = (),
            tags: Sequence[str] = ()) -> list[dict]:
    """``GET /images/{name}/history``: docker's entries, newest first.

    ``layer_sizes`` are the (uncompressed) sizes of the image's layers in
    order; entries marked ``empty_layer`` take none.  The newest entry carries
    the image ID and ``tags``, the others ``<missing>``, as dockerd answers
    for a pulled image.
    """
    entries = [h for h in config.get("history") or [] if isinstance(h, dict)]
    if not entries:
        entries = [{"created": config.get("created", ""), "created_by": ""}
                   for _ in layer_sizes or [0]]
    out = []
    layer = 0
    for h in entries:
        size = 0
        if not h.get("empty_layer"):
            size = layer_sizes[layer] if layer < len(layer_sizes) else 0
            layer += 1
        out.append({"Id": "<missing>", "Created": _unix(h.get("created")),
                    "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": int(size),
                    "Comment": h.get("comment", "")})
    out.reverse()
    out[0]["Id"] = image_id
    out[0]["Tags"] = list(tags) or None
    return out


# --- changes (docker import -c, docker commit -c) ---------------------------------------------

CHANGE_COMMANDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL",
                   "USER", "VOLUME", "WORKDIR")


def _json_or_shell(rest: str) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            value = json.loads(rest)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
        except ValueError:
            pass
    return ["/bin/sh", "-c", rest]


def _pairs(rest: str, what: str, legacy: bool) -> list[tuple[str, str]]:
    try:
        words = shlex.split(rest)
    except ValueError as e:
        raise InvalidArgument(f"{what}: {e}") from None
    if not words:
        raise InvalidArgument(f"{what} requires at least one argument")
    if legacy and "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{what} names can not be blank" if not key
                                  else f"{what}: syntax error - can't find = in {w!r}. "
                                  "Must be of the form: name=value")
        out.append((key, value))
    return out


def parse_changes(changes: Iterable[str], base: Mapping | None = None) -> dict:
    """Apply Dockerfile-style ``changes`` to an image config's ``config``
    (``base``, not changed); return the new one.  Unknown instructions are
    refused with docker's message."""
    cfg = json.loads(json.dumps(dict(base or {})))
    for change in changes:
        change = change.strip()
        if not change:
            continue
        word, _, rest = change.partition(" ")
        if "\t" in word:
            word, _, more = word.partition("\t")
            rest = more + " " + rest
        cmd = word.upper()
        if cmd not in CHANGE_COMMANDS:
            raise InvalidArgument(f"{word} is not a valid change command")
        rest = rest.strip()
        if cmd in ("CMD", "ENTRYPOINT"):
            cfg["Cmd" if cmd == "CMD" else "Entrypoint"] = _json_or_shell(rest)
        elif cmd == "ENV":
            env = [e for e in cfg.get("Env") or []]
            for key, value in _pairs(rest, "ENV", legacy=True):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            cfg["Env"] = env
        elif cmd == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs(rest, "LABEL", legacy=False))
            cfg["Labels"] = labels
        elif cmd == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in rest.split():
                port, _, proto = p.partition("/")
                if not port.isdigit():
                    raise InvalidArgument(f"invalid containerPort: {port}")
                ports[f"{port}/{(proto or 'tcp').lower()}"] = {}
            cfg["ExposedPorts"] = ports
        elif cmd == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            paths = json.loads(rest) if rest.startswith("[") else rest.split()
            for v in paths:
                vols[v] = {}
            cfg["Volumes"] = vols
        elif cmd == "ONBUILD":
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), rest]
        elif cmd == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        elif cmd == "USER":
            cfg["User"] = rest
        elif cmd == "WORKDIR":
            cfg["WorkingDir"] = rest
    return cfg


# --- import ------------------------------------------------------------------------------------

@attrs.frozen
class ImportResult:
    """What an import stored: the image ID (config digest), its manifest and
    top snapshot; ``name`` when it was named."""

    image_id: str
    manifest: Descriptor
    config: Descriptor
    layer: Descriptor
    chain_id: str
    name: str | None


async def _decompressed_chunks(stream, loop) -> AsyncIterator[bytes]:
    """The uncompressed bytes of a (maybe gzip/zstd/xz/bzip2) tar read from
    ``stream`` (a blocking file object, read in threads)."""
    from pallet.distribution.compression import decompressed

    reader = await loop.run_in_executor(None, decompressed, stream)
    while True:
        data = await loop.run_in_executor(None, reader.read, 1 << 20)
        if not data:
            return
        yield data


async def _write_bytes(target, desc: Descriptor, data: bytes, kind: str) -> None:
    class _One:
        offset = 0

        async def chunks(self):
            yield data

        def close(self):
            pass

    async def open_stream(offset):
        return _One()
    await target.write(f"{kind}-{desc.digest}", desc, open_stream)


async def import_rootfs(target, stream: BinaryIO, *, changes: Sequence[str] = (),
                        message: str = "", source: str = "-", name: str | None = None,
                        platform: Platform | None = None, unpack: bool = True,
                        snapshotter: str | None = None) -> ImportResult:
    """``docker import``: a rootfs tarball (plain or compressed, read from
    ``stream``: a binary file, or an async iterable / aiohttp body) becomes a one-layer image, with ``changes`` applied to its
    config; named ``name`` when given (a normalised reference).  The layer is
    stored uncompressed (its digest is its diff ID)."""
    import asyncio

    loop = asyncio.get_running_loop()
    platform = platform or Platform.host()
    cfg = parse_changes(changes)
    if hasattr(stream, "iter_chunked") or hasattr(stream, "__aiter__"):
        # an HTTP body (aiohttp's StreamReader) or any async source: spooled
        # to a temporary file, since decompression reads in a thread
        import tempfile
        spool = tempfile.TemporaryFile()
        chunks = stream.iter_chunked(1 << 20) if hasattr(stream, "iter_chunked") else stream
        async for data in chunks:
            await loop.run_in_executor(None, spool.write, data)
        spool.seek(0)
        stream = spool
    async with target.lease():
        layer = await target.ingest(f"import-{uuid.uuid4().hex}",
                                    _decompressed_chunks(stream, loop), MT_DOCKER_LAYER)
        created = datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ")
        config = {"architecture": platform.architecture, "os": platform.os,
                  "config": cfg, "created": created,
                  "history": [{"created": created,
                               "comment": message or f"Imported from {source}"}],
                  "rootfs": {"type": "layers", "diff_ids": [layer.digest]}}
        if platform.variant:
            config["variant"] = platform.variant
        if message:
            config["comment"] = message
        config_data = json.dumps(config, separators=(",", ":")).encode()
        config_desc = Descriptor(MT_DOCKER_CONFIG,
                                 sha256_digest(config_data),
                                 len(config_data))
        await _write_bytes(target, config_desc, config_data, "config")
        manifest = docker_manifest(config_desc, [layer])
        mdata = manifest_bytes(manifest)
        mdesc = Descriptor(MT_DOCKER_MANIFEST, sha256_digest(mdata),
                           len(mdata))
        await _write_bytes(target, mdesc, mdata, "manifest")
        try:
            from pallet.distribution.pull import gc_labels
            await target.set_labels(mdesc.digest, gc_labels(manifest))
        except InvalidArgument:
            pass
        chain = chain_ids([layer.digest])[0]
        if unpack:
            await target.unpack_layer(layer, layer.digest, chain, None, snapshotter)
        if name:
            await target.put_image(name, mdesc)
            if unpack:
                await target.label_unpacked(config_desc.digest, chain, snapshotter)
    return ImportResult(config_desc.digest, mdesc, config_desc, layer,
                        chain if unpack else "", name)


# --- export ------------------------------------------------------------------------------------

def readonly_mounts(mounts: Sequence[Mount]) -> list[Mount]:
    """The same tree, read-only: an overlay's upper dir becomes its top lower
    dir (so a running container's upper dir is not mounted twice for writing),
    binds get ``ro``."""
    out = []
    for m in mounts:
        if m.type == "overlay":
            upper, lowers, rest = None, [], []
            for opt in m.options:
                key, _, value = opt.partition("=")
                if key == "upperdir":
                    upper = value
                elif key == "lowerdir":
                    lowers = value.split(":")
                elif key == "workdir":
                    continue
                else:
                    rest.append(opt)
            layers = ([upper] if upper else []) + lowers
            if len(layers) == 1:
                out.append(Mount("bind", layers[0], ("rbind", "ro")))
                continue
            out.append(Mount("overlay", m.source, (*rest, "lowerdir=" + ":".join(layers))))
        elif m.type == "bind" or "bind" in m.options or "rbind" in m.options:
            out.append(Mount(m.type, m.source, (*[o for o in m.options if o != "rw"], "ro")))
        else:
            out.append(m)
    return out


def write_tree(root: str, out: BinaryIO) -> None:
    """A tarball of the directory ``root`` (``docker export``'s format: paths
    relative, numeric owners, links as links, devices as devices)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        seen: dict[tuple[int, int], str] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for name in [*dirnames, *sorted(filenames)]:
                full = os.path.join(dirpath, name)
                arc = name if rel_dir == "." else f"{rel_dir}/{name}"
                st = os.lstat(full)
                if stat.S_ISSOCK(st.st_mode):
                    continue
                ti = tf.gettarinfo(full, arcname=arc)
                ti.uname = ti.gname = ""
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, seen[key], 0
                        tf.addfile(ti)
                        continue
                    seen[key] = arc
                if ti.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)


def export_rootfs(mounts: Sequence[Mount], out: BinaryIO) -> None:
    """``docker export``: the tree a snapshot's ``mounts`` assemble (a
    container's rootfs), mounted read-only on a temporary directory and
    written to ``out`` as a tarball.  Blocking: run it in a thread."""
    from pallet.linux.mounts import temp_mount

    with temp_mount(readonly_mounts(mounts)) as root:
        write_tree(root, out)
