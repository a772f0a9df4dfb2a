"""``PUT /containers/{id}/archive`` (``docker cp`` into a container): a tar
unpacked into a directory inside the container's root.

Each entry's parent directory is resolved inside the root (openat2
``RESOLVE_IN_ROOT``) and the entry is made with ``*at`` calls on that
directory's fd, never following a symlink at its last component: an archive,
or a container racing with it, cannot make palletd write outside.
"""
from __future__ import annotations

import os
import stat
import tarfile

from pallet.core import errors
from pallet.engine import rootfs


def _member_name(name: str) -> str | None:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise errors.InvalidArgument(f"invalid archive entry {name!r}: it leaves the "
                                     "extraction directory")
    return "/".join(parts) or None


def extract(root_fd: int, dest: str, tar_path: str, *, no_overwrite_dir: bool,
            copy_uid_gid: bool) -> None:
    """Unpack the tar at ``tar_path`` into ``dest`` (a directory) inside the root."""
    dest = rootfs.clean(dest)
    dirs_meta: list = []
    try:
        tf = tarfile.open(tar_path, mode="r:*")
    except (tarfile.TarError, OSError) as e:
        raise errors.InvalidArgument(f"invalid tar archive: {e}") from None
    with tf:
        try:
            for m in tf:
                name = _member_name(m.name)
                if name is None:
                    continue
                _extract_one(root_fd, dest, name, m, tf, no_overwrite_dir, copy_uid_gid,
                             dirs_meta)
        except tarfile.TarError as e:
            raise errors.InvalidArgument(f"invalid tar archive: {e}") from None
    # directories last, deepest first, so that their times stay as archived
    for parent_path, base, m, uid, gid in sorted(dirs_meta, key=lambda x: -len(x[0])):
        try:
            pfd = rootfs.resolve(root_fd, parent_path)
        except OSError:
            continue
        try:
            _chmod_dir(pfd, base, m.mode)
            os.utime(base, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
        except OSError:
            pass
        finally:
            os.close(pfd)


def _chmod_dir(pfd: int, base: str, mode: int) -> None:
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        os.fchmod(fd, mode & 0o7777)
    finally:
        os.close(fd)


def _remove_existing(pfd: int, base: str, is_dir_entry: bool, no_overwrite_dir: bool,
                     name: str) -> bool:
    """Make room for a new entry; True if an existing directory is to be kept."""
    try:
        st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if is_dir_entry:
            return True
        if no_overwrite_dir:
            raise errors.InvalidArgument(f"cannot overwrite directory \"{name}\" with "
                                         f"non-directory")
        _rmtree_at(pfd, base)
        return False
    if is_dir_entry and no_overwrite_dir:
        raise errors.InvalidArgument(f"cannot overwrite non-directory \"{name}\" with "
                                     "directory")
    os.unlink(base, dir_fd=pfd)
    return False


def _rmtree_at(pfd: int, base: str) -> None:
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                _rmtree_at(fd, entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(base, dir_fd=pfd)


def _extract_one(root_fd, dest, name, m, tf, no_overwrite_dir, copy_uid_gid, dirs_meta):
    parent_rel, _, base = name.rpartition("/")
    parent_path = rootfs.clean(f"{dest}/{parent_rel}")
    pfd = rootfs.resolve(root_fd, parent_path, create_dirs=True)
    uid, gid = (m.uid, m.gid) if copy_uid_gid else (0, 0)
    try:
        keep = _remove_existing(pfd, base, m.isdir(), no_overwrite_dir, name)
        if m.isdir():
            if not keep:
                os.mkdir(base, 0o700, dir_fd=pfd)
            os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
            dirs_meta.append((rootfs.clean(f"{parent_path}/"), base, m, uid, gid))
        elif m.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o600, dir_fd=pfd)
            with os.fdopen(fd, "wb") as out:
                src = tf.extractfile(m)
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                os.fchown(out.fileno(), uid, gid)
                os.fchmod(out.fileno(), m.mode & 0o7777)
                out.flush()
                os.utime(out.fileno(), (m.mtime, m.mtime))
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=pfd)
            os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
        elif m.islnk():
            target = _member_name(m.linkname)
            if target is None:
                raise errors.InvalidArgument(f"invalid hard link {m.name} -> {m.linkname}")
            t_parent, _, t_base = target.rpartition("/")
            tfd = rootfs.resolve(root_fd, rootfs.clean(f"{dest}/{t_parent}"))
            try:
                os.link(t_base, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(tfd)
        elif m.ischr() or m.isblk() or m.isfifo():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
            os.mknod(base, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor)
                     if not m.isfifo() else 0, dir_fd=pfd)
            os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
    except OSError as e:
        raise errors.InvalidArgument(f"extract {name}: {(e.strerror or str(e)).lower()}") \
            from None
    finally:
        os.close(pfd)


