"""COPY and ADD into a step's mounted workspace, as dockerd's builder copies.

* a directory source: its contents go into the destination (made 0755 if
  missing), each entry with its mode, times and, unless an owner is given,
  its owner; an existing directory is merged (and takes the source's
  attributes), anything else in the way is replaced;
* a file source: into the destination directory when the destination ends
  with ``/`` or is one already, else as the destination itself;
* ``ADD`` of a local tar (plain or compressed) extracts it, keeping what the
  archive says (owners included);
* ``--chown`` (numbers, or names from the image's /etc/passwd and
  /etc/group) owns what was copied; ``--chmod`` sets its mode.

Every path is resolved inside the workspace (``..`` and symlinks stop at its
root) and final components are never followed, so neither the context nor
the image nor a crafted archive can make the copy write outside the step's
snapshot.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile

from pallet.core.errors import InvalidArgument, NotFound
from pallet.linux.confined import ConfinedRoot, proc_path, split_name

from pallet.plugins.builder_dockerfile.context import DIR, LNK, REG, SYM, Entry

_CHUNK = 1 << 20


def _remove(dirfd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(proc_path(dirfd, name))
    else:
        os.unlink(name, dir_fd=dirfd)


class Writer:
    """Writes entries into a root directory, confined to it."""

    def __init__(self, root: str):
        self.root = root
        self.confined = ConfinedRoot(root)
        self.dir_times: list[tuple[list[str], float]] = []

    def close(self) -> None:
        for parts, mtime in reversed(self.dir_times):
            pfd = self.confined.walk(parts[:-1])
            if pfd is None:
                continue
            try:
                os.utime(parts[-1], (mtime, mtime), dir_fd=pfd, follow_symlinks=False)
            except OSError:
                pass
            finally:
                os.close(pfd)
        self.dir_times.clear()
        self.confined.close()

    # --- paths -------------------------------------------------------------------------
    def resolve(self, path: str) -> str:
        """``path`` with symlinks followed inside the root (as far as it exists)."""
        from pallet.engine.rootfs import scoped_path
        return posixpath.normpath(scoped_path(self.confined.fd, path))

    def is_dir(self, path: str) -> bool:
        st = self.confined.lstat(split_name(self.resolve(path)))
        return st is not None and stat.S_ISDIR(st.st_mode)

    def mkdir_all(self, path: str, owner: tuple[int, int] | None) -> None:
        """Make ``path`` and missing parents (0755; new ones owned by ``owner``)."""
        fd = self.parent_fd(split_name(path) + ["."], owner)
        os.close(fd)

    def parent_fd(self, parts: list[str], owner: tuple[int, int] | None) -> int:
        def made(dirfd: int, name: str, _rel: str) -> None:
            os.chmod(name, 0o755, dir_fd=dirfd)
            if owner is not None:
                os.chown(name, owner[0], owner[1], dir_fd=dirfd, follow_symlinks=False)
        return self.confined.walk(parts[:-1], create=True, on_mkdir=made)

    # --- one entry -----------------------------------------------------------------------
    def write(self, src, entry: Entry, dest: str, *, owner: tuple[int, int] | None,
              mode: int | None = None, links: dict | None = None) -> None:
        """Write ``entry`` of ``src`` at ``dest`` (a path in the root), its
        owner ``owner`` (None: the entry's own), its mode ``mode`` (None: its own)."""
        parts = split_name(dest)
        if not parts:
            return
        pfd = self.parent_fd(parts, (0, 0))
        name = parts[-1]
        uid, gid = owner if owner is not None else (entry.uid, entry.gid)
        perm = mode if mode is not None else entry.mode
        mtime = int(entry.mtime)
        try:
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and not (entry.is_dir and stat.S_ISDIR(st.st_mode)):
                _remove(pfd, name)
                st = None
            kind = entry.type
            if kind == LNK and links is not None and entry.linkname in links:
                target = split_name(links[entry.linkname])
                tfd = self.confined.walk(target[:-1])
                if tfd is not None:
                    try:
                        os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd,
                                follow_symlinks=False)
                        return
                    finally:
                        os.close(tfd)
            if kind in (REG, LNK, "7"):
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=pfd)
                try:
                    src.copy_to(entry, fd)
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, perm)  # after chown, which clears setuid bits
                    os.utime(fd, (mtime, mtime))
                finally:
                    os.close(fd)
                if links is not None:
                    links[entry.name] = dest
                return
            if kind == DIR:
                if st is None:
                    os.mkdir(name, 0o700, dir_fd=pfd)
                os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
                os.chmod(name, perm, dir_fd=pfd)
                self.dir_times.append((parts, mtime))
                return
            if kind == SYM:
                os.symlink(entry.linkname, name, dir_fd=pfd)
            elif kind in ("3", "4", "6"):
                fmt = {"3": stat.S_IFCHR, "4": stat.S_IFBLK, "6": stat.S_IFIFO}[kind]
                os.mknod(name, fmt | 0o600, os.makedev(entry.devmajor, entry.devminor),
                         dir_fd=pfd)
                os.chmod(name, perm, dir_fd=pfd)
            else:
                return  # nothing else has a form on disk
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(name, (mtime, mtime), dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def set_owner(self, dest: str, owner: tuple[int, int]) -> None:
        parts = split_name(dest)
        if not parts:
            os.chown(self.root, *owner)
            return
        pfd = self.confined.walk(parts[:-1])
        if pfd is None:
            return
        try:
            os.chown(parts[-1], owner[0], owner[1], dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)


# --- whole copies ----------------------------------------------------------------------------

def copy_directory(w: Writer, src, name: str, dest: str, *, owner, mode) -> None:
    """The contents of directory ``name`` of ``src`` into ``dest``."""
    existed = w.is_dir(dest)
    dest = w.resolve(dest)
    w.mkdir_all(dest, None)
    links: dict[str, str] = {}
    prefix = name + "/" if name else ""
    for entry in src.walk(name):
        rel = entry.name[len(prefix):]
        w.write(src, entry, posixpath.join(dest, rel), owner=owner, mode=mode, links=links)
    if owner is not None and not existed:
        w.set_owner(dest, owner)


def copy_file(w: Writer, src, entry: Entry, dest: str, *, owner, mode) -> None:
    """One file (or link, or device) at ``dest`` (its parents made 0755)."""
    parts = split_name(dest)
    if parts[:-1]:
        w.mkdir_all("/".join(parts[:-1]), owner)
    w.write(src, entry, dest, owner=owner, mode=mode)


def is_archive(src, entry: Entry) -> bool:
    """Whether ADD extracts this file: a tar, maybe compressed (dockerd's test)."""
    if entry.type not in (REG, LNK) or not entry.size and entry.type == REG:
        return False
    from pallet.distribution.compression import decompressed

    head = _head(src, entry)
    try:
        import io
        raw = decompressed(io.BytesIO(head)).read(512)
    except Exception:  # noqa: BLE001 — not an archive we can read
        return False
    if len(raw) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(raw[:512], "utf-8", "surrogateescape")
        return True
    except tarfile.HeaderError:
        return False


def _head(src, entry: Entry) -> bytes:
    data_entry = src.data_entry(entry)
    if hasattr(src, "fd") and data_entry.offset >= 0:
        return os.pread(src.fd(), min(data_entry.size, 1 << 16), data_entry.offset)
    return src.read(entry)[:1 << 16]


class _EntryReader:
    """A file-like reader over an entry's bytes (for archives in the context)."""

    def __init__(self, src, entry: Entry):
        self.src = src
        self.entry = src.data_entry(entry)
        self.pos = 0
        self._file = None
        if not (hasattr(src, "fd") and self.entry.offset >= 0):
            self._file = open(os.path.join(src.root, self.entry.name), "rb")

    def read(self, n: int = -1) -> bytes:
        if self._file is not None:
            return self._file.read(n)
        left = self.entry.size - self.pos
        if n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = os.pread(self.src.fd(), n, self.entry.offset + self.pos)
        self.pos += len(data)
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def extract_archive(w: Writer, src, entry: Entry, dest: str) -> None:
    """``ADD archive.tar /dest``: the archive's entries under ``dest``, with
    the owners, modes and times it gives, confined to the workspace."""
    from pallet.distribution.compression import decompressed

    dest = w.resolve(dest)
    w.mkdir_all(dest, None)
    reader = _EntryReader(src, entry)
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=decompressed(reader), mode="r|", errorlevel=2) as tf:
            for ti in tf:
                if ti.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
                    continue
                parts = split_name(ti.name)
                if not parts:
                    continue
                rel = "/".join(parts)
                member = _ArchiveMember(tf, ti)
                kind = member.entry.type
                if kind == LNK:
                    target = "/".join(split_name(ti.linkname))
                    if target not in links:
                        raise InvalidArgument(f"invalid hardlink {ti.name} to {ti.linkname} "
                                              "in archive")
                w.write(member, member.entry, posixpath.join(dest, rel), owner=None,
                        links=links)
    except tarfile.TarError as e:
        raise InvalidArgument(f"ADD: error processing tar file: {e}") from None
    finally:
        reader.close()


