"""``docker cp`` out of a container (``/containers/{id}/archive``: HEAD stat,
GET a tar) and ``docker export``; the way in is ``archive_put``, ``docker
diff`` is ``changes``.

Every path the client names is resolved inside the container's root with
:func:`rootfs.resolve` (openat2 ``RESOLVE_IN_ROOT``), and every file is then
reached through directory file descriptors, never through a path the
container could have changed into a symlink meanwhile: a container cannot
make palletd read or write a host file.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import stat
import tarfile
import time

from pallet.core import errors
from pallet.engine import rootfs


class Forbidden(errors.PalletError):
    """The Engine API's 403 for writes to a read-only rootfs or volume."""

    http_status = 403


# Go's os.FileMode bits (what docker's X-Docker-Container-Path-Stat carries)
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE = 1 << 31, 1 << 27, 1 << 26, 1 << 25
_GO_SOCKET, _GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = (1 << 24, 1 << 23, 1 << 22,
                                                             1 << 21, 1 << 20)
_SKIP_UNDER = ("/proc", "/sys", "/dev")


def go_mode(st_mode: int) -> int:
    mode = stat.S_IMODE(st_mode) & 0o777
    if stat.S_ISDIR(st_mode):
        mode |= _GO_DIR
    elif stat.S_ISLNK(st_mode):
        mode |= _GO_SYMLINK
    elif stat.S_ISBLK(st_mode):
        mode |= _GO_DEVICE
    elif stat.S_ISCHR(st_mode):
        mode |= _GO_DEVICE | _GO_CHARDEV
    elif stat.S_ISFIFO(st_mode):
        mode |= _GO_PIPE
    elif stat.S_ISSOCK(st_mode):
        mode |= _GO_SOCKET
    if st_mode & stat.S_ISUID:
        mode |= _GO_SETUID
    if st_mode & stat.S_ISGID:
        mode |= _GO_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= _GO_STICKY
    return mode


def _rfc3339(t: float) -> str:
    secs = int(t)
    frac = int(round((t - secs) * 1e9))
    if frac >= 1_000_000_000:
        secs, frac = secs + 1, frac - 1_000_000_000
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def _not_found(path: str, c) -> errors.NotFound:
    return errors.NotFound(f"Could not find the file {path} in container {c.name}")


def _wants_follow(path: str) -> bool:
    return path.endswith("/") or path.endswith("/.") or path in ("", ".", "/")


def _archive_name(path: str) -> str:
    """The first component of the archive's entries: the path's last element
    (``.`` for ``dir/.``), as dockerd names it."""
    if path.endswith("/."):
        return "."
    base = os.path.basename(os.path.normpath("/" + path))
    return base or "."


# --- the container's root --------------------------------------------------------

@contextlib.asynccontextmanager
async def container_root(svc, c, *, writable: bool, live: bool = True):
    """An ``O_PATH`` fd of the container's root: ``/proc/<pid>/root`` while it
    runs (``live``), else its snapshot mounted for the time of the block, with
    its volumes and binds."""
    pid = c.state.get("Pid") or 0
    if live and c.running and pid:
        try:
            fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise errors.Conflict(f"container {c.id[:12]}: cannot reach its filesystem: "
                                  f"{(e.strerror or str(e)).lower()}") from None
        try:
            yield fd
        finally:
            os.close(fd)
        return
    mounts = await svc.ctrd.snapshot_mounts(c.id, snapshotter=svc.snapshotter)
    base = os.path.join(svc.paths.exec_root, "mnt")
    os.makedirs(base, mode=0o700, exist_ok=True)
    view = rootfs.Mounted(base)

    def setup():
        view.mount_snapshot(mounts, writable=writable)
        for p in sorted(c.data.get("MountPoints") or (), key=lambda p: len(p["Destination"])):
            if p.get("Type") not in ("bind", "volume") or not p.get("Source") or not live:
                continue
            if not os.path.exists(p["Source"]):
                continue
            if not writable:
                probe = os.path.join(view.path, p["Destination"].lstrip("/"))
                if not os.path.isdir(probe):
                    continue
            view.bind(p["Source"], p["Destination"], readonly=not p.get("RW", True))
        return view.root_fd()
    try:
        fd = await asyncio.to_thread(setup)
    except OSError as e:
        await asyncio.to_thread(view.close)
        raise errors.PalletError(f"mount the filesystem of {c.id[:12]}: {e}") from None
    try:
        yield fd
    finally:
        os.close(fd)
        await asyncio.to_thread(view.close)


# --- stat --------------------------------------------------------------------------

def stat_path(root_fd: int, path: str) -> dict:
    """docker's ContainerPathStat of ``path`` inside the root."""
    fd = rootfs.resolve(root_fd, path, follow_last=_wants_follow(path))
    try:
        st = os.fstat(fd)  # an O_PATH|O_NOFOLLOW fd of a symlink stats the link
    finally:
        os.close(fd)
    link = ""
    if stat.S_ISLNK(st.st_mode):
        try:
            link = rootfs.scoped_path(root_fd, path)
        except OSError:
            link = ""
    name = os.path.basename(os.path.normpath("/" + path)) or "/"
    return {"name": name, "size": st.st_size, "mode": go_mode(st.st_mode),
            "mtime": _rfc3339(st.st_mtime), "linkTarget": link}


def _is_link_fd(fd: int) -> bool:
    return stat.S_ISLNK(os.fstat(fd).st_mode)


