"""pallet-ctr's image commands: ls, rm, tag, import, export, check (pull is in
:mod:`.ctr`, over the image store's pull engine).

Everything goes through containerd's API, as ctr does: blobs through
Content.Write (under a lease, with the ``containerd.io/gc.ref.*`` labels
containerd's importer sets), names through Images, layers through
:meth:`Containerd.unpack`.  Archives are read by
:func:`pallet.distribution.archive.read_archive`.
"""
from __future__ import annotations

import json
import sys

from pallet.client.ctr import ExitStatus, UsageError, labels_text, parse_flags, table

from pallet.distribution.mediatypes import INDEX_TYPES
from pallet.units.size import progress_bytes


# --- ls, rm, tag --------------------------------------------------------------------------

async def _image_row(c, image) -> list[str]:
    """REF TYPE DIGEST SIZE PLATFORMS LABELS, as ctr images ls prints them."""
    from pallet.core import errors
    from pallet.containerd.client import descriptor_to_dict
    from pallet.distribution.platforms import select_manifest

    target = descriptor_to_dict(image.target)
    size, platforms = "-", "-"
    try:
        doc = await c.content_read_json(target["digest"])
        plats = []
        total = target["size"]
        if target["mediaType"] in INDEX_TYPES or "manifests" in doc:
            for m in doc.get("manifests") or ():
                p = m.get("platform") or {}
                if p.get("os"):
                    plats.append("/".join(x for x in (p.get("os"), p.get("architecture"),
                                                      p.get("variant")) if x))
            desc = select_manifest(doc)
            total += desc["size"]
            doc = await c.content_read_json(desc["digest"])
        cfg = doc.get("config") or {}
        total += cfg.get("size", 0) + sum(layer.get("size", 0) for layer in doc.get("layers") or ())
        if not plats and cfg.get("digest"):
            conf = await c.content_read_json(cfg["digest"])
            plats.append("/".join(x for x in (conf.get("os"), conf.get("architecture"),
                                              conf.get("variant")) if x))
        size = progress_bytes(total)
        platforms = ",".join(sorted(set(plats))) or "-"
    except errors.PalletError:
        pass  # content missing: ctr shows the row all the same
    return [image.name, target["mediaType"], target["digest"], size, platforms,
            labels_text(image.labels) or "-"]