class _ArchiveMember:
    """One member of an archive being extracted, as a copy source."""

    def __init__(self, tf: tarfile.TarFile, ti: tarfile.TarInfo):
        self.tf = tf
        self.ti = ti
        kind = "5" if ti.isdir() else (ti.type.decode() if ti.type != b"\0" else REG)
        self.entry = Entry("/".join(split_name(ti.name)), kind, stat.S_IMODE(ti.mode), ti.uid,
                           ti.gid, ti.size if ti.isreg() else 0, float(ti.mtime),
                           "/".join(split_name(ti.linkname)) if ti.islnk() else ti.linkname,
                           devmajor=ti.devmajor, devminor=ti.devminor)

    def data_entry(self, entry: Entry) -> Entry:
        return entry

    def copy_to(self, entry: Entry, out_fd: int) -> None:
        f = self.tf.extractfile(self.ti)
        if f is None:
            return
        while True:
            data = f.read(_CHUNK)
            if not data:
                return
            os.write(out_fd, data)


def write_entry(src, entry: Entry, dest_root: str, rel: str, *, uid: int, gid: int) -> None:
    """One entry of ``src`` under ``dest_root`` (used to extract a context)."""
    w = Writer(dest_root)
    try:
        w.write(src, entry, rel, owner=(uid, gid))
    finally:
        w.close()


