"""The Docker Engine API of palletd against dockerd's, through the same docker
CLI in the same run, and the pallet CLI's start-up against the docker CLI's.

    .venv/bin/python bench/api.py [--runs 20] [--only NAME,...]

Figures (median wall time of one docker CLI command, ms): ``run --rm true``,
``run -d``, ``ps`` with 20 containers, ``inspect``, ``exec true``, ``logs``
of a 10 MB log, the two engines taking turns run by run; then ``pallet ps``
against ``docker ps`` on the same palletd (target: at most 2x).  PYTHONDONTWRITEBYTECODE is removed from the
environment and the client's modules are compiled first: users run with
.pyc caches.
"""
from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engines import DOCKER_CLI, VENV_BIN, Docker, Pallet, interleaved  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_TAR = os.path.join(ROOT, "build", "busybox.tar")
PS_CONTAINERS = 20
LOG_BYTES = 10 * 1024 * 1024


def _run(argv, env, check: bool = True) -> bytes:
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: "
                           f"{r.stderr.decode(errors='replace').strip()}")
    return r.stdout


def timed(argv, env, runs: int, warmup: int = 2, check: bool = True) -> float:
    """Median wall time (ms) of running ``argv``; output discarded."""
    for _ in range(warmup):
        _run(argv, env, check)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        _run(argv, env, check)
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


