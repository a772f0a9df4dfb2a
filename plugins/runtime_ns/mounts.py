"""The container's filesystem: rootfs, OCI mounts, devices, pivot_root.

Runs in the container process, inside its new mount namespace, in the order
runc's ``prepareRootfs`` uses (libcontainer/rootfs_linux.go):

1. make ``/`` a slave (or ``linux.rootfsPropagation``) so that nothing done
   here propagates back to the host, and the parent mount of the rootfs
   private, which pivot_root(2) requires;
2. bind the rootfs onto itself so that it is a mount point;
3. mount ``config.mounts`` in order, each destination resolved inside the
   rootfs (symlinks are followed but never out of it);
4. create the default devices and ``linux.devices`` in ``/dev``;
5. pivot_root into it and detach the old root.

Read-only tmpfs mounts and a read-only /dev are mounted writable and made
read-only only once everything under them is in place (``finalize``, after
pivot_root), as runc does; a tmpfs over an existing directory keeps that
directory's mode.  A procfs or sysfs destination that is not a plain
directory (a symlink) is refused.  In a user namespace the bind mount
sources are opened beforehand by the runtime, from the container's fresh
mount namespace with the host's rights (runc's mount sources), so that a
source the container's root cannot reach still mounts.  Masked and
read-only paths and the read-only root come after, from ``finish_rootfs``.  Everything used here is imported at module level because
the same process keeps running after pivot_root, where the host's Python
library is gone.
"""
from __future__ import annotations

import os
import stat

from pallet.plugins.runtime_ns import linux
from pallet.linux.cgroupfs import membership
from pallet.linux.syscalls import MOUNT_FLAGS, PROPAGATION, parse_options  # noqa: F401

from pallet.plugins.runtime_ns.linux import (  # noqa: F401
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SLAVE,
    mount,
    rmount)

# mount(8) options, shared with the shim and the image store
_FLAGS, _PROPAGATION = MOUNT_FLAGS, PROPAGATION
# statvfs f_flag bits -> mount flags, to keep a mount's flags on a bind remount
_ST_TO_MS = ((1, MS_RDONLY), (2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC),
             (1024, linux.MS_NOATIME), (2048, linux.MS_NODIRATIME),
             (4096, linux.MS_RELATIME))

#: (path, type, major, minor): runc's AllowedDevices that it creates in /dev
DEFAULT_DEVICES = (
    ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9), ("/dev/tty", "c", 5, 0),
)
DEFAULT_LINKS = (
    ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
)


class MountError(Exception):
    """A step of the rootfs set-up failed; the message is sent to the parent as is."""


def secure_join(root: str, unsafe: str) -> str:
    """``root``/``unsafe`` with symlinks resolved as if ``root`` were ``/``.

    Like filepath-securejoin's SecureJoin (used by runc for mount
    destinations, CVE-2017-1002101 style escapes): a symlink, absolute or
    made of ``..``, never leads out of ``root``.  Missing components are kept
    as they are.
    """
    pending = [c for c in unsafe.split("/") if c]
    pending.reverse()
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root + "/" + "/".join(done + [part])
        try:
            st = os.lstat(candidate)
        except OSError:
            done.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        links += 1
        if links > 255:
            raise MountError(f"secure join {unsafe}: too many levels of symbolic links")
        target = os.readlink(candidate)
        if target.startswith("/"):
            done = []
        more = [c for c in target.split("/") if c]
        more.reverse()
        pending.extend(more)
    return root.rstrip("/") + "/" + "/".join(done)


def _clean(path: str) -> str:
    """An absolute path cleaned as Go's filepath.Clean cleans it (one leading slash)."""
    path = os.path.normpath("/" + path)
    return "/" + path.lstrip("/")


def strip_root(root: str, path: str) -> str:
    """``path`` inside the container: a destination spelled as a path under
    the rootfs (``<rootfs>/mnt``) loses that prefix (runc's stripRoot, which
    the actual mount goes through; the mount point is still made at
    ``root``/``path`` joined whole, as runc makes it)."""
    root, path = _clean(root), _clean(path)
    if path == root:
        return "/"
    if root != "/" and path.startswith(root + "/"):
        return _clean(path[len(root):])
    return path


def _make_target(path: str, is_dir: bool) -> None:
    """Create a mount point (a directory or an empty file) if it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pass
    else:
        if is_dir and not stat.S_ISDIR(st.st_mode):
            raise MountError(f"mount destination {path} is not a directory")
        return
    if is_dir:
        os.makedirs(path, 0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o755))


def _statvfs_flags(path: str) -> int:
    flags = 0
    f_flag = os.statvfs(path).f_flag
    for st_bit, ms_bit in _ST_TO_MS:
        if f_flag & st_bit:
            flags |= ms_bit
    return flags


def remount_readonly(path: str, extra: int = 0) -> None:
    """Make the bind mount at ``path`` read-only, keeping its other flags."""
    flags = _statvfs_flags(path) | extra
    mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """(mount point, fs type, root within fs, super options) of /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f.read().decode(errors="replace").splitlines():
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            point = fields[4].replace("\\040", " ")
            out.append((point, rfields[0], fields[3], rfields[2]))
    return out


