"""A two-layer busybox image as OCI blobs, built in memory for containerd tests.

Layer 1 is /bin/busybox with a few applet links (gzip-compressed, so that
Diff.Apply has to decompress it); layer 2 adds /hello.  The manifest sits
behind an OCI index with one entry per platform, so that unpack has to pick
the one of this machine.  Nothing is pulled from a registry.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from pallet.containerd.client import host_platform

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "cat", "sleep", "ls", "true", "false", "id", "ps")
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = payload
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def build(hello: str = "hello from layer two") -> dict:
    """Blobs and descriptors: {"blobs": {digest: bytes}, "index": desc, "diff_ids": [...]}."""
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    entries = [(d, "dir", None, 0o755) for d in ("bin", "etc", "proc", "sys", "dev", "tmp")]
    entries.append(("bin/busybox", "file", busybox, 0o755))
    entries += [(f"bin/{a}", "link", "busybox", 0o777) for a in APPLETS]
    entries.append(("etc/passwd", "file", b"root:x:0:0:root:/:/bin/sh\n", 0o644))
    layer1 = _tar(entries)
    layer1_gz = gzip.compress(layer1, mtime=0)
    layer2 = _tar([("hello", "file", hello.encode() + b"\n", 0o644)])
    plat = host_platform()
    config = {
        "architecture": plat["architecture"], "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer1), _digest(layer2)]},
    }
    config_b = json.dumps(config).encode()
    layers = [
        {"mediaType": MT_LAYER_GZ, "digest": _digest(layer1_gz), "size": len(layer1_gz)},
        {"mediaType": MT_LAYER, "digest": _digest(layer2), "size": len(layer2)},
    ]
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                "config": {"mediaType": MT_CONFIG, "digest": _digest(config_b),
                           "size": len(config_b)},
                "layers": layers}
    manifest_b = json.dumps(manifest).encode()
    other = "arm64" if plat["architecture"] != "arm64" else "amd64"
    # a decoy entry first: a manifest of another architecture that is not in the store
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
        {"mediaType": MT_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": other}},
        {"mediaType": MT_MANIFEST, "digest": _digest(manifest_b), "size": len(manifest_b),
         "platform": {"os": "linux", "architecture": plat["architecture"]}},
    ]}
    index_b = json.dumps(index).encode()
    blobs = {_digest(b): b for b in (layer1_gz, layer2, config_b, manifest_b, index_b)}
    return {
        "blobs": blobs,
        "index": {"mediaType": MT_INDEX, "digest": _digest(index_b), "size": len(index_b)},
        "manifest": {"mediaType": MT_MANIFEST, "digest": _digest(manifest_b),
                     "size": len(manifest_b)},
        "config": config,
        "diff_ids": config["rootfs"]["diff_ids"],
        "gc_labels": {
            _digest(index_b): {"containerd.io/gc.ref.content.m.0": _digest(manifest_b)},
            _digest(manifest_b): {"containerd.io/gc.ref.content.config": _digest(config_b),
                                  "containerd.io/gc.ref.content.l.0": layers[0]["digest"],
                                  "containerd.io/gc.ref.content.l.1": layers[1]["digest"]},
        },
    }