# --- owners --------------------------------------------------------------------------------

def _lookup(root: Writer, path: str, name: str, index: int) -> int | None:
    parts = split_name(root.resolve(path))
    pfd = root.confined.walk(parts[:-1])
    if pfd is None:
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    except OSError:
        return None
    finally:
        os.close(pfd)
    with os.fdopen(fd, "r", errors="replace") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if len(fields) > index and fields[0] == name:
                try:
                    return int(fields[index])
                except ValueError:
                    return None
    return None


def parse_chown(w: Writer, spec: str) -> tuple[int, int]:
    """``--chown=user[:group]``: numbers as they are, names from the image's
    /etc/passwd and /etc/group (a lone user name is also the group's name)."""
    parts = spec.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"invalid chown string format: {spec}")
    user, group = (parts[0], parts[0]) if len(parts) == 1 else parts
    ids = []
    for what, name, path in (("uid for user", user, "/etc/passwd"),
                             ("gid for group", group, "/etc/group")):
        if name.isdigit():
            ids.append(int(name))
            continue
        value = _lookup(w, path, name, 2)
        if value is None:
            kind = "user" if "user" in what else "group"
            raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: "
                                  f"can't find {what} {name}: no such {kind}: {name}")
        ids.append(value)
    return ids[0], ids[1]


def check_source_exists(src, path: str) -> Entry:
    entry = src.lookup(path)
    if entry is None:
        raise NotFound(path)
    return entry