class Subject:
    """One engine with its containers for the figures."""

    def __init__(self, engine):
        self.engine = engine
        self.env = engine.env
        self.detached: list[str] = []

    def docker(self, *args, check=True):
        r = subprocess.run([DOCKER_CLI, *args], env=self.env, capture_output=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {r.stderr.decode(errors='replace')}")
        return r.stdout.decode().strip()

    def command(self, *args):
        """An action running the docker CLI with ``args`` against this engine."""
        argv = [DOCKER_CLI, *args]
        return lambda: _run(argv, self.env)

    def run_d(self):
        cid = self.docker("run", "-d", "--network", "none", "busybox", "sleep", "600")
        self.detached.append(cid)
        return cid


# Each figure prepares an engine and gives the action to time (None: the
# engine does not serve it), and how many runs it takes out of ``--runs``.

def prep_run_rm(s):
    return s.command("run", "--rm", "--network", "none", "busybox", "true")


def prep_run_d(s):
    return s.run_d


def _ensure_containers(s, n):
    while len(s.detached) < n:
        s.run_d()


def prep_ps(s):
    _ensure_containers(s, PS_CONTAINERS)
    return s.command("ps")


def prep_inspect(s):
    _ensure_containers(s, 1)
    return s.command("inspect", s.detached[0])


def prep_exec(s):
    _ensure_containers(s, 1)
    probe = subprocess.run([DOCKER_CLI, "exec", s.detached[0], "true"], env=s.env,
                           capture_output=True)
    if probe.returncode != 0:
        return None  # the engine does not serve exec (yet)
    return s.command("exec", s.detached[0], "true")


def prep_logs(s):
    cid = s.docker("run", "-d", "--network", "none", "busybox", "sh", "-c",
                   f"head -c {LOG_BYTES} /dev/zero | tr '\\0' 'x' | fold -w 99")
    s.docker("wait", cid)
    s.detached.append(cid)
    return s.command("logs", cid)


FIGURES = [
    ("run --rm true", prep_run_rm, 1.0),
    ("run -d", prep_run_d, 1.0),
    (f"ps ({PS_CONTAINERS} containers)", prep_ps, 2.0),
    ("inspect", prep_inspect, 2.0),
    ("exec true", prep_exec, 1.0),
    ("logs (10 MB)", prep_logs, 0.5),
]


def compile_client() -> None:
    for d in ("client", "core", "plugins"):
        compileall.compile_dir(os.path.join(ROOT, d), quiet=1)


def installed_cli() -> str | None:
    """``pallet`` as a user has it: the project's wheel in a venv of its own.

    The development venv's editable install puts a path finder in a .pth
    file that every interpreter start imports (pathlib, importlib.util,
    fnmatch: ~20 ms); an installed wheel has none of that."""
    venv = os.path.join(ROOT, "build", "bench-cli-venv")
    wheels = os.path.join(ROOT, "build", "bench-wheel")
    exe = os.path.join(venv, "bin", "pallet")
    import shutil
    shutil.rmtree(wheels, ignore_errors=True)
    shutil.rmtree(venv, ignore_errors=True)
    pip = os.path.join(VENV_BIN, "pip")
    steps = [[sys.executable, "-m", "venv", "--without-pip", venv],
             [pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT]]
    for step in steps:
        if subprocess.run(step, capture_output=True).returncode != 0:
            return None
    whl = [os.path.join(wheels, f) for f in os.listdir(wheels) if f.endswith(".whl")]
    r = subprocess.run([pip, "--python", os.path.join(venv, "bin", "python"), "install", "-q",
                        "--no-deps", *whl], capture_output=True)
    if r.returncode != 0 or not os.path.exists(exe):
        return None
    subprocess.run([os.path.join(venv, "bin", "python"), "-m", "compileall", "-q",
                    os.path.join(venv, "lib")], capture_output=True)
    return exe


def cli_startup(pallet_subject, runs):
    """``pallet ps`` (installed, and from the development venv) and ``docker ps``
    against the same palletd (20 containers)."""
    _ensure_containers(pallet_subject, PS_CONTAINERS)
    env = dict(pallet_subject.env)
    env["PALLET_HOST"] = env["DOCKER_HOST"]
    out = {}
    installed = installed_cli()
    theirs = timed([DOCKER_CLI, "ps"], env, runs * 2)
    if installed:
        out["pallet ps (installed)"] = timed([installed, "ps"], env, runs * 2)
    out["pallet ps (editable venv)"] = timed([os.path.join(VENV_BIN, "pallet"), "ps"], env,
                                             runs * 2)
    theirs = min(theirs, timed([DOCKER_CLI, "ps"], env, runs * 2))
    return out, theirs


def _fmt(v):
    return "n/a" if v is None else f"{v:8.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--only", help="comma-separated figure names (prefixes)")
    args = ap.parse_args(argv)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    compile_client()
    if not os.path.exists(IMAGE_TAR):
        os.makedirs(os.path.dirname(IMAGE_TAR), exist_ok=True)
        subprocess.run([sys.executable, "-m", "pallet.distribution.busybox_image", IMAGE_TAR],
                       check=True)
    subjects = {}
    engines = []
    try:
        p = Pallet()
        engines.append(p)
        p.start()
        subjects["pallet"] = Subject(p)
        if Docker.available():
            d = Docker()
            engines.append(d)
            d.start()
            subjects["docker"] = Subject(d)
        for s in subjects.values():
            s.docker("load", "-i", IMAGE_TAR)
        rows = []
        for name, prep, share in FIGURES:
            if args.only and not any(name.startswith(o) for o in args.only.split(",")):
                continue
            actions = {}
            for key, s in subjects.items():
                try:
                    action = prep(s)
                except RuntimeError as e:
                    print(f"{name} on {key}: {e}", file=sys.stderr)
                    action = None
                if action is not None:
                    actions[key] = action
            try:
                vals = interleaved(actions, max(3, int(args.runs * share)))
            except RuntimeError as e:
                print(f"{name}: {e}", file=sys.stderr)
                vals = {}
            rows.append((name, vals.get("pallet"), vals.get("docker")))
        print(f"\n{'docker CLI ->':24} {'palletd ms':>10} {'dockerd ms':>10} {'ratio':>7}")
        for name, pv, dv in rows:
            ratio = f"{pv / dv:7.2f}" if pv and dv else "    n/a"
            print(f"{name:24} {_fmt(pv):>10} {_fmt(dv):>10} {ratio}")
        if not args.only or "cli".startswith(args.only):
            mine, theirs = cli_startup(subjects["pallet"], args.runs)
            print(f"\n{'on the same palletd':26} {'pallet ms':>10} {'docker ps ms':>12} "
                  f"{'ratio':>7}")
            for label, ms in mine.items():
                print(f"{label:26} {ms:10.1f} {theirs:12.1f} {ms / theirs:7.2f}   "
                      "(target <= 2.00)")
    finally:
        for s in subjects.values():
            if s.detached:
                s.docker("rm", "-f", *s.detached, check=False)
        for e in engines:
            e.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