def _make_parent_private(rootfs: str, info) -> None:
    """pivot_root(2) fails (EINVAL) if the parent mount of the new root is shared."""
    best = "/"
    for point, *_ in info:
        if (rootfs == point or rootfs.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best = point
    mount(None, best, None, MS_PRIVATE)


class _Pinned:
    """A mount target opened (O_PATH, no symlink followed) and checked to be
    inside the rootfs; mounting on ``/proc/self/fd/N`` then hits exactly that
    directory, even if the container's files are swapped for a symlink in
    between (CVE-2021-30465: runc mounts through the fd for the same reason).
    """

    def __init__(self, rootfs: str, path: str):
        self.rootfs = rootfs.rstrip("/")
        self.path = path
        self.fd = -1

    def __enter__(self) -> str:
        try:
            self.fd = os.open(self.path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise MountError(f"open mount destination {self.path}: {os.strerror(e.errno).lower()}") from None
        link = f"/proc/self/fd/{self.fd}"
        if stat.S_ISLNK(os.fstat(self.fd).st_mode):
            self.__exit__()
            raise MountError(f"mount destination {self.path} became a symlink")
        real = os.readlink(link)
        if real != self.rootfs and not real.startswith(self.rootfs + "/"):
            self.__exit__()
            raise MountError(f"mount destination {self.path} resolves to {real}, outside the rootfs")
        return link

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class RootfsBuilder:
    """Builds the container's filesystem from an OCI spec (see module doc)."""

    def __init__(self, spec: dict, bundle: str, rootfs: str, sources: dict | None = None):
        self.spec = spec
        self.bundle = bundle
        self.rootfs = rootfs
        self.linux = spec.get("linux") or {}
        #: bind source -> an O_PATH fd opened beforehand (user namespaces)
        self.sources = sources or {}
        #: (destination, flags) of the mounts to make read-only in ``finalize``
        self.later_ro: list[tuple[str, int, str]] = []

    # --- 1, 2 -------------------------------------------------------------------
    def prepare(self) -> None:
        propagation = self.linux.get("rootfsPropagation")
        flags = _PROPAGATION.get(propagation, MS_SLAVE | MS_REC) if propagation else MS_SLAVE | MS_REC
        mount(None, "/", None, flags)
        info = _mountinfo()
        _make_parent_private(self.rootfs, info)
        rmount(self.rootfs, self.rootfs, "bind", MS_BIND | MS_REC)
        self._mountinfo = info

    # --- 3 ---------------------------------------------------------------------------
    def mount_one(self, m: dict) -> None:
        """One entry of ``config.mounts`` (the caller goes through them in order)."""
        dest = m.get("destination") or ""
        if not dest.startswith("/"):
            raise MountError(f"mount destination {dest!r} is not absolute")
        fstype = m.get("type") or ""
        source = m.get("source") or ""
        options = m.get("options") or ()
        flags, propagation, data = parse_options(options)
        is_bind = bool(flags & MS_BIND) or fstype == "bind"
        # runc makes a missing mount point at the destination joined to the
        # rootfs whole, but mounts on it with the rootfs prefix stripped
        # (a destination given as <rootfs>/x is mounted on /x)
        inside = strip_root(self.rootfs, dest)
        if fstype in ("proc", "sysfs") and not is_bind:
            self._mount_pseudo(m, os.path.normpath(dest), inside, fstype, flags, data)
        elif is_bind:
            self._mount_bind(source, secure_join(self.rootfs, dest),
                             secure_join(self.rootfs, inside), flags)
        elif fstype == "cgroup":
            self._mount_cgroup(secure_join(self.rootfs, dest), flags, data)
        else:
            made = secure_join(self.rootfs, dest)
            target = secure_join(self.rootfs, inside) if inside != _clean(dest) else made
            delay_ro = fstype == "tmpfs" or os.path.normpath(dest) == "/dev"
            label = self.linux.get("mountLabel")
            if label and fstype != "mqueue":
                # runc labels these mounts, SELinux or not (the kernel refuses
                # the option without it)
                data = f'{data},context="{label}"' if data else f'context="{label}"'
            try:
                before = os.stat(made) if fstype == "tmpfs" else None
            except OSError:
                before = None
            _make_target(made, True)
            with _Pinned(self.rootfs, target) as at:
                rmount(source, target, fstype, flags & ~MS_RDONLY if delay_ro else flags,
                       data or None, procfd=at)
            if before is not None:
                # runc gives the tmpfs the mode of the directory it covers
                os.chmod(made, stat.S_IMODE(before.st_mode))
            if delay_ro and flags & MS_RDONLY:
                self.later_ro.append((inside, flags, data))
            if dest == "/dev" and fstype == "tmpfs":
                self.dev_is_tmpfs = True
        if propagation:
            target = secure_join(self.rootfs, inside)
            with _Pinned(self.rootfs, target) as at:
                rmount("", target, None, propagation, procfd=at)

    def _mount_pseudo(self, m: dict, dest: str, inside: str, fstype: str, flags: int,
                      data: str) -> None:
        """procfs and sysfs only on a plain directory: a symlink there is refused,
        not followed, even inside the rootfs (runc's check)."""
        root = self.rootfs.rstrip("/")
        # runc's test is a plain string prefix here
        checked = dest if dest.startswith(root) else root + dest
        try:
            st = os.lstat(checked)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise MountError(f'filesystem "{fstype}" must be mounted on ordinary directory')
        os.makedirs(checked, 0o755, exist_ok=True)
        target = root + inside
        with _Pinned(self.rootfs, target) as at:
            rmount(m.get("source") or fstype, target, fstype, flags, data or None, procfd=at)

    def _mount_bind(self, source: str, made: str, target: str, flags: int) -> None:
        if not os.path.isabs(source):
            source = os.path.join(self.bundle, source)
        held = self.sources.get(source)
        shown = source
        if held is not None:
            source = f"/proc/self/fd/{held}"
        try:
            src_is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as e:
            raise MountError(f"stat {shown}: {os.strerror(e.errno).lower()}") from None
        _make_target(made, src_is_dir)
        with _Pinned(self.rootfs, target) as at:
            rmount(source, target, "bind", MS_BIND | (flags & MS_REC), procfd=at)
        # flags other than bind/rec only take effect on a remount (mount(2)),
        # which replaces them all: keep those the source mount has
        extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        if extra:
            with _Pinned(self.rootfs, target) as at:
                keep = _statvfs_flags(at) & ~MS_RDONLY
                rmount("", target, None, MS_BIND | MS_REMOUNT | extra | keep, procfd=at)

    def finalize(self) -> None:
        """After pivot_root: the read-only tmpfs mounts and /dev made so (runc's
        finalizeRootfs)."""
        for dest, flags, data in self.later_ro:
            rmount("", dest, None, flags | MS_REMOUNT | MS_BIND | MS_RDONLY)

    def _mount_cgroup(self, target: str, flags: int, data: str) -> None:
        """``type: cgroup`` on cgroup v1: a tmpfs with each hierarchy bind-mounted.

        Like runc without a cgroup namespace, each hierarchy shows only the
        container's own cgroup (or, without ``cgroupsPath``, the caller's).
        """
        _make_target(target, True)
        ro = flags & MS_RDONLY
        base = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
        # runc leaves the tmpfs itself writable and binds only the v1
        # hierarchies, not the unified one of a hybrid host
        mount("tmpfs", target, "tmpfs", base, "mode=755")
        # the process has joined its cgroups already: its own paths are the
        # container's, with or without linux.cgroupsPath
        own = _own_cgroups()
        for point, fstype, _root, sopts in self._mountinfo:
            if fstype == "cgroup":
                key = ",".join(sorted(o for o in sopts.split(",")
                                      if o in _KNOWN_V1 or o.startswith("name=")))
            else:
                continue
            if not point.startswith("/sys/fs/cgroup/"):
                continue
            sub = own.get(key, "/")
            src = point + ("" if sub == "/" else sub)
            if not os.path.isdir(src):
                continue
            dst = os.path.join(target, os.path.basename(point))
            os.makedirs(dst, exist_ok=True)
            mount(src, dst, "bind", MS_BIND)
            mount(None, dst, None, MS_BIND | MS_REMOUNT | base | (MS_RDONLY if ro else 0))

    # --- 4 -------------------------------------------------------------------------
    dev_is_tmpfs = False

    def create_devices(self) -> None:
        devices = list(self.linux.get("devices") or ())
        if self.dev_is_tmpfs:
            have = {d.get("path") for d in devices}
            for path, kind, major, minor in DEFAULT_DEVICES:
                if path not in have:
                    devices.append({"path": path, "type": kind, "major": major,
                                    "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0})
        old = os.umask(0)
        try:
            for dev in devices:
                self._make_device(dev)
        finally:
            os.umask(old)
        if self.dev_is_tmpfs:
            for src, link in DEFAULT_LINKS:
                self._symlink(src, link)
            # whatever the spec put there (a listed /dev/ptmx device) gives way
            # to the link into the container's devpts (runc's setupPtmx)
            try:
                os.unlink(secure_join(self.rootfs, "/dev/ptmx"))
            except FileNotFoundError:
                pass
            self._symlink("pts/ptmx", "/dev/ptmx")
            if os.path.exists("/proc/kcore"):
                self._symlink("/proc/kcore", "/dev/core")

    def _symlink(self, src: str, link: str) -> None:
        try:
            os.symlink(src, secure_join(self.rootfs, link))
        except FileExistsError:
            pass

    def _make_device(self, dev: dict) -> None:
        path = secure_join(self.rootfs, dev["path"])
        kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        kind = kinds.get(dev.get("type", "c"))
        if kind is None:
            raise MountError(f"device {dev['path']}: unknown type {dev.get('type')!r}")
        mode = dev.get("fileMode")
        mode = 0o666 if mode is None else mode
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise MountError(f"device {dev['path']}: is a directory") from None
        try:
            os.mknod(path, kind | (mode & 0o7777), os.makedev(dev.get("major", 0), dev.get("minor", 0)))
        except PermissionError:
            # no CAP_MKNOD (user namespace): bind the host's node instead, as runc does
            _make_target(path, False)
            mount(dev["path"], path, "bind", MS_BIND)
            return
        os.chown(path, dev.get("uid") or 0, dev.get("gid") or 0)

    # --- 5 ---------------------------------------------------------------------------
    def _hide_host_pseudo_filesystems(self) -> None:
        prefix = self.rootfs.rstrip("/")
        for point, fstype, root, _sopts in _mountinfo():
            if root != "/" or fstype not in ("proc", "sysfs") or point.startswith(prefix):
                continue
            try:
                mount(None, point, None, MS_SLAVE | MS_REC)
            except FileNotFoundError:
                continue  # below a mount point already taken away
            try:
                linux.umount2(point, MNT_DETACH)
            except OSError as e:
                if e.errno not in (22, 1):  # EINVAL, EPERM: cover it instead
                    raise
                mount("tmpfs", point, "tmpfs", 0)

    def pivot(self, no_pivot: bool = False) -> None:
        if no_pivot:
            # MS_MOVE + chroot(2): for a rootfs on a ramdisk, where pivot_root fails.
            # The host's mounts stay in this mount namespace, below the chroot:
            # first take away every full procfs and sysfs of the host, which
            # would otherwise let the container mount its own (runc's msMoveRoot)
            self._hide_host_pseudo_filesystems()
            os.chdir(self.rootfs)
            mount(self.rootfs, "/", None, linux.MS_MOVE)
            os.chroot(".")
            os.chdir("/")
            return
        # pivot_root(".", ".") stacks the old root on top of the new one; it is
        # then detached from where we stand (pivot_root(2) NOTES, as in runc)
        old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.chdir(self.rootfs)
            linux.pivot_root(".", ".")
            os.fchdir(old_root)
        finally:
            os.close(old_root)
        # the old root must not propagate its unmount to the host
        mount(None, ".", None, MS_SLAVE | MS_REC)
        linux.umount2(".", MNT_DETACH)
        os.chdir("/")


# --- after pivot_root ------------------------------------------------------------------

def readonly_paths(paths) -> None:
    """Bind each path onto itself read-only (``linux.readonlyPaths``)."""
    for path in paths or ():
        try:
            mount(path, path, "bind", MS_BIND | MS_REC)
        except OSError as e:
            if e.errno == 2:  # missing: nothing to protect
                continue
            raise
        remount_readonly(path, MS_REC)


def masked_paths(paths) -> None:
    """Hide each path (``linux.maskedPaths``): /dev/null over a file, an empty
    read-only tmpfs over a directory, as runc's maskPath does."""
    for path in paths or ():
        try:
            mount("/dev/null", path, "bind", MS_BIND)
        except OSError as e:
            if e.errno == 2:
                continue
            if e.errno == 20:  # ENOTDIR: the path is a directory
                mount("tmpfs", path, "tmpfs", MS_RDONLY)
                continue
            raise


def readonly_root() -> None:
    """``root.readonly``: remount / read-only, keeping its other flags."""
    remount_readonly("/")


_KNOWN_V1 = ("memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio",
             "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc")


def _own_cgroups() -> dict[str, str]:
    """hierarchy key (sorted controllers, ``name=x``, or "" for v2) -> own path."""
    try:
        return {",".join(sorted(names.split(","))) if names else "": path
                for names, path in membership()}
    except OSError:
        return {}
