"""Differential tests of pallet-runc against Debian's runc 1.1.5.

A scenario is a function of one :class:`Side` (a runtime binary with its own
state root) that drives the runtime through its command line and returns
what it observed.  :func:`compare` runs the scenario under runc, then under
pallet-runc, on the same bundle path rebuilt from scratch for each, with the
same container id; after each it records what was left behind (cgroups named
after the container, mounts under the test's directory, state directories)
and cleans up, whatever the scenario did.  The test asserts that both sides
observed the same thing.

Outputs are compared as bytes; stderr only after its timestamps are
replaced (``time="T"``), since they are the one part of runc's log lines
that cannot agree.

The pallet-runc under test is the one beside the test's interpreter, or the
one ``PALLET_RUNC`` names (an installed build, or an older one: the suite run
against the pallet-runc before a fix shows which tests that fix made pass).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

from rt_helpers import BUSYBOX, make_rootfs, reap_all

RUNC = shutil.which("runc") or "/usr/sbin/runc"
PALLET_RUNC = os.environ.get("PALLET_RUNC") or \
    os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "pallet-runc")

_TIME_TEXT = re.compile(r'time="[^"]*"')
_TIME_JSON = re.compile(r'"time":"[^"]*"')
_DEFAULT_SPEC: dict | None = None


def runc_available() -> bool:
    """Debian's runc 1.1 is installed (the reference of every differential test)."""
    if not os.path.exists(RUNC):
        return False
    out = subprocess.run([RUNC, "--version"], capture_output=True, text=True).stdout
    return out.startswith("runc version 1.1.")


def default_spec() -> dict:
    """The spec ``runc spec`` writes (asked of runc itself, once)."""
    global _DEFAULT_SPEC
    if _DEFAULT_SPEC is None:
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([RUNC, "spec", "-b", d], check=True)
            with open(os.path.join(d, "config.json")) as f:
                _DEFAULT_SPEC = json.load(f)
    return json.loads(json.dumps(_DEFAULT_SPEC))


def normalize_err(text: str) -> str:
    """stderr with runc's log timestamps replaced."""
    return _TIME_JSON.sub('"time":"T"', _TIME_TEXT.sub('time="T"', text))


class Result:
    """What one command did: exit status, stdout bytes, normalized stderr."""

    def __init__(self, rc: int, out: bytes, err: str):
        self.rc = rc
        self.out = out
        self.err = err

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, out={self.out!r}, err={self.err!r})"

    def view(self) -> tuple:
        return (self.rc, self.out, self.err)

    def scrubbed(self, *paths: str) -> tuple:
        """``view`` with the given paths (a side's scratch directory) replaced."""
        out, err = self.out, self.err
        for i, path in enumerate(paths):
            out = out.replace(path.encode(), f"<path{i}>".encode())
            err = err.replace(path, f"<path{i}>")
        return (self.rc, out, err)

    def masked(self) -> tuple:
        """``view`` with the pids in messages ("pid 123", "write 123") masked."""
        import re
        return (self.rc, self.out, re.sub(r"\b(pid|write) \d+", r"\1 N", self.err))

    def json(self):
        return json.loads(self.out)


class DiffBundle:
    """A bundle at a fixed path, rebuilt from scratch for each side.

    ``spec`` starts as runc's default spec (terminal off, root writable);
    ``setup`` functions run on the fresh rootfs before each side; ``files``
    are written into the bundle directory.
    """

    def __init__(self, path: str, applets):
        self.path = path
        self.applets = applets
        self.rootfs = os.path.join(path, "rootfs")
        self.spec = default_spec()
        self.spec["process"]["terminal"] = False
        self.spec["root"]["readonly"] = False
        self.setups: list = []

    def args(self, *argv: str, **process) -> "DiffBundle":
        self.spec["process"]["args"] = list(argv)
        self.spec["process"].update(process)
        return self

    def materialize(self) -> None:
        if os.path.isdir(self.path):
            subprocess.run(["umount", "-R", "-l", self.rootfs], capture_output=True)
            shutil.rmtree(self.path, ignore_errors=True)
        os.makedirs(self.path)
        make_rootfs(self.rootfs, self.applets)
        for setup in self.setups:
            setup(self.rootfs)
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.spec, f, indent=1)


