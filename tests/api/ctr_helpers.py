"""Helpers of the container-operation tests (test_ctr_*.py): polling, a
palletd of a module's own, and a derived image built from the busybox tar."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time

from api_harness import Palletd


def wait_for(pred, timeout: float = 20.0, interval: float = 0.05):
    """Poll ``pred`` until it returns something true; that value, or raise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


def inspect(d: Palletd, ref: str) -> dict:
    return json.loads(d.docker("inspect", ref).stdout)[0]


def state(d: Palletd, ref: str) -> dict:
    return inspect(d, ref)["State"]


def out(r) -> str:
    return r.stdout.decode().strip()


def start_palletd(busybox_tar: str, *extra: str) -> Palletd:
    d = Palletd(os.environ.get("PALLET_API_CONTAINERD", "pallet"))
    d.extra_args.extend(extra)
    try:
        d.start()
        r = d.docker("load", "-i", busybox_tar)
        assert b"Loaded image: busybox:latest" in r.stdout, r
    except BaseException:
        d.cleanup()
        raise
    return d


def _blob(tf: tarfile.TarFile, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))
    return {"digest": "sha256:" + digest, "size": len(data)}


def derived_image(busybox_tar: str, dest: str, name: str, *, files: dict, volumes=(),
                  cmd=None, user: str = "", healthcheck: dict | None = None) -> str:
    """Write an image archive ``name`` = busybox plus a layer holding ``files``
    (path -> (content bytes or None for a directory, uid, mode)), with ``VOLUME``s."""
    with tarfile.open(busybox_tar) as src:
        manifest = json.loads(src.extractfile("manifest.json").read())[0]
        base_config = json.loads(src.extractfile(manifest["Config"]).read())
        base_layer = src.extractfile(manifest["Layers"][0]).read()
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as lt:
        for path, (content, uid, mode) in sorted(files.items()):
            ti = tarfile.TarInfo(path.lstrip("/"))
            ti.uid = ti.gid = uid
            ti.mode = mode
            ti.mtime = 946684800
            if content is None:
                ti.type = tarfile.DIRTYPE
                lt.addfile(ti)
            else:
                ti.size = len(content)
                lt.addfile(ti, io.BytesIO(content))
    layer = layer_buf.getvalue()
    config = json.loads(json.dumps(base_config))
    cfg = config.setdefault("config", {})
    if volumes:
        cfg["Volumes"] = {v: {} for v in volumes}
    if cmd:
        cfg["Cmd"] = list(cmd)
    if user:
        cfg["User"] = user
    if healthcheck:
        cfg["Healthcheck"] = dict(healthcheck)
    config["rootfs"]["diff_ids"] = list(config["rootfs"]["diff_ids"]) + [
        "sha256:" + hashlib.sha256(layer).hexdigest()]
    config.setdefault("history", []).append({"created": "2000-01-01T00:00:00Z",
                                             "created_by": "test layer"})
    with tarfile.open(dest, "w") as tf:
        base = _blob(tf, base_layer)
        top = _blob(tf, gzip.compress(layer, mtime=0))
        conf = _blob(tf, json.dumps(config).encode())
        mt = "application/vnd.docker.distribution.manifest.v2+json"
        man = {"schemaVersion": 2, "mediaType": mt,
               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                          **conf},
               "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar", **base},
                          {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                           **top}]}
        mdesc = _blob(tf, json.dumps(man).encode())
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [{"mediaType": mt, **mdesc, "annotations": {
                     "io.containerd.image.name": f"docker.io/library/{name}",
                     "org.opencontainers.image.ref.name": name.split(":")[-1]}}]}
        for fname, data in (("index.json", json.dumps(index).encode()),
                            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')):
            ti = tarfile.TarInfo(fname)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return dest
