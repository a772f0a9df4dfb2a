"""pallet-containerd and pallet-shim against the real Docker, in the same run.

    .venv/bin/python bench/containerd.py [--count 10] [--runs 15] [--json]

Two figures, each with its target:

* shim PSS per running container: ``count`` containers running ``sleep``
  under pallet-containerd (one pallet-shim each, forked from the zygote) and
  under the real dockerd 20.10 + containerd 1.6 (one
  containerd-shim-runc-v2 each); the mean PSS of the shims (the zygote, like
  containerd itself, is not counted).  Target: <= 0.5x.
* latency from the create request to the container's process running:
  Containers.Create, Tasks.Create and Tasks.Start against pallet-containerd,
  against the wall time of ``docker run -d`` on the real Docker (median of
  ``runs`` each, after warm-up).  Target: <= 0.5x.

Both engines run on their own roots and sockets, with the busybox image
pallet builds itself, and are stopped by pid at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))

from engines import (Docker, cgroup_parents, pids_mentioning, pss_kib,  # noqa: E402
                     settle_merging,
                     remove_new_cgroup_parents, umount_below)


def busybox_tar(workdir: str) -> str:
    built = os.path.join(ROOT, "build", "busybox.tar")
    if os.path.exists(built):
        return built
    out = os.path.join(workdir, "busybox.tar")
    subprocess.run([sys.executable, "-m", "pallet.distribution.busybox_image", out],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


class PalletContainerd:
    """pallet-containerd on its own roots, its zygote and shims stopped at the end."""

    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="pl-bc-", dir="/tmp")
        self.address = os.path.join(self.base, "p.sock")
        self.root = os.path.join(self.base, "root")
        self.state = os.path.join(self.base, "state")
        self.proc = None

    def start(self) -> "PalletContainerd":
        log = open(os.path.join(self.base, "log"), "wb")
        self.proc = subprocess.Popen(
            [os.path.join(VENV_BIN, "pallet-containerd"), "--address", self.address, "--root",
             self.root, "--state", self.state], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.address):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pallet-containerd did not start")
            time.sleep(0.05)
        return self

    def ctr(self, *args) -> None:
        subprocess.run([os.path.join(VENV_BIN, "pallet-ctr"), "-a", self.address, *args],
                       check=True, stdout=subprocess.DEVNULL)

    def shim_pids(self) -> list[int]:
        out = []
        top = os.path.join(self.state, "io.containerd.runtime.v2.task")
        for ns in os.listdir(top) if os.path.isdir(top) else ():
            for cid in os.listdir(os.path.join(top, ns)):
                try:
                    with open(os.path.join(top, ns, cid, "shim.pid")) as f:
                        out.append(int(f.read()))
                except (OSError, ValueError):
                    pass
        return out

    def stop(self) -> None:
        shims = self.shim_pids()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        zygote = self.state.encode()
        for pid in shims + [int(p) for p in os.listdir("/proc") if p.isdigit()
                            and _cmdline(int(p)).startswith(b"pallet-shim zygote")
                            and zygote in _cmdline(int(p))]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.3)
        umount_below(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


def sleep_spec(namespace: str, cid: str) -> dict:
    from pallet.client.ctr_run import default_spec

    spec = default_spec(namespace, cid)
    spec["process"]["args"] = ["sleep", "3600"]
    return spec


async def _remove_all(c, ids) -> None:
    for cid in ids:
        waiter = asyncio.ensure_future(c.task_wait(cid))
        await c.task_kill(cid, 9, all=True)
        await waiter
        await c.task_delete(cid)
        await c.container_delete(cid)
        await c.snapshot_remove(cid)


def docker_figures(d: Docker, count: int, runs: int) -> dict:
    latencies = []
    ids = []
    for i in range(3 + runs):
        t = time.perf_counter()
        r = d.docker("run", "-d", "--network", "none", "busybox", "sleep", "3600")
        if i >= 3:
            latencies.append((time.perf_counter() - t) * 1000)
        ids.append(r.stdout.decode().strip())
    d.docker("rm", "-f", *ids, check=False)
    ids = [d.docker("run", "-d", "--network", "none", "busybox", "sleep", "3600")
           .stdout.decode().strip() for _ in range(count)]
    time.sleep(1.5)
    settle_merging()   # as for pallet's
    shims = [p for p in pids_mentioning(d.root) if _comm(p).startswith("containerd-shim")]
    pss = [pss_kib(p) for p in shims]
    d.docker("rm", "-f", *ids, check=False)
    return {"latency_ms": statistics.median(latencies), "pss_kib": sum(pss) / len(pss),
            "shims": len(pss)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10, help="running containers for the PSS")
    ap.add_argument("--runs", type=int, default=15, help="measured starts for the latency")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/containerd.py: needs root", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="pl-bw-", dir="/tmp")
    pc = d = None
    cgroups_before = cgroup_parents()
    try:
        tar = busybox_tar(work)
        pc = PalletContainerd().start()
        pc.ctr("-n", "bench", "images", "import", tar)  # through the API, as ctr does
        pallet = asyncio.run(pallet_figures(pc, "bench", args.count, args.runs))
        docker = None
        if Docker.available():
            d = Docker().start()
            d.docker("load", "-i", tar)
            docker = docker_figures(d, args.count, args.runs)
    finally:
        if pc is not None:
            pc.stop()
        if d is not None:
            d.stop()
        remove_new_cgroup_parents(cgroups_before)  # the namespace's /bench
        shutil.rmtree(work, ignore_errors=True)
    figures = {"count": args.count, "pallet": pallet, "docker": docker}
    if docker:
        figures["pss_ratio"] = pallet["pss_kib"] / docker["pss_kib"]
        figures["latency_ratio"] = pallet["latency_ms"] / docker["latency_ms"]
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"running containers: {args.count}")
    print(f"{'figure':46} {'pallet':>10} {'docker':>10} {'ratio':>7}  target")
    for key, label, unit in (("pss_kib", "shim PSS per running container", "KiB"),
                             ("latency_ms", "create request -> process running", "ms")):
        theirs = docker[key] if docker else float("nan")
        ratio = pallet[key] / theirs if docker else float("nan")
        print(f"{label + ' (' + unit + ')':46} {pallet[key]:10.1f} {theirs:10.1f} "
              f"{ratio:7.2f}  <= 0.50")
    return 0


async def pallet_figures(pc: "PalletContainerd", ns: str, count: int, runs: int) -> dict:
    from pallet.containerd.client import Containerd

    image = "docker.io/library/busybox:latest"
    async with Containerd(pc.address, ns) as c:
        top = await c.unpack(image)
        latencies: list[float] = []
        ids: list[str] = []

        async def one(measure: bool) -> None:
            cid = "b" + secrets.token_hex(6)
            mounts = await c.snapshot_prepare(cid, top)
            spec = sleep_spec(ns, cid)
            t = time.perf_counter()
            await c.container_create(cid, spec=spec, image=image, snapshot_key=cid,
                                     runtime="io.containerd.pallet.v2")  # pallet-shim
            await c.task_create(cid, rootfs=mounts)
            await c.task_start(cid)
            if measure:
                latencies.append((time.perf_counter() - t) * 1000)
            ids.append(cid)

        for _ in range(3):
            await one(False)
        for _ in range(runs):
            await one(True)
        await _remove_all(c, ids)
        ids.clear()
        for _ in range(count):
            await one(False)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(settle_merging)   # the kernel merges the shims' pages (KSM)
        shims = [p for p in pc.shim_pids() if _comm(p).startswith("pallet-shim")]
        pss = [pss_kib(p) for p in shims]
        await _remove_all(c, ids)
    return {"latency_ms": statistics.median(latencies), "pss_kib": sum(pss) / len(pss),
            "shims": len(pss)}


if __name__ == "__main__":
    sys.exit(main())