class Side:
    """One runtime binary on its own state root, run as a user runs it."""

    def __init__(self, name: str, binary: str, top: str, cid: str, bundle: DiffBundle):
        self.name = name
        # both run as "runc" (runc names itself by argv[0] in a few messages):
        # runc through argv[0], pallet-runc (a script) through a link of that name
        if name == "pallet":
            link_dir = os.path.join(top, "bin")
            os.makedirs(link_dir, exist_ok=True)
            link = os.path.join(link_dir, "runc")
            if not os.path.lexists(link):
                os.symlink(binary, link)
            binary = link
        self.binary = binary
        self.top = top
        self.root = os.path.join(top, f"root-{name}")
        self.id = cid
        self.bundle = bundle
        self.scratch = os.path.join(top, f"scratch-{name}")
        os.makedirs(self.scratch, exist_ok=True)
        self._n = 0
        self.popened: list[subprocess.Popen] = []

    def _files(self):
        self._n += 1
        base = os.path.join(self.scratch, str(self._n))
        return base + ".out", base + ".err"

    def argv(self, *args: str, globals_: tuple = ()) -> list[str]:
        return ["runc", "--root", self.root, *globals_, *args]

    def __call__(self, *args: str, input: bytes | str | None = None, timeout: float = 30,
                 cwd: str | None = None, env: dict | None = None, globals_: tuple = (),
                 stdin=None, pass_fds=()) -> Result:
        """Run one command; stdio are files (a container started by create
        keeps them open, as a pipe would make us wait for it)."""
        out_path, err_path = self._files()
        if input is not None:
            in_path = out_path + ".in"
            with open(in_path, "wb") as f:
                f.write(input.encode() if isinstance(input, str) else input)
            stdin = open(in_path, "rb")
        elif stdin is None:
            stdin = subprocess.DEVNULL
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                done = subprocess.run(self.argv(*args, globals_=globals_), stdin=stdin,
                                      executable=self.binary,
                                      stdout=out, stderr=err, timeout=timeout,
                                      cwd=cwd or self.bundle.path, env=env, pass_fds=pass_fds)
        finally:
            if input is not None:
                stdin.close()
        with open(out_path, "rb") as f:
            stdout = f.read()
        with open(err_path, "rb") as f:
            stderr = f.read().decode(errors="replace")
        return Result(done.returncode, stdout, normalize_err(stderr))

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("cwd", self.bundle.path)
        proc = subprocess.Popen(self.argv(*args), executable=self.binary, **kw)
        self.popened.append(proc)
        return proc

    def state(self) -> dict | None:
        done = self("state", self.id)
        return done.json() if done.rc == 0 else None

    def pid(self) -> int:
        st = self.state()
        assert st is not None, f"{self.name}: no state for {self.id}"
        return st["pid"]

    def norm_state(self) -> dict | None:
        """``state`` with the values that must differ (pid, time) blanked."""
        st = self.state()
        if st is None:
            return None
        st["pid"] = "PID" if st.get("pid") else 0
        st["created"] = "T"
        return st

    def wait_status(self, status: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state()
            now = st["status"] if st else None
            if now == status or time.monotonic() > deadline:
                return now
            reap_all()
            time.sleep(0.02)

    def exists(self) -> bool:
        return self.state() is not None


# --- what a side leaves behind ------------------------------------------------------------

def cgroup_mounts() -> dict[str, str]:
    """hierarchy name (controllers, ``name=x``, or ``unified``) -> mount point."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = right.split()
            if len(fields) < 3 or fields[0] not in ("cgroup", "cgroup2"):
                continue
            point = left.split()[4]
            if fields[0] == "cgroup2":
                out.setdefault("unified", point)
                continue
            names = [o for o in fields[2].split(",") if o not in ("rw", "ro", "relatime")
                     and not o.startswith("clone_children")]
            out.setdefault(",".join(sorted(names)), point)
    return out


def own_cgroups() -> dict[str, str]:
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _id, names, path = line.rstrip("\n").split(":", 2)
            out["unified" if not names else ",".join(sorted(names.split(",")))] = path
    return out


def cgroup_dirs(side, rel: str | None = None) -> dict[str, str]:
    """hierarchy -> the container's cgroup directory (``rel``: below the
    caller's own cgroup, the container's id by default; absolute: from the
    hierarchy's root)."""
    own = own_cgroups()
    rel = rel or side.id
    out = {}
    for name, point in cgroup_mounts().items():
        base = own.get(name, "/") if not rel.startswith("/") else "/"
        out[name] = os.path.normpath(point + "/" + os.path.join(base, rel).lstrip("/"))
    return out


def read_or_why(path: str) -> str:
    """A small file's text, stripped, or ``<why it cannot be read>``."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        return f"<{e.strerror}>"


def cgroup_candidates(cid: str, extra=()) -> list[str]:
    """Directories a runtime may have made for container ``cid``."""
    own = own_cgroups()
    paths = []
    for name, point in cgroup_mounts().items():
        rels = {"/" + cid, os.path.join(own.get(name, "/"), cid)}
        rels.update(extra)
        for rel in sorted(rels):
            paths.append(os.path.normpath(point + "/" + rel.lstrip("/")))
    return paths


def leftovers(side: Side, cgroup_extra=()) -> dict:
    cgs = []
    for path in cgroup_candidates(side.id, cgroup_extra):
        if os.path.isdir(path):
            cgs.append(path)
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if point.startswith(side.top):
                mounts.append(point[len(side.top):])
    states = sorted(os.listdir(side.root)) if os.path.isdir(side.root) else []
    return {"cgroups": sorted(cgs), "mounts": sorted(mounts), "state": states}


def cleanup(side: Side, cgroup_extra=()) -> None:
    for proc in side.popened:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    if os.path.isdir(side.root):
        for cid in os.listdir(side.root):
            subprocess.run([side.binary, "--root", side.root, "delete", "--force", cid],
                           capture_output=True, timeout=30)
    for path in sorted(cgroup_candidates(side.id, cgroup_extra), key=len, reverse=True):
        _remove_cgroup(path)
    subprocess.run(["umount", "-R", "-l", side.bundle.rootfs], capture_output=True)
    reap_all()


def _remove_cgroup(path: str) -> None:
    if not os.path.isdir(path):
        return
    for sub, _dirs, _files in sorted(os.walk(path), key=lambda w: len(w[0]), reverse=True):
        for _ in range(200):
            try:
                with open(os.path.join(sub, "cgroup.procs")) as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for name in ("freezer.state", "cgroup.freeze"):
                try:
                    with open(os.path.join(sub, name), "w") as f:
                        f.write("THAWED" if name == "freezer.state" else "0")
                except OSError:
                    pass
            try:
                os.rmdir(sub)
                break
            except FileNotFoundError:
                break
            except OSError:
                reap_all()
                time.sleep(0.01)


def compare(tmp_path, bundle: DiffBundle, scenario, cgroup_extra=(), cid: str | None = None):
    """Run ``scenario`` under runc, then pallet-runc; (runc's, pallet's) observations,
    each ``{"seen": <scenario's result>, "left": <leftovers>}``."""
    cid = cid or "d" + uuid.uuid4().hex[:10]
    top = str(tmp_path)
    results = []
    spec = json.dumps(bundle.spec)  # a scenario may change it: each side starts from this one
    for name, binary in (("runc", RUNC), ("pallet", PALLET_RUNC)):
        bundle.spec = json.loads(spec)
        bundle.materialize()
        side = Side(name, binary, top, cid, bundle)
        try:
            seen = scenario(side)
        except BaseException:
            cleanup(side, cgroup_extra)
            raise
        try:
            left = leftovers(side, cgroup_extra)
        finally:
            cleanup(side, cgroup_extra)
        results.append({"seen": seen, "left": left})
    return results[0], results[1]


def differences(runc, pallet, path: str = "") -> list[str]:
    """Where two observations differ, one line each (runc's value, then pallet's)."""
    if isinstance(runc, dict) and isinstance(pallet, dict):
        out = []
        for key in list(runc) + [k for k in pallet if k not in runc]:
            out += differences(runc.get(key, "<missing>"), pallet.get(key, "<missing>"),
                               f"{path}.{key}" if path else str(key))
        return out
    if isinstance(runc, (list, tuple)) and isinstance(pallet, (list, tuple)) and \
            len(runc) == len(pallet):
        out = []
        for i, (a, b) in enumerate(zip(runc, pallet)):
            out += differences(a, b, f"{path}[{i}]")
        return out
    return [] if runc == pallet else [f"{path}:\n    runc:   {runc!r}\n    pallet: {pallet!r}"]


def same(tmp_path, bundle: DiffBundle, scenario, **kw):
    """Assert that runc and pallet-runc observe the same; returns runc's observation."""
    runc, pallet = compare(tmp_path, bundle, scenario, **kw)
    diff = differences(runc, pallet)
    if diff and os.environ.get("DIFF_VERBOSE"):
        diff.append(f"runc saw: {runc!r}")
    assert not diff, "pallet-runc differs from runc:\n" + "\n".join(diff)
    return runc


__all__ = ["BUSYBOX", "DiffBundle", "Result", "Side", "compare", "same", "default_spec",
           "runc_available", "RUNC", "PALLET_RUNC"]
