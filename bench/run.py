"""pallet against the real Docker, same docker CLI, same run.

    .venv/bin/python bench/run.py [--runs 15] [--only NAME,...]

Starts palletd and (when Debian's docker.io is installed) a real dockerd, each
with its own roots and socket, loads the same built-in busybox image into both,
and prints each figure for both engines with the ratio pallet/docker.  Lower is
better for times and memory.  Targets are written next to each figure.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engines import (Docker, Pallet, interleaved, pids_mentioning,  # noqa: E402
                     pss_kib, settle_merging)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_TAR = os.path.join(ROOT, "build", "busybox.tar")


# timed figures: the action each engine repeats; the engines take turns
def action_run_rm(engine):
    return lambda: engine.docker("run", "--rm", "--network", "none", "busybox", "true")


def action_ps(engine):
    return lambda: engine.docker("ps")


def bench_shim_pss(engine, runs, count=5):
    """Mean PSS (KiB) of the per-container shim over ``count`` running containers."""
    ids = [engine.docker("run", "-d", "--network", "none", "busybox", "sleep", "600")
           .stdout.decode().strip() for _ in range(count)]
    time.sleep(1.0)
    settle_merging()   # pallet's shims' memory is merged by the kernel (KSM) meanwhile
    try:
        # a pallet-shim names itself after its container ("pallet-shim <id>");
        # containerd-shim-runc-v2 has the id among its flags
        prefix = "pallet-shim" if engine.name == "pallet" else "containerd-shim"
        shims = set()
        for cid in ids:
            for pid in pids_mentioning(cid):
                try:
                    with open(f"/proc/{pid}/comm") as f:
                        comm = f.read().strip()
                except OSError:
                    continue
                if comm.startswith(prefix[:15]):
                    shims.add(pid)
        if not shims:
            return float("nan")
        return sum(pss_kib(p) for p in shims) / count
    finally:
        engine.docker("rm", "-f", *ids, check=False)


def bench_daemon_pss(engine, runs):
    """PSS (KiB) of the engine's daemons with 5 containers running: palletd,
    pallet-containerd and the shims' zygote; dockerd and containerd."""
    ids = [engine.docker("run", "-d", "--network", "none", "busybox", "sleep", "600")
           .stdout.decode().strip() for _ in range(5)]
    time.sleep(1.0)
    settle_merging()
    try:
        total = 0
        for pid in pids_mentioning(engine.root):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            daemon = comm in ("palletd", "pallet-containe", "dockerd", "containerd") or \
                (comm.startswith("pallet-shim") and b"zygote" in cmdline)
            if daemon:
                total += pss_kib(pid)
        return float(total)
    finally:
        engine.docker("rm", "-f", *ids, check=False)


TIMED = [
    ("run --rm busybox true (ms, median)", action_run_rm),
    ("ps (ms, median)", action_ps),
]
BENCHES = [
    ("shim PSS per running container (KiB)", bench_shim_pss),
    ("daemons' PSS, 5 containers running (KiB)", bench_daemon_pss),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    if not os.path.exists(IMAGE_TAR):
        subprocess.run([sys.executable, "-m", "pallet.distribution.busybox_image", IMAGE_TAR],
                       check=True)
    engines = [Pallet()]
    if Docker.available():
        engines.append(Docker())
    results: dict[str, dict[str, float]] = {}
    try:
        for e in engines:
            e.start()
            e.docker("load", "-i", IMAGE_TAR)
        for title, make in TIMED:
            if args.only and not any(k in title for k in args.only.split(",")):
                continue
            results[title] = interleaved({e.name: make(e) for e in engines}, args.runs, 3)
        for title, fn in BENCHES:
            if args.only and not any(k in title for k in args.only.split(",")):
                continue
            results[title] = {e.name: fn(e, args.runs) for e in engines}
    finally:
        for e in engines:
            e.stop()
    width = max(len(t) for t in results) if results else 10
    print(f"{'benchmark':<{width}}  {'pallet':>10}  {'docker':>10}  {'ratio':>7}")
    for title, row in results.items():
        p, d = row.get("pallet"), row.get("docker")
        ratio = f"{p / d:.2f}x" if p is not None and d else "-"
        print(f"{title:<{width}}  {p:>10.1f}  {d if d is not None else float('nan'):>10.1f}  {ratio:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