async def cmd_ls(c, argv, ctx) -> str:
    f = parse_flags(argv, {"quiet": ("bool", ["q"], False)}, stop_at_positional=False)
    images = await c.images(f.args)
    if f.quiet:
        return "".join(i.name + "\n" for i in images)
    rows = [["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]]
    for image in images:
        rows.append(await _image_row(c, image))
    return table(rows, 1, 8, 1)


async def cmd_rm(c, argv, ctx) -> str:
    from pallet.core import errors

    f = parse_flags(argv, {"sync": ("bool", [], False)}, stop_at_positional=False)
    out, failed = [], False
    for ref in f.args:
        try:
            await c.image_delete(ref, sync=f.sync)
            out.append(ref + "\n")
        except errors.NotFound:
            failed = True
            print(f"ctr: image \"{ref}\": not found", file=sys.stderr)
        except errors.PalletError as e:
            failed = True
            print(f"unable to delete {ref}: {e}", file=sys.stderr)
    if failed:
        sys.stdout.write("".join(out))
        raise ExitStatus(1)
    return "".join(out)


async def cmd_tag(c, argv, ctx) -> str:
    from pallet.core import errors

    f = parse_flags(argv, {"force": ("bool", [], False)}, stop_at_positional=False)
    if len(f.args) < 2:
        raise UsageError("please provide a source and at least one target reference")
    src = await c.image_get(f.args[0])
    out = []
    for ref in f.args[1:]:
        try:
            await c.image_create(ref, src.target, dict(src.labels))
        except errors.AlreadyExists:
            if not f.force:
                raise
            await c.image_delete(ref)
            await c.image_create(ref, src.target, dict(src.labels))
        out.append(ref + "\n")
    return "".join(out)


# --- unpack --------------------------------------------------------------------------------

async def unpack(c, name: str, snapshotter: str, out=sys.stdout) -> None:
    """Unpack ``name`` and say so as ctr does."""
    image = await c.image_get(name)
    out.write(f"unpacking {name} ({image.target.digest})...")
    out.flush()
    await c.unpack(name, snapshotter)
    out.write("done\n")
    out.flush()


# --- import --------------------------------------------------------------------------------

def _import_names(img, base: str, digests: bool, skip_named: bool) -> list[str]:
    """The names an archive image gets (ctr's rules for --base-name and --digests)."""
    names = []
    if img.name:
        if not base or img.name.startswith(base):
            names.append(img.name)
    elif base and img.ref_name:
        names.append(f"{base}:{img.ref_name}")
    if digests and not (skip_named and names):
        names.append(f"{base or 'import'}@{img.target.digest}")
    return names


async def cmd_import(c, argv, ctx) -> str:
    import asyncio
    import time

    from pallet.core import errors
    from pallet.distribution.archive import read_archive

    f = parse_flags(argv, {"base-name": ("str", [], ""), "digests": ("bool", [], False),
                           "skip-digest-for-named": ("bool", [], False),
                           "index-name": ("str", [], ""), "all-platforms": ("bool", [], False),
                           "platform": ("str", [], ""), "no-unpack": ("bool", [], False),
                           "snapshotter": ("str", [], ctx.snapshotter),
                           "label": ("list", [], [])})
    if len(f.args) != 1:
        raise UsageError("import takes exactly one archive (or - for stdin)")
    src = f.args[0]
    loop = asyncio.get_running_loop()
    if src == "-":
        src = sys.stdin.buffer
    archive = await loop.run_in_executor(None, read_archive, src)
    lease = await c.lease_create(expire=3600)
    client = c.with_lease(lease)
    named = []
    try:
        for blob in archive.blobs():
            labels = await loop.run_in_executor(None, blob.gc_labels)
            await client.content_write(f"import-{blob.digest}", blob.chunks(),
                                       expected=blob.digest, size=blob.size, labels=labels)
        images = archive.images()
        if not images:
            raise errors.InvalidArgument("archive holds no image")
        labels = dict(x.partition("=")[::2] for x in f.label)
        for img in images:
            names = _import_names(img, f.base_name, f.digests, f.skip_digest_for_named)
            if not names and not f.base_name and not img.name:
                names = [f"import-{time.strftime('%Y-%m-%d')}@{img.target.digest}"]
            for name in names:
                await client.image_put(name, img.target.to_oci(), labels or None)
                named.append(name)
        if f.index_name:
            await client.image_put(f.index_name, images[0].target.to_oci())
    finally:
        archive.close()
        try:
            await c.lease_delete(lease)
        except errors.PalletError:
            pass
    if not f.no_unpack:
        for name in named:
            await unpack(c, name, f.snapshotter)
    return ""


# --- export --------------------------------------------------------------------------------

async def _collect(c, desc: dict, want_all: bool, blobs: dict, platform=None) -> dict | None:
    """Add ``desc`` and what it references to ``blobs`` ({digest: descriptor});
    returns the manifest (as a dict) chosen for this machine."""
    from pallet.core import errors
    from pallet.distribution.platforms import select_manifest

    blobs[desc["digest"]] = desc
    mt = desc.get("mediaType", "")
    doc = await c.content_read_json(desc["digest"])
    if mt in INDEX_TYPES or ("manifests" in doc and "layers" not in doc):
        chosen = select_manifest(doc, platform)
        found = None
        for m in doc.get("manifests") or []:
            if not want_all and m["digest"] != chosen["digest"]:
                continue
            try:
                got = await _collect(c, m, want_all, blobs, platform)
            except errors.NotFound:
                if want_all:
                    raise
                continue
            if m["digest"] == chosen["digest"]:
                found = got
        return found
    for child in [doc.get("config") or {}, *(doc.get("layers") or [])]:
        if child.get("digest"):
            blobs[child["digest"]] = child
    return doc


async def cmd_export(c, argv, ctx) -> str:
    import os
    import tarfile
    import time

    from pallet.containerd.client import descriptor_to_dict
    from pallet.distribution.platforms import parse_platform
    from pallet.distribution.reference import Reference

    f = parse_flags(argv, {"skip-manifest-json": ("bool", [], False),
                           "skip-non-distributable": ("bool", [], False),
                           "platform": ("str", [], ""), "all-platforms": ("bool", [], False)})
    if len(f.args) < 2:
        raise UsageError("please provide both an output filename and an image reference to "
                         "export")
    out_path, refs = f.args[0], f.args[1:]
    platform = parse_platform(f.platform) if f.platform else None
    blobs: dict[str, dict] = {}
    index, docker = [], []
    for ref in refs:
        image = await c.image_get(ref)
        target = descriptor_to_dict(image.target)
        manifest = await _collect(c, target, f.all_platforms, blobs, platform)
        entry = dict(target)
        entry["annotations"] = {"io.containerd.image.name": image.name,
                                "org.opencontainers.image.ref.name":
                                    image.name.rsplit(":", 1)[-1] if ":" in image.name else
                                    "latest"}
        index.append(entry)
        if manifest is not None and not f.skip_manifest_json:
            try:
                tag = Reference.parse(image.name).familiar
            except Exception:  # noqa: BLE001 - a name docker cannot parse: no tag
                tag = None
            docker.append({"Config": "blobs/sha256/" + manifest["config"]["digest"][7:],
                           "RepoTags": [tag] if tag else [],
                           "Layers": ["blobs/sha256/" + layer["digest"][7:]
                                      for layer in manifest.get("layers") or []]})
    tmp = out_path + ".tmp" if out_path != "-" else None
    fh = sys.stdout.buffer if out_path == "-" else open(tmp, "wb")
    now = int(time.time())

    def add(tar, name: str, data: bytes) -> None:
        import io

        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), now, 0o444
        tar.addfile(info, io.BytesIO(data))

    try:
        with tarfile.open(fileobj=fh, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            d = tarfile.TarInfo("blobs")
            d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(d)
            d = tarfile.TarInfo("blobs/sha256")
            d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(d)
            for digest in blobs:
                add(tar, "blobs/sha256/" + digest.partition(":")[2],
                    await c.content_read(digest))
            add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": index},
                                              separators=(",", ":")).encode())
            if docker:
                add(tar, "manifest.json", json.dumps(docker, separators=(",", ":")).encode())
    except BaseException:
        if tmp:
            fh.close()
            os.unlink(tmp)
        raise
    if tmp:
        fh.close()
        os.rename(tmp, out_path)
    return ""


