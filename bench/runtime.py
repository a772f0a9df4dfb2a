"""pallet's OCI runtime against Debian's runc, in the same run.

    .venv/bin/python bench/runtime.py [--runs 20] [--pallet-runc PATH | --python PATH] [--no-shim]

1. ``pallet-runc run`` against ``runc run`` on the same busybox bundle (the
   spec ``runc spec`` writes, running /bin/true), alternating the two, median
   of ``--runs`` (at least 20).  Target: <= 1.5x runc.
2. A container started inside pallet-shim with runtime_ns in-process (no
   new interpreter): the time from the shim's Create request to the end of
   its Start request (the user process running), median of ``--runs``.
   Target: <= 0.5x ``runc run``.

pallet-runc is measured as users get it: installed *non-editably* with its
bytecode (an editable install's import hook alone costs milliseconds, and
PYTHONDONTWRITEBYTECODE, set on the developers' machines, is dropped for
the children).  Unless ``--pallet-runc`` names one, a throw-away venv under
/tmp gets ``pip install`` of this checkout for the run, made with the
interpreter that runs the bench (the project's ``.venv``: the system's
python3 on Debian) or with ``--python``'s; the first line says which.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE_BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "tests", "shim"))
sys.path.insert(0, HERE_BENCH)
import engines  # noqa: E402,F401  (at exit, the host's KSM switch as it was: the zygote starts ksmd)


def child_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def make_bundle(path: str) -> str:
    """A busybox rootfs and the spec ``runc spec`` writes, running /bin/true."""
    from pallet.oci.spec import default_spec
    rootfs = os.path.join(path, "rootfs")
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for name in ("sh", "true"):
        os.symlink("busybox", os.path.join(rootfs, "bin", name))
    spec = default_spec()
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(spec, f)
    return path


def fresh_install(top: str, python: str) -> str:
    """A venv of ``python`` with this checkout installed non-editably; its pallet-runc."""
    venv = os.path.join(top, "venv")
    subprocess.run([python, "-m", "venv", venv], check=True)
    # with its dependencies: the first run loads the whole kernel (pluggy,
    # attrs) to fill the kernel cache that later runs start from
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", ROOT],
                   check=True, env=child_env(), cwd=top)
    return os.path.join(venv, "bin", "pallet-runc")


def _interpreter(script: str) -> str:
    """The interpreter a Python script runs on (its #! line), and its version."""
    with open(script, "rb") as f:
        first = f.readline()
    if not first.startswith(b"#!"):
        return "(not a Python script)"
    python = first[2:].split()[0].decode()
    version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True).stdout.strip()
    return f"{os.path.realpath(python)} {version}"


def run_once(binary: str, root: str, bundle: str) -> float:
    cid = "b" + uuid.uuid4().hex[:12]
    t = time.perf_counter()
    done = subprocess.run([binary, "--root", root, "run", "--bundle", bundle, cid],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=child_env(), cwd=bundle)
    elapsed = (time.perf_counter() - t) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{binary} run failed ({done.returncode}): {done.stderr.decode().strip()}")
    return elapsed


def bench_cli(pallet_runc: str, runc: str, bundle: str, top: str, runs: int):
    samples = {"pallet": [], "runc": []}
    for i in range(runs + 3):
        p = run_once(pallet_runc, os.path.join(top, "root-pallet"), bundle)
        r = run_once(runc, os.path.join(top, "root-runc"), bundle)
        if i >= 3:  # warm-up: page cache, pyc files
            samples["pallet"].append(p)
            samples["runc"].append(r)
    return statistics.median(samples["pallet"]), statistics.median(samples["runc"])


def bench_inprocess(top: str, bundle: str, runs: int) -> float:
    """NsRuntime.create + start called in this (already loaded) process: the
    runtime's own share of the shim's figure."""
    from pallet.plugins.runtime_ns.linux import set_child_subreaper
    from pallet.plugins.runtime_ns.runtime import NsRuntime
    set_child_subreaper()
    rt = NsRuntime(os.path.join(top, "root-inproc"))
    samples = []
    for i in range(runs + 3):
        cid = "i" + uuid.uuid4().hex[:12]
        t = time.perf_counter()
        pid = rt.create(cid, bundle)
        rt.start(cid)
        elapsed = (time.perf_counter() - t) * 1000
        os.waitpid(pid, 0)
        rt.delete(cid)
        if i >= 3:
            samples.append(elapsed)
    return statistics.median(samples)


