"""Helpers of the build tests (importable by name from tests/build)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile

from engines import wait_socket  # bench/

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _d in ("containerd", "api"):
    if os.path.join(TESTS, _d) not in sys.path:
        sys.path.append(os.path.join(TESTS, _d))

from cd_util import CONTAINERD, VENV_BIN, Daemon  # noqa: E402  (tests/containerd)
from ctr_helpers import wait_for  # noqa: E402,F401  (tests/api)


class Containerd(Daemon):
    """A containerd (real or pallet's) on its own short roots; stopped as the
    containerd tests stop theirs."""

    def __init__(self, kind: str, image_store: str = ""):
        base = tempfile.mkdtemp(prefix="pb-", dir="/tmp")
        super().__init__(base, os.path.join(base, "c.sock"), os.path.join(base, "root"),
                         os.path.join(base, "state"))
        self.kind = kind
        self.image_store = image_store  # pallet's: the image_store role, "" the default

    def start(self) -> "Containerd":
        if self.kind == "real":
            config = os.path.join(self.base, "config.toml")
            with open(config, "w") as f:
                f.write(f'''version = 2
root = "{self.root}"
state = "{self.state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.base}/opt"
''')
            argv = [CONTAINERD, "--config", config, "--log-level", "warn"]
        else:
            argv = [os.path.join(VENV_BIN, "pallet-containerd"), "--address", self.address,
                    "--root", self.root, "--state", self.state]
            if self.image_store:
                config = os.path.join(self.base, "pallet.toml")
                with open(config, "w") as f:
                    f.write(f'[roles]\nimage_store = "{self.image_store}"\n')
                argv += ["--config", config]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        wait_socket(self.address, self.proc, self.log)
        return self


def start_containerd(kind: str, image_store: str = "") -> Containerd:
    d = Containerd(kind, image_store)
    try:
        return d.start()
    except BaseException:
        d.stop()
        raise


def tar_entries(data: bytes) -> list[tuple]:
    """(name, type, mode, uid, gid, size, linkname, content) of each member, in order."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            content = tf.extractfile(m).read() if m.isreg() else None
            out.append((m.name.rstrip("/"), m.type, m.mode & 0o7777, m.uid, m.gid, m.size,
                        m.linkname, content))
    return out


def make_tar(entries) -> bytes:
    """A tar of ``(name, kind, data_or_target, mode, uid)`` entries (kind: f d l h)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data, mode, uid in entries:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, uid, 1_600_000_000
            if kind == "d":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                tf.addfile(ti)
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, data
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def tree(root: str) -> dict:
    """path -> (type, mode, uid, gid, content or link target) of everything under root."""
    import stat
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what = f.read()
            else:
                what = None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                        st.st_gid, what)
    return out


# --- builds against engines (bench/engines.py's Pallet and Docker) ---------------------

def write_context(root: str, files: dict) -> str:
    """Write ``files`` (path -> bytes | str | ("link", target) | ("dir",) |
    (bytes, mode)) under ``root``; returns root."""
    os.makedirs(root, exist_ok=True)
    for path, spec in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        mode = None
        if isinstance(spec, tuple) and spec and spec[0] == "link":
            os.symlink(spec[1], full)
            continue
        if isinstance(spec, tuple) and spec and spec[0] == "dir":
            os.makedirs(full, exist_ok=True)
            continue
        if isinstance(spec, tuple):
            spec, mode = spec
        with open(full, "wb") as f:
            f.write(spec.encode() if isinstance(spec, str) else spec)
        if mode is not None:
            os.chmod(full, mode)
    return root


def docker_build(engine, context: str, *args: str, env: dict | None = None,
                 input: bytes | None = None, timeout: float = 600):
    """``docker build`` (the classic builder) against ``engine``; the
    CompletedProcess (text)."""
    e = dict(engine.env, DOCKER_BUILDKIT="0", **(env or {}))
    from engines import DOCKER_CLI
    return subprocess.run([DOCKER_CLI, "build", *args, context], env=e, input=input,
                          capture_output=True, timeout=timeout)


def inspect_image(engine, ref: str) -> dict:
    import json
    return json.loads(engine.docker("image", "inspect", ref).stdout)[0]


def image_tree(engine, ref: str) -> dict:
    """The final filesystem of an image, from ``docker save``: path ->
    (type, mode, uid, gid, content or link target)."""
    import json
    data = engine.docker("save", ref).stdout
    out: dict = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as outer:
        manifest = json.loads(outer.extractfile("manifest.json").read())[0]
        for layer in manifest["Layers"]:
            blob = outer.extractfile(layer).read()
            if blob[:2] == b"\x1f\x8b":
                import gzip
                blob = gzip.decompress(blob)
            with tarfile.open(fileobj=io.BytesIO(blob)) as lt:
                for m in lt:
                    name = m.name.rstrip("/")
                    if name.startswith("./"):
                        name = name[2:]
                    base = os.path.basename(name)
                    parent = os.path.dirname(name)
                    if base == ".wh..wh..opq":
                        for k in [k for k in out if k.startswith(parent + "/")]:
                            del out[k]
                        continue
                    if base.startswith(".wh."):
                        gone = os.path.join(parent, base[4:])
                        for k in [k for k in out if k == gone or k.startswith(gone + "/")]:
                            del out[k]
                        continue
                    if m.isreg():
                        what = lt.extractfile(m).read()
                    elif m.issym() or m.islnk():
                        what = ("link" if m.issym() else "hard", m.linkname)
                    else:
                        what = None
                    if not m.isdir():
                        for k in [k for k in out if k.startswith(name + "/")]:
                            del out[k]
                    out[name] = (m.type, m.mode & 0o7777, m.uid, m.gid, what)
    return out


# --- the API without a client --------------------------------------------------------------

class UnixHTTPConnection:
    """http.client over a unix socket."""

    def __new__(cls, path: str, timeout: float = 60):
        import http.client
        import socket

        class Conn(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
        return Conn("localhost", timeout=timeout)


def api(engine, method: str, path: str, body=None, headers=None, timeout: float = 120):
    """``(status, body bytes)`` of one request to the engine's socket."""
    conn = UnixHTTPConnection(engine.sock, timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def context_tar(files: dict) -> bytes:
    """A context tar of ``files`` (name -> bytes or str)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            data = data.encode() if isinstance(data, str) else data
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def leftovers(engine) -> dict:
    """What builds may leave: build containers, active build snapshots, build
    leases, mounts and directories under the roots' builder dirs."""
    import json as _json

    from pallet.containerd.client import SyncContainerd

    out = {}
    ids = engine.docker("ps", "-aq", "--no-trunc").stdout.decode().split()
    build_ids = []
    for cid in ids:
        r = engine.docker("inspect", cid, check=False)
        if r.returncode != 0:
            continue  # removed meanwhile
        info = _json.loads(r.stdout)[0]
        if "org.pallet.build" in (info["Config"].get("Labels") or {}):
            build_ids.append(cid)
    out["containers"] = build_ids
    c = SyncContainerd(os.path.join(engine.exec_root, "containerd", "containerd.sock"), "moby")
    try:
        out["snapshots"] = [i.name for i in c.snapshots() if i.name.startswith("build-")]
        out["leases"] = [x.id for x in c.leases() if x.id.startswith("pallet-build-session-")]
    finally:
        c.close()
    base = os.path.join(engine.exec_root, "builder")
    with open("/proc/self/mountinfo") as f:
        out["mounts"] = [ln.split()[4] for ln in f if ln.split()[4].startswith(base + "/")]
    tmp = os.path.join(engine.data_root, "builder", "tmp")
    out["dirs"] = (os.listdir(base) if os.path.isdir(base) else []) + \
        (os.listdir(tmp) if os.path.isdir(tmp) else [])
    return {k: v for k, v in out.items() if v}


def engine_with_busybox(kind: str, busybox_tar: str, *args):
    """A started palletd or dockerd (``kind``) with busybox loaded."""
    import pytest
    from engines import Docker, Pallet

    if os.geteuid() != 0:
        pytest.skip("needs root")
    if kind == "docker" and not Docker.available():
        pytest.skip("dockerd 20.10 (Debian's docker.io) is not installed")
    e = Pallet(*args) if kind == "pallet" else Docker(*args)
    try:
        e.start()
        r = e.docker("load", "-i", busybox_tar)
        assert b"busybox:latest" in r.stdout, r
    except BaseException:
        e.stop()
        raise
    return e