# --- check ---------------------------------------------------------------------------------

async def cmd_check(c, argv, ctx) -> str:
    from pallet.core import errors
    from pallet.containerd.client import descriptor_to_dict
    from pallet.distribution.platforms import chain_ids

    f = parse_flags(argv, {"quiet": ("bool", ["q"], False),
                           "snapshotter": ("str", [], ctx.snapshotter)},
                    stop_at_positional=False)
    rows = [["REF", "TYPE", "DIGEST", "STATUS", "SIZE", "UNPACKED"]]
    ready = []
    for image in await c.images(f.args):
        target = descriptor_to_dict(image.target)
        blobs: dict[str, dict] = {}
        missing = False
        manifest = None
        try:
            manifest = await _collect(c, target, False, blobs)
        except errors.NotFound:
            missing = True
        present = total_size = have_size = 0
        # what ctr counts: the config and layers of the manifest for this machine
        wanted = {}
        if manifest is not None:
            for child in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
                if child.get("digest"):
                    wanted[child["digest"]] = child
        for digest, desc in wanted.items():
            total_size += desc.get("size", 0)
            try:
                info = await c.content_info(digest)
                present += 1
                have_size += info.size
            except errors.NotFound:
                missing = True
        required = len(wanted)
        status = f"complete ({present}/{required})" if not missing else \
            f"incomplete ({present}/{required})"
        unpacked = False
        if manifest is not None and not missing:
            try:
                conf = await c.content_read_json(manifest["config"]["digest"])
                chain = chain_ids(list((conf.get("rootfs") or {}).get("diff_ids") or []))
                if chain:
                    await c.snapshot_stat(chain[-1], snapshotter=f.snapshotter)
                unpacked = True
            except errors.PalletError:
                unpacked = False
        if not missing and unpacked:
            ready.append(image.name)
        rows.append([image.name, target["mediaType"], target["digest"], status,
                     f"{progress_bytes(have_size)}/{progress_bytes(total_size)}",
                     "true" if unpacked else "false"])
    if f.quiet:
        return "".join(r + "\n" for r in ready)
    return table(rows, 1, 8, 1, trailing_tab=False, header_tab=True)