def stat_header(info: dict) -> str:
    return base64.b64encode(json.dumps(info).encode()).decode()


# --- writing a tar ------------------------------------------------------------------

class _TarWriter:
    """Writes a tree reached through directory fds (``os.fwalk``, symlinks never
    followed) as a tar stream."""

    def __init__(self, fileobj):
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
        self.links: dict[tuple[int, int], str] = {}

    def _info(self, name: str, st, linkname: str = "") -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.mtime = int(st.st_mtime)
        ti.uname = ti.gname = ""
        if stat.S_ISDIR(st.st_mode):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, linkname
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(st.st_mode):
            ti.type = tarfile.FIFOTYPE
        elif stat.S_ISREG(st.st_mode):
            ti.type = tarfile.REGTYPE
            ti.size = st.st_size
        else:
            return None  # sockets are left out, as tar does
        return ti

    def add_entry(self, dir_fd: int, name: str, arcname: str) -> bool:
        """One directory entry (not a directory's contents); False if left out."""
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        linkname = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else ""
        ti = self._info(arcname, st, linkname)
        if ti is None:
            return False
        if ti.type == tarfile.REGTYPE and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in self.links:
                ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, self.links[key], 0
                self.tar.addfile(ti)
                return True
            self.links[key] = arcname
        if ti.type == tarfile.REGTYPE:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as f:
                fst = os.fstat(f.fileno())
                if not stat.S_ISREG(fst.st_mode):
                    return False
                ti.size = fst.st_size
                self.tar.addfile(ti, _Exact(f, fst.st_size))
        else:
            self.tar.addfile(ti)
        return True

    def add_tree(self, top_fd: int, arcname: str, inside: str = "/") -> None:
        """A directory (by its fd) and everything below it."""
        st = os.stat(top_fd)
        ti = self._info(arcname, st)
        if ti is not None and arcname:
            self.tar.addfile(ti)
        top_dev = st.st_dev
        for dirpath, dirnames, filenames, dfd in os.fwalk(".", dir_fd=top_fd,
                                                          follow_symlinks=False):
            rel = os.path.normpath(dirpath)
            prefix = "" if rel == "." else rel + "/"
            keep = []
            for d in dirnames:
                arc = _join(arcname, prefix + d)
                inner = os.path.normpath(os.path.join(inside, prefix + d))
                try:
                    dst = os.stat(d, dir_fd=dfd, follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISLNK(dst.st_mode):
                    self.add_entry(dfd, d, arc)
                    continue
                self.tar.addfile(self._info(arc, dst))
                if dst.st_dev != top_dev and any(inner == p or inner.startswith(p + "/")
                                                 for p in _SKIP_UNDER):
                    continue  # the kernel's filesystems in a running container
                keep.append(d)
            dirnames[:] = keep
            for f in filenames:
                try:
                    self.add_entry(dfd, f, _join(arcname, prefix + f))
                except FileNotFoundError:
                    continue  # removed while we walked

    def close(self) -> None:
        self.tar.close()


class _Exact:
    """A file object that gives exactly ``size`` bytes (zeros if the file shrank)."""

    def __init__(self, f, size: int):
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data


def _join(arcname: str, rel: str) -> str:
    return f"{arcname}/{rel}" if arcname else rel


def write_path(root_fd: int, path: str, fileobj) -> None:
    """The tar ``docker cp CONTAINER:path`` receives."""
    fd = rootfs.resolve(root_fd, path, follow_last=_wants_follow(path))
    w = _TarWriter(fileobj)
    try:
        arcname = _archive_name(path)
        if _is_link_fd(fd):
            # the link itself: add it through its parent directory
            parent = rootfs.resolve(root_fd, os.path.dirname(rootfs.clean(path)) or "/")
            try:
                w.add_entry(parent, os.path.basename(rootfs.clean(path)), arcname)
            finally:
                os.close(parent)
        elif stat.S_ISDIR(os.fstat(fd).st_mode):
            w.add_tree(fd, arcname, rootfs.clean(path))
        else:
            parent = rootfs.resolve(root_fd, os.path.dirname(rootfs.resolved_path(root_fd, path))
                                    or "/")
            try:
                w.add_entry(parent, os.path.basename(rootfs.resolved_path(root_fd, path)),
                            arcname)
            finally:
                os.close(parent)
        w.close()
    finally:
        os.close(fd)


def write_export(root_fd: int, fileobj) -> None:
    """The whole filesystem, entries named without a leading ``./`` or ``/``."""
    w = _TarWriter(fileobj)
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=root_fd)
    try:
        w.add_tree(fd, "")
        w.close()
    finally:
        os.close(fd)


async def stream(producer, write) -> None:
    """Run ``producer(fileobj)`` in a thread and hand what it writes to the
    coroutine ``write(bytes)`` as it comes.  A client that goes away stops
    the producer (it gets EPIPE)."""
    loop = asyncio.get_running_loop()
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    wfile = os.fdopen(wfd, "wb", buffering=1 << 16)

    def run():
        try:
            producer(wfile)
        finally:
            try:
                wfile.close()
            except OSError:
                pass
    fut = loop.run_in_executor(None, run)
    reader = asyncio.StreamReader(limit=1 << 20)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(rfd, "rb", buffering=0))
    try:
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            await write(chunk)
    finally:
        transport.close()
        try:
            await fut
        except BrokenPipeError:
            pass
