"""Where COPY and ADD read from besides the build context: the files of
another stage or image (``COPY --from``), mounted read-only, and a file
downloaded for ``ADD <url>``.

:class:`DirSource` answers like :class:`.context.Context` (``resolve``,
``lookup``, ``walk``, ``copy_to``, ``source_hash``), with paths resolved
inside its root as dockerd resolves them in an image's filesystem, and
checksums computed as dockerd's lazy source computes them (tarsum version 1
of a header made from the file's stat, then its content).
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import stat

from pallet.core.errors import InvalidArgument, NotFound

from pallet.plugins.builder_dockerfile.context import DIR, LNK, REG, SYM, Entry

_TYPES = {stat.S_IFREG: REG, stat.S_IFDIR: DIR, stat.S_IFLNK: SYM, stat.S_IFCHR: "3",
          stat.S_IFBLK: "4", stat.S_IFIFO: "6"}
_CHUNK = 1 << 20


class DirSource:
    """A directory tree (an image's files) as a copy source."""

    def __init__(self, root: str):
        self.root = root
        self._fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._sums: dict[str, str] = {}
        self._inodes: dict[tuple[int, int], str] = {}

    def close(self) -> None:
        os.close(self._fd)

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        from pallet.engine.rootfs import scoped_path

        if not follow_last:
            parent, base = posixpath.split(posixpath.normpath("/" + path))
            resolved = scoped_path(self._fd, parent).strip("/")
            return posixpath.join(resolved, base) if resolved else base
        return posixpath.normpath(scoped_path(self._fd, path)).strip("/").lstrip(".")

    def _lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.lstat(os.path.join(self.root, name)) if name else os.stat(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _entry(self, name: str, st: os.stat_result) -> Entry:
        kind = _TYPES.get(stat.S_IFMT(st.st_mode), REG)
        link = os.readlink(os.path.join(self.root, name)) if kind == SYM else ""
        if kind == REG and st.st_nlink > 1:
            first = self._inodes.setdefault((st.st_dev, st.st_ino), name)
            if first != name:
                kind, link = LNK, first
        return Entry(name, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     st.st_size if kind == REG else 0, int(st.st_mtime), link,
                     devmajor=os.major(st.st_rdev) if kind in ("3", "4") else 0,
                     devminor=os.minor(st.st_rdev) if kind in ("3", "4") else 0)

    def lookup(self, path: str, *, follow_last: bool = True) -> Entry | None:
        name = self.resolve(path, follow_last=follow_last)
        st = self._lstat(name)
        return None if st is None else self._entry(name, st)

    def children(self, name: str) -> list[str]:
        try:
            names = sorted(os.listdir(os.path.join(self.root, name)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [posixpath.join(name, n) if name else n for n in names]

    def walk(self, name: str):
        for child in self.children(name):
            st = self._lstat(child)
            if st is None or stat.S_ISSOCK(st.st_mode):
                continue
            entry = self._entry(child, st)
            yield entry
            if entry.is_dir:
                yield from self.walk(child)

    def data_entry(self, entry: Entry) -> Entry:
        if entry.type == LNK:
            target = self.lookup(entry.linkname, follow_last=False)
            if target is not None:
                return Entry(target.name, REG, target.mode, target.uid, target.gid,
                             target.size, target.mtime)
        return entry

    def copy_to(self, entry: Entry, out_fd: int) -> None:
        entry = self.data_entry(entry)
        fd = os.open(os.path.join(self.root, entry.name), os.O_RDONLY | os.O_NOFOLLOW
                     | os.O_CLOEXEC)
        try:
            left = entry.size
            fast = True
            while left:
                n = 0
                if fast:
                    try:
                        n = os.copy_file_range(fd, out_fd, left)
                    except OSError:  # another filesystem (EXDEV) or no support
                        fast = False
                if n <= 0:
                    data = os.read(fd, min(left, _CHUNK))
                    if not data:
                        break
                    os.write(out_fd, data)
                    n = len(data)
                left -= n
        finally:
            os.close(fd)

    def read(self, entry: Entry) -> bytes:
        with open(os.path.join(self.root, self.data_entry(entry).name), "rb") as f:
            return f.read()

    def stat(self, path: str) -> Entry:
        entry = self.lookup(path)
        if entry is None:
            raise NotFound(f"stat {path}: file does not exist")
        return entry

    # --- checksums (dockerd's lazy source) ---------------------------------------------------
    def path_hash(self, path: str) -> str:
        """dockerd's lazy ``Hash``: of what ``path`` resolves to (a missing
        target: the path itself)."""
        name = self.resolve(path)
        if name in self._sums:
            return self._sums[name]
        full = os.path.join(self.root, name)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            return name
        kind = _TYPES.get(stat.S_IFMT(st.st_mode), REG)
        link = os.readlink(full) if kind == SYM else ""
        tar_name = name + "/" if kind == DIR else name
        # Go's FileInfoHeader mode with the old file type bits, as dockerd writes it
        mode = stat.S_IMODE(st.st_mode) | {REG: 0o100000, DIR: 0o40000, SYM: 0o120000,
                                           "3": 0o20000, "4": 0o60000, "6": 0o10000}[kind]
        # Go's FileInfoHeader names the owners from the daemon host's databases
        fields = (("name", tar_name), ("mode", str(mode)), ("uid", str(st.st_uid)),
                  ("gid", str(st.st_gid)), ("size", str(st.st_size if kind == REG else 0)),
                  ("typeflag", kind), ("linkname", link), ("uname", _user(st.st_uid)),
                  ("gname", _group(st.st_gid)),
                  ("devmajor", str(os.major(st.st_rdev)) if kind in ("3", "4") else "0"),
                  ("devminor", str(os.minor(st.st_rdev)) if kind in ("3", "4") else "0"))
        h = hashlib.sha256("".join(k + v for k, v in fields).encode("utf-8", "surrogateescape"))
        if kind == REG and st.st_size:
            with open(full, "rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    h.update(chunk)
        self._sums[name] = h.hexdigest()
        return self._sums[name]

    def dir_hash(self, name: str) -> str:
        subs = sorted([self.path_hash(name)] * bool(name) +
                      [self.path_hash(e.name) for e in self.walk(name)])
        return "dir:" + hashlib.sha256(",".join(subs).encode()).hexdigest()

    def source_hash(self, path: str) -> str:
        name = self.resolve(path)
        st = self._lstat(name)
        if st is None:
            raise NotFound(f"stat {path}: file does not exist")
        if stat.S_ISDIR(st.st_mode):
            return self.dir_hash(name)
        return "file:" + self.path_hash(name)


def _user(uid: int) -> str:
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


def _group(gid: int) -> str:
    import grp
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def url_filename(url: str, disposition: str | None) -> str:
    """The name a downloaded file gets (dockerd's getFilenameForDownload)."""
    from urllib.parse import unquote, urlsplit

    path = unquote(urlsplit(url).path)
    if path and not path.endswith("/"):
        name = posixpath.basename(path)
        if name:
            return name
    if disposition:
        import email.message
        msg = email.message.Message()
        msg["content-disposition"] = disposition
        name = msg.get_param("filename", header="content-disposition")
        if name:
            return posixpath.basename(str(name))
    raise InvalidArgument(f"cannot determine filename from url: {url}")


async def download(url: str, dest_dir: str) -> tuple[str, Entry, str]:
    """``ADD <url>``: fetch it into ``dest_dir``; ``(path, entry, sum)`` where
    the entry describes the file as dockerd stores it (mode 0600, the
    Last-Modified time) and ``sum`` is its tarsum."""
    import email.utils

    import aiohttp

    timeout = aiohttp.ClientTimeout(total=3600, sock_connect=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(url) as resp:
            if resp.status >= 400:
                raise InvalidArgument(f"failed to GET {url} with status {resp.status} "
                                      f"{resp.reason}: {(await resp.text())[:200]}")
            name = url_filename(url, resp.headers.get("Content-Disposition"))
            path = os.path.join(dest_dir, "download")
            h = hashlib.sha256()
            size = 0
            with open(path, "wb") as f:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    f.write(chunk)
                    size += len(chunk)
            mtime = 0
            lm = resp.headers.get("Last-Modified")
            if lm:
                try:
                    mtime = int(email.utils.parsedate_to_datetime(lm).timestamp())
                except (TypeError, ValueError):
                    mtime = 0
    os.chmod(path, 0o600)
    if mtime:
        os.utime(path, (mtime, mtime))
    st = os.stat(path)
    fields = (("name", name), ("mode", str(0o100600)), ("uid", "0"), ("gid", "0"),
              ("size", str(size)), ("typeflag", REG), ("linkname", ""), ("uname", ""),
              ("gname", ""), ("devmajor", "0"), ("devminor", "0"))
    h.update("".join(k + v for k, v in fields).encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    entry = Entry(name, REG, 0o600, 0, 0, size, int(st.st_mtime))
    return path, entry, h.hexdigest()
