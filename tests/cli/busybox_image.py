"""Build a tiny busybox image as a ``docker save`` tarball from /bin/busybox.

The image has one layer: /bin/busybox plus a symlink per applet, /etc/passwd
and /etc/group (so ``-u nobody`` resolves), /tmp and /root.  Nothing is
pulled from a registry.
"""

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time

BUSYBOX = "/bin/busybox"


def _applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    return sorted({a.strip() for a in out.split() if a.strip() and a.strip() != "busybox"})


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644, mtime: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755, mtime: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = mtime
    tar.addfile(info)


def layer_tar(busybox: str = BUSYBOX) -> bytes:
    """The uncompressed layer tarball of the busybox root filesystem."""
    buf = io.BytesIO()
    mtime = int(os.stat(busybox).st_mtime)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc", "root", "proc", "sys", "dev", "home"):
            _add_dir(tar, d, mtime=mtime)
        _add_dir(tar, "tmp", mode=0o1777, mtime=mtime)
        with open(busybox, "rb") as f:
            _add_file(tar, "bin/busybox", f.read(), 0o755, mtime)
        for applet in _applets(busybox):
            info = tarfile.TarInfo("bin/" + applet)
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            info.mode = 0o777
            info.mtime = mtime
            tar.addfile(info)
        _add_file(tar, "etc/passwd",
                  b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
                  mtime=mtime)
        _add_file(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n", mtime=mtime)
    return buf.getvalue()


def save_tarball(out_path: str, tags=("busybox:latest",), busybox: str = BUSYBOX) -> str:
    """Write a ``docker save``-format tarball to *out_path*; return the image id."""
    layer = layer_tar(busybox)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.stat(busybox).st_mtime))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "pallet tests: busybox from " + busybox}],
    }
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    layer_dir = hashlib.sha256(diff_id.encode()).hexdigest()
    manifest = [{"Config": config_hex + ".json", "RepoTags": list(tags),
                 "Layers": [layer_dir + "/layer.tar"]}]
    repositories = {}
    for tag in tags:
        repo, _, t = tag.rpartition(":")
        repositories.setdefault(repo, {})[t] = layer_dir
    with tarfile.open(out_path, "w") as tar:
        _add_file(tar, config_hex + ".json", config_bytes)
        _add_dir(tar, layer_dir)
        _add_file(tar, layer_dir + "/VERSION", b"1.0")
        _add_file(tar, layer_dir + "/json", json.dumps({"id": layer_dir}).encode())
        _add_file(tar, layer_dir + "/layer.tar", layer)
        _add_file(tar, "manifest.json", json.dumps(manifest).encode())
        _add_file(tar, "repositories", json.dumps(repositories).encode())
    return "sha256:" + config_hex


if __name__ == "__main__":
    import sys
    print(save_tarball(sys.argv[1]))