def bench_shim(top: str, runs: int) -> float:
    """Create+Start through a real pallet-shim (runtime_ns in-process)."""
    import secrets

    from pallet.core.paths import Paths
    from pallet.proto.containerd.task.v2 import shim_pb2 as pb
    from pallet.proto.containerd.types import mount_pb2
    from pallet.ttrpc import protocol as ttrpc
    from pallet.shim import launch
    from pallet.plugins.runtime_ns.linux import set_child_subreaper
    from shimtest_util import EventSink, make_busybox_rootfs, runc_like_spec, umount_below

    set_child_subreaper()
    task = "containerd.task.v2.Task"
    paths = Paths(os.path.join(top, "d"), os.path.join(top, "r"))
    ns = "b" + secrets.token_hex(3)
    address = os.path.join(top, "c.sock")
    sink = EventSink(address + ".ttrpc")
    rootfs_src = os.path.join(top, "busybox")
    make_busybox_rootfs(rootfs_src)
    samples = []
    try:
        for i in range(runs + 3):
            cid = "s" + secrets.token_hex(6)
            bundle = paths.bundle_dir(ns, cid)
            os.makedirs(os.path.join(bundle, "rootfs"))
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(runc_like_spec(["/bin/true"], readonly=True), f)
            addr = launch.start_shim(ns, cid, bundle, address, paths)
            client = ttrpc.Client(addr)
            try:
                rootfs = [mount_pb2.Mount(type="bind", source=rootfs_src, options=["rbind", "ro"])]
                t = time.perf_counter()
                client.call(task, "Create", pb.CreateTaskRequest(id=cid, bundle=bundle,
                                                                 rootfs=rootfs),
                            pb.CreateTaskResponse, timeout=30)
                client.call(task, "Start", pb.StartRequest(id=cid), pb.StartResponse, timeout=30)
                elapsed = (time.perf_counter() - t) * 1000
                if i >= 3:
                    samples.append(elapsed)
                client.call(task, "Wait", pb.WaitRequest(id=cid), pb.WaitResponse, timeout=30)
                client.call(task, "Delete", pb.DeleteRequest(id=cid), pb.DeleteResponse,
                            timeout=30)
                client.call(task, "Shutdown", pb.ShutdownRequest(id=cid), timeout=30)
            finally:
                client.close()
    finally:
        launch.stop_zygote(paths)
        sink.close()
        umount_below(top)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--pallet-runc", help="pallet-runc to measure (default: a fresh non-editable "
                                          "install of this checkout)")
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter of the fresh install (default: this one)")
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    ap.add_argument("--no-shim", action="store_true", help="skip the in-shim figure")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/runtime.py needs root (namespaces, mounts)", file=sys.stderr)
        return 2
    if not os.path.exists(args.runc):
        print(f"runc not found at {args.runc} (apt-get install runc)", file=sys.stderr)
        return 2
    runs = max(20, args.runs)
    top = tempfile.mkdtemp(prefix="pl-bench-")
    sys.path.insert(0, HERE_BENCH)
    from engines import cgroup_parents, remove_new_cgroup_parents
    cgroups_before = cgroup_parents()
    try:
        bundle = make_bundle(os.path.join(top, "bundle"))
        pallet_runc = args.pallet_runc or fresh_install(top, args.python)
        print(f"runtime: pallet-runc on {_interpreter(pallet_runc)}")
        p, r = bench_cli(pallet_runc, args.runc, bundle, top, runs)
        print(f"runtime: pallet-runc run {p:7.1f} ms   runc run {r:7.1f} ms   "
              f"ratio {p / r:4.2f}  (target <= 1.50, median of {runs})")
        if not args.no_shim:
            n = bench_inprocess(top, bundle, runs)
            print(f"runtime: runtime_ns in-process create->running {n:7.1f} ms   "
                  f"ratio {n / r:4.2f} of runc run (no shim: the runtime's share)")
            s = bench_shim(top, runs)
            print(f"runtime: shim create->running {s:7.1f} ms   runc run {r:7.1f} ms   "
                  f"ratio {s / r:4.2f}  (target <= 0.50, median of {runs})")
    finally:
        remove_new_cgroup_parents(cgroups_before)
        subprocess.run(["umount", "-R", "-l", top], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
