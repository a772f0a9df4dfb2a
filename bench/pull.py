"""Pull benchmark: pallet against the real Docker, same registry, same image,
same run, driven by the same docker CLI.

The image (built here: random data files, >= 100 MB in >= 4 gzip layers) is
pushed with skopeo to Debian's docker-registry on 127.0.0.1.  Then, in turns:

* docker: a private dockerd (own roots, ``--bridge=none --iptables=false``,
  ``--insecure-registry``) runs ``docker pull``; ``docker rmi`` between runs;
* palletd: the same ``docker pull`` through palletd (its own roots; it pulls
  into pallet-containerd over containerd's API and unpacks there);
  ``docker rmi`` between runs (a synchronous delete: pallet-containerd's
  garbage collection removes the blobs and snapshots, so every run downloads
  and unpacks everything again);
* pallet: :func:`pallet.distribution.pull.pull` into a fresh store
  with the overlayfs snapshotter (fetch, verify, unpack), in-process — what
  palletd or pallet-ctr run — and the same as a new process (``pallet-pull``
  below: interpreter start and imports included, like a CLI).

Prints one JSON line per measure and the ratios (target: palletd <= 1.0x docker)::

    python bench/pull.py [--size-mb 104] [--layers 4] [--runs 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "registry"))

CHILD = r"""
import asyncio, sys, time
t0 = time.monotonic()
from pallet.imagestore.store import ImageStore
from pallet.distribution.pull import pull
from pallet.plugins.store_overlay.overlay import OverlaySnapshotter
root = sys.argv[1]
st = ImageStore(root + "/content", root + "/meta/meta.db",
                [(OverlaySnapshotter, root + "/snapshots-overlayfs")])
asyncio.run(pull(sys.argv[2], st.target("moby")))
"""


def build_image(base: str, size_mb: int, layers: int) -> str:
    """An OCI layout of random files, ``size_mb`` MB in ``layers`` gzip layers."""
    from registry_helpers import oci_image, oci_layout

    per = size_mb * 1_000_000 // layers
    files = []
    for i in range(layers):
        # a few files per layer: random data, as the issue asks
        files.append({f"data/l{i}/f{j}": os.urandom(per // 4) for j in range(4)})
    layout = os.path.join(base, "layout")
    desc = oci_image(layout, files, compression="gzip")
    oci_layout(layout, [desc], "v1")
    return layout


def start_docker(registry_host: str):
    from engines import Docker

    return Docker("--insecure-registry", registry_host).start()


def pallet_in_process(ref: str) -> float:
    from pallet.distribution.pull import pull
    from pallet.imagestore.store import ImageStore
    from pallet.plugins.store_overlay.overlay import OverlaySnapshotter

    root = tempfile.mkdtemp(prefix="pb-pp-", dir="/tmp")
    try:
        st = ImageStore(root + "/content", root + "/meta/meta.db",
                        [(OverlaySnapshotter, root + "/snapshots-overlayfs")])
        t = time.monotonic()
        asyncio.run(pull(ref, st.target("moby")))
        elapsed = time.monotonic() - t
        st.close()
        return elapsed
    finally:
        shutil.rmtree(root, ignore_errors=True)


def pallet_process(ref: str) -> float:
    root = tempfile.mkdtemp(prefix="pb-pq-", dir="/tmp")
    try:
        t = time.monotonic()
        subprocess.run([sys.executable, "-c", CHILD, root, ref], check=True)
        return time.monotonic() - t
    finally:
        shutil.rmtree(root, ignore_errors=True)


def docker_pull(engine, ref: str) -> float:
    t = time.monotonic()
    engine.docker("pull", "-q", ref)
    elapsed = time.monotonic() - t
    engine.docker("rmi", ref)
    return elapsed


def start_palletd():
    from engines import Pallet

    engine = Pallet().start()
    deadline = time.monotonic() + 120
    while engine.docker("version", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("palletd did not answer")
        time.sleep(0.1)
    return engine


def palletd_pull(engine, ref: str) -> float:
    """``docker pull`` through palletd; the image removed (and collected) after."""
    t = time.monotonic()
    engine.docker("pull", "-q", ref)
    elapsed = time.monotonic() - t
    engine.docker("rmi", ref)
    return elapsed


def drop_caches() -> None:
    subprocess.run(["sync"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=104)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)

    from registry_helpers import RegistryServer, skopeo_copy

    base = tempfile.mkdtemp(prefix="pb-pull-", dir="/tmp")
    registry = docker = palletd = None
    try:
        layout = build_image(base, args.size_mb, args.layers)
        registry = RegistryServer(os.path.join(base, "reg")).start()
        ref = f"{registry.host}/bench/big:v1"
        skopeo_copy(f"oci:{layout}:v1", f"docker://{ref}")
        results: dict[str, list[float]] = {"docker": [], "palletd": [], "pallet": [],
                                           "pallet-process": []}
        docker = start_docker(registry.host)
        palletd = start_palletd()
        docker_pull(docker, ref)  # warm: registry's page cache, daemon start-up paths
        palletd_pull(palletd, ref)
        pallet_in_process(ref)
        for _ in range(args.runs):
            drop_caches()
            results["docker"].append(docker_pull(docker, ref))
            drop_caches()
            results["palletd"].append(palletd_pull(palletd, ref))
            drop_caches()
            results["pallet"].append(pallet_in_process(ref))
            drop_caches()
            results["pallet-process"].append(pallet_process(ref))
        med = {k: statistics.median(v) for k, v in results.items()}
        for k, v in results.items():
            print(json.dumps({"bench": f"pull.{k}", "runs": [round(x, 3) for x in v],
                              "median_s": round(med[k], 3), "size_mb": args.size_mb,
                              "layers": args.layers}))
        print(json.dumps({"bench": "pull.ratio", "palletd_vs_docker":
                          round(med["palletd"] / med["docker"], 3),
                          "pallet_vs_docker": round(med["pallet"] / med["docker"], 3),
                          "pallet_process_vs_docker":
                          round(med["pallet-process"] / med["docker"], 3), "target": 1.0}))
        return 0
    finally:
        if docker is not None:
            docker.stop()
        if palletd is not None:
            palletd.stop()
        if registry is not None:
            registry.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
