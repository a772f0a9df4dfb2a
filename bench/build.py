"""docker build: pallet against dockerd 20.10's classic builder (and buildah).

    .venv/bin/python bench/build.py [--runs 5] [--files 1000] [--mb 50]

The same docker CLI (``DOCKER_BUILDKIT=0``) builds the same Dockerfile of
about ten steps over a context of ``--files`` files (``--mb`` MB in all,
incompressible) against palletd and a dockerd started in the same run, the
engines taking turns; ``buildah bud`` builds it too when buildah is
installed (its own storage under the run's directory).  Three figures,
median wall time of ``--runs`` builds each:

* cold: ``--no-cache`` (every step made again);
* cached: nothing changed (every step from the cache);
* one file: one source file changed (the COPY and the steps after it again).

Targets (pallet / dockerd): cold <= 0.8, cached <= 0.5, one file <= 0.8.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engines import DOCKER_CLI, Docker, Pallet  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_TAR = os.path.join(ROOT, "build", "busybox.tar")
TARGETS = {"cold": 0.8, "cached": 0.5, "one file": 0.8}

DOCKERFILE = """FROM busybox
LABEL org.example.bench=build
ENV APP=/app
WORKDIR /app
COPY . /app
RUN find /app -type f | wc -l > /count
RUN mkdir -p /out && cp /app/d0/f0 /out/first && echo built > /out/stamp
RUN cat /count /out/stamp
USER 1000
EXPOSE 8080
CMD ["cat", "/out/stamp"]
"""


def make_context(path: str, files: int, megabytes: int) -> None:
    """``files`` files of incompressible data in subdirectories of 100."""
    rnd = random.Random(1234)
    size = megabytes * 1_000_000 // files
    for i in range(files):
        d = os.path.join(path, f"d{i // 100}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i % 100}"), "wb") as f:
            f.write(rnd.randbytes(size))
    with open(os.path.join(path, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)


def touch_one(path: str, n: int) -> None:
    """Change one source file (a new content each time)."""
    with open(os.path.join(path, "d3", "f7"), "wb") as f:
        f.write(f"changed {n} {time.time_ns()}\n".encode() * 100)


class Buildah:
    """``buildah bud`` with storage of its own."""

    name = "buildah"

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="pb-bh-", dir="/tmp")
        self.args = ["--root", os.path.join(self.root, "root"),
                     "--runroot", os.path.join(self.root, "run"), "--storage-driver", "overlay"]

    @staticmethod
    def available() -> bool:
        return shutil.which("buildah") is not None

    def start(self) -> "Buildah":
        subprocess.run(["buildah", *self.args, "pull", "-q",
                        f"docker-archive:{IMAGE_TAR}"], check=True, capture_output=True)
        subprocess.run(["buildah", *self.args, "tag", "docker.io/library/busybox:latest",
                        "busybox"], capture_output=True)
        return self

    def build(self, context: str, no_cache: bool) -> None:
        argv = ["buildah", *self.args, "bud", "-q", "--isolation", "chroot",
                "--layers", "-t", "bench", context]
        if no_cache:
            argv.insert(argv.index("bud") + 1, "--no-cache")
        subprocess.run(argv, check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(["buildah", *self.args, "rm", "--all"], capture_output=True)
        subprocess.run(["umount", "-R", self.root], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def docker_build(engine, context: str, no_cache: bool) -> None:
    argv = [DOCKER_CLI, "build", "-q", "-t", "bench", context]
    if no_cache:
        argv.insert(2, "--no-cache")
    r = subprocess.run(argv, env=dict(engine.env, DOCKER_BUILDKIT="0"), capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"{engine.name}: build failed: {r.stderr.decode()[-2000:]}")


def measure(builders: dict, context: str, runs: int) -> dict:
    """Median seconds of each builder for each figure, the builders taking turns."""
    out = {name: {k: [] for k in TARGETS} for name in builders}
    order = list(builders)
    for name, build in builders.items():
        build(context, True)  # warm up: the base image unpacked, the cache filled
    for i in range(runs):
        turn = order if i % 2 == 0 else order[::-1]
        for name in turn:
            build = builders[name]
            t = time.perf_counter()
            build(context, True)
            out[name]["cold"].append(time.perf_counter() - t)
        for name in turn:
            t = time.perf_counter()
            builders[name](context, False)
            out[name]["cached"].append(time.perf_counter() - t)
        for name in turn:
            touch_one(context, i * 10 + order.index(name))
            t = time.perf_counter()
            builders[name](context, False)
            out[name]["one file"].append(time.perf_counter() - t)
    return {name: {k: statistics.median(v) for k, v in figs.items()}
            for name, figs in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--no-buildah", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/build.py needs root", file=sys.stderr)
        return 1
    context = tempfile.mkdtemp(prefix="pb-ctx-", dir="/var/tmp")
    engines = []
    try:
        make_context(context, args.files, args.mb)
        pallet = Pallet().start()
        engines.append(pallet)
        pallet.docker("load", "-i", IMAGE_TAR)
        builders = {"pallet": lambda c, nc: docker_build(pallet, c, nc)}
        if Docker.available():
            docker = Docker().start()
            engines.append(docker)
            docker.docker("load", "-i", IMAGE_TAR)
            builders["dockerd"] = lambda c, nc: docker_build(docker, c, nc)
        if not args.no_buildah and Buildah.available():
            bh = Buildah().start()
            engines.append(bh)
            builders["buildah"] = lambda c, nc: bh.build(c, nc)
        res = measure(builders, context, args.runs)
        print(f"context: {args.files} files, {args.mb} MB; {args.runs} runs each, median "
              "seconds")
        names = list(res)
        print(f"{'figure':<10}" + "".join(f"{n:>10}" for n in names) +
              ("   pallet/dockerd  target" if "dockerd" in res else ""))
        for fig, target in TARGETS.items():
            line = f"{fig:<10}" + "".join(f"{res[n][fig]:>10.3f}" for n in names)
            if "dockerd" in res:
                ratio = res["pallet"][fig] / res["dockerd"][fig]
                line += f"   {ratio:>14.2f}  <= {target} {'ok' if ratio <= target else 'MISSED'}"
            print(line)
    finally:
        for e in reversed(engines):
            e.stop()
        shutil.rmtree(context, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
