"""The built-in ``busybox:latest`` image, made from the machine's static busybox.

pallet never pulls from a public registry in its tests; this builds a real
image instead: one layer holding ``/bin/busybox`` (Debian's busybox-static),
a hard link per applet at the path ``busybox --list-full`` gives, the
directories a shell expects (``/tmp`` 1777, ``/root`` 0700, ``/home``...),
and ``/etc/passwd`` and ``/etc/group`` with root and nobody.  The config runs
``sh`` with docker's default PATH, for this machine's architecture.

Everything is deterministic (fixed times, owners, order), so the same busybox
binary always gives the same image ID::

    python -m pallet.distribution.busybox_image OUT.tar [--busybox PATH] [--name NAME]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
from typing import Sequence

import attrs

from pallet.core.errors import InvalidArgument, NotFound
from pallet.core.models import Descriptor

from pallet.distribution.archive import (
    ExportImage,
    docker_manifest,
    manifest_bytes,
    normalize_name,
    write_docker_archive)
from pallet.distribution.digests import sha256_digest
from pallet.distribution.mediatypes import MT_DOCKER_CONFIG, MT_DOCKER_LAYER, MT_DOCKER_MANIFEST
from pallet.distribution.platforms import Platform

DEFAULT_BUSYBOX = "/bin/busybox"
DEFAULT_NAME = "busybox:latest"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: 2000-01-01T00:00:00Z: every time in the image, so the image ID is stable
EPOCH = 946684800
EPOCH_TEXT = "2000-01-01T00:00:00Z"

_DIRS = {  # path -> mode
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o755, "root": 0o700,
    "sbin": 0o755, "sys": 0o755, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755,
    "usr/sbin": 0o755, "var": 0o755, "var/spool": 0o755, "var/spool/mail": 0o755,
    "var/www": 0o755,
}
_FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n"
                  b"nobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": b"root:x:0:\nnobody:x:65534:\n",
}


@attrs.frozen
class BuiltImage:
    """An image built in memory: its blobs and descriptors."""

    name: str
    manifest: Descriptor
    config: Descriptor
    layer: Descriptor
    blobs: dict = attrs.field(eq=False, repr=False)  # digest -> bytes

    @property
    def image_id(self) -> str:
        return self.config.digest


def applet_paths(busybox: str = DEFAULT_BUSYBOX) -> list[str]:
    """The applet paths (``bin/sh``, ``usr/bin/env``...) the binary installs."""
    try:
        out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True,
                             text=True, timeout=30).stdout
    except FileNotFoundError:
        raise NotFound(f"busybox {busybox}: no such file") from None
    except subprocess.CalledProcessError as e:
        raise InvalidArgument(f"busybox {busybox} --list-full: exit status {e.returncode}") \
            from None
    paths = {p.strip().lstrip("/") for p in out.splitlines() if p.strip()}
    # linuxrc is an initrd's init, not something a container image carries
    paths.discard("linuxrc")
    paths.discard("bin/busybox")
    return sorted(paths)


def _info(name: str, mode: int, kind=tarfile.REGTYPE, size: int = 0,
          linkname: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.linkname = kind, mode, size, linkname
    ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = EPOCH, 0, 0, "", ""
    return ti


def build_layer(busybox: str = DEFAULT_BUSYBOX) -> bytes:
    """The uncompressed layer tar."""
    applets = applet_paths(busybox)
    with open(busybox, "rb") as f:
        binary = f.read()
    dirs = dict(_DIRS)
    for p in applets:  # any directory an applet needs (e.g. usr/libexec)
        parent = os.path.dirname(p)
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = os.path.dirname(parent)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in sorted(dirs):
            tf.addfile(_info(d + "/", dirs[d], tarfile.DIRTYPE))
        tf.addfile(_info("bin/busybox", 0o755, size=len(binary)), io.BytesIO(binary))
        for name in sorted(_FILES):
            tf.addfile(_info(name, 0o644, size=len(_FILES[name])), io.BytesIO(_FILES[name]))
        for p in applets:
            tf.addfile(_info(p, 0o755, tarfile.LNKTYPE, linkname="bin/busybox"))
    return buf.getvalue()


def build_config(diff_id: str, platform: Platform | None = None) -> bytes:
    """The image config JSON (docker's layout, keys sorted for stability)."""
    platform = platform or Platform.host()
    config = {
        "architecture": platform.architecture,
        "os": platform.os,
        "created": EPOCH_TEXT,
        "config": {"Env": [DEFAULT_PATH_ENV], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH_TEXT,
                     "created_by": "pallet: busybox from the host's busybox-static"}],
    }
    if platform.variant:
        config["variant"] = platform.variant
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def build_image(busybox: str = DEFAULT_BUSYBOX, name: str = DEFAULT_NAME,
                platform: Platform | None = None) -> BuiltImage:
    """Build the image in memory; its manifest is the Docker schema 2 manifest
    an import of the archive synthesises, so digests survive a round trip."""
    layer = build_layer(busybox)
    layer_digest = sha256_digest(layer)
    config = build_config(layer_digest, platform)
    config_d = Descriptor(MT_DOCKER_CONFIG, sha256_digest(config),
                          len(config))
    layer_d = Descriptor(MT_DOCKER_LAYER, layer_digest, len(layer))
    manifest = manifest_bytes(docker_manifest(config_d, [layer_d]))
    manifest_d = Descriptor(MT_DOCKER_MANIFEST, sha256_digest(manifest),
                            len(manifest))
    return BuiltImage(normalize_name(name), manifest_d, config_d, layer_d,
                      {layer_d.digest: layer, config_d.digest: config,
                       manifest_d.digest: manifest})


def write_archive(out: str, busybox: str = DEFAULT_BUSYBOX,
                  names: Sequence[str] = (DEFAULT_NAME,)) -> BuiltImage:
    """Build the image and write it as a ``docker save`` tarball at ``out``."""
    image = build_image(busybox, names[0] if names else DEFAULT_NAME)
    export = ExportImage(tuple(normalize_name(n) for n in names), image.manifest, image.config,
                         (image.layer,))
    write_docker_archive(out, [export], lambda d: io.BytesIO(image.blobs[d]), mtime=EPOCH)
    return image


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pallet.distribution.busybox_image",
        description="write the built-in busybox image as a docker-save tarball")
    parser.add_argument("out", help="tarball to write")
    parser.add_argument("--busybox", default=DEFAULT_BUSYBOX, help="static busybox binary")
    parser.add_argument("--name", action="append", help="image name (repeatable), "
                        f"default {DEFAULT_NAME}")
    args = parser.parse_args(argv)
    try:
        image = write_archive(args.out, args.busybox, args.name or [DEFAULT_NAME])
    except (OSError, InvalidArgument, NotFound) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(image.image_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
