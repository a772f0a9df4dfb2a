"""The build context: the tar the client sends (plain, gzip, bzip2, xz or
zstd), or a Dockerfile alone.

It is never extracted: the body is spooled (decompressed) to one file while
its members are indexed and hashed, and COPY reads each file's bytes from
the spool.  Names are cleaned as dockerd's untar cleans them; a member that
would land outside the context (``../x``) refuses the whole context.  Paths
a Dockerfile names are resolved inside the context: ``..`` stops at its
root, and symlinks are followed as if the context were ``/`` (dockerd's
``FollowSymlinkInScope``), so nothing outside the context can be reached.

Each member's checksum is dockerd's (tarsum version 1 of the header fields,
without times, then the content), so that COPY's cache keys and history
entries (``COPY file:<sum> in /dst``) are the ones dockerd writes for the
same context.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
import queue
import stat
import tarfile
import threading
import time
from typing import AsyncIterator, BinaryIO, Iterator

import attrs

from pallet.core.errors import InvalidArgument, NotFound

_MAX_LINKS = 255
_CHUNK = 1 << 20
REG, DIR, SYM, LNK = "0", "5", "2", "1"


@attrs.define
class Entry:
    """One path of the context."""

    name: str                 # cleaned, relative ("a/b"); "" is the root
    type: str                 # tar type flag: "0" file, "5" dir, "2" symlink, "1" hard link...
    mode: int = 0o755         # permission bits
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: float = 0.0
    linkname: str = ""
    offset: int = -1          # where its bytes start in the spool
    sum: str = ""             # tarsum v1, hex ("" for implicit directories)
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict = attrs.field(factory=dict)

    @property
    def is_dir(self) -> bool:
        return self.type == DIR

    @property
    def is_symlink(self) -> bool:
        return self.type == SYM


def clean(name: str) -> str:
    """A member name as dockerd's untar places it, or InvalidArgument when it
    would leave the context."""
    norm = posixpath.normpath(name) if name else "."
    if norm.startswith("/"):
        # an absolute name is joined to the context's root, as dockerd does
        norm = posixpath.normpath("/" + norm.lstrip("/")).lstrip("/") or "."
    if norm == ".":
        return ""
    if norm == ".." or norm.startswith("../"):
        raise InvalidArgument(f"error processing tar file: \"{name}\" is outside of the "
                              "build context")
    return norm


def _tarsum(ti: tarfile.TarInfo, raw_name: str, typeflag: str) -> "hashlib._Hash":
    """The hash object of tarsum v1 seeded with the member's header."""
    h = hashlib.sha256()
    fields = (("name", raw_name), ("mode", str(ti.mode)), ("uid", str(ti.uid)),
              ("gid", str(ti.gid)), ("size", str(ti.size if typeflag in (REG, "7") else 0)),
              ("typeflag", typeflag), ("linkname", ti.linkname), ("uname", ""), ("gname", ""),
              ("devmajor", str(ti.devmajor)), ("devminor", str(ti.devminor)))
    h.update("".join(k + v for k, v in fields).encode("utf-8", "surrogateescape"))
    for key in sorted(k for k in ti.pax_headers if k.startswith("SCHILY.xattr.")):
        name = key[len("SCHILY.xattr."):]
        h.update((name + ti.pax_headers[key]).encode("utf-8", "surrogateescape"))
    return h


class _Tee:
    """A reader that writes what is read from it to the spool, counting."""

    def __init__(self, src, spool: BinaryIO):
        self.src = src
        self.spool = spool

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        if data:
            self.spool.write(data)
        return data


class _QueueReader:
    """A blocking reader over chunks that the event loop puts in a queue."""

    def __init__(self):
        self.q: queue.Queue = queue.Queue(maxsize=64)
        self.buf = b""
        self.eof = False
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        while not self.eof and (n < 0 or len(self.buf) < n):
            item = self.q.get()
            if item is None:
                self.eof = True
                break
            if isinstance(item, BaseException):
                self.eof = True
                self.error = item
                raise item
            self.buf += item
        if n < 0 or n >= len(self.buf):
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


class Context:
    """An indexed build context over its spool file."""

    def __init__(self, spool: str, entries: dict[str, Entry], *, dockerfile_only: bool = False):
        self.spool = spool
        self.entries = entries
        self.dockerfile_only = dockerfile_only
        self._fd: int | None = None
        self._children: dict[str, list[str]] | None = None
        self._dir_sums: dict[str, str] = {}

    # --- building ---------------------------------------------------------------------
    @classmethod
    async def receive(cls, chunks: AsyncIterator[bytes], spool: str) -> "Context":
        """Spool and index a request body (see the module doc)."""
        reader = _QueueReader()
        result: dict = {}

        def work():
            try:
                result["ctx"] = cls.from_stream(reader, spool)
            except BaseException as e:  # reported to the awaiting side
                result["error"] = e
                # drain so that the feeding side never blocks on a full queue
                while not reader.eof:
                    try:
                        reader.read(_CHUNK)
                    except BaseException:
                        break
        thread = threading.Thread(target=work, name="build-context", daemon=True)
        thread.start()
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                if reader.q.full():
                    await asyncio.to_thread(reader.q.put, chunk)
                else:
                    reader.q.put_nowait(chunk)
            await asyncio.to_thread(reader.q.put, None)
        except BaseException as e:
            await asyncio.to_thread(reader.q.put, e if isinstance(e, Exception)
                                    else InvalidArgument("build context upload stopped"))
            await asyncio.to_thread(thread.join)
            raise
        await asyncio.to_thread(thread.join)
        if "error" in result:
            raise result["error"]
        return result["ctx"]

    @classmethod
    def from_stream(cls, stream, spool: str) -> "Context":
        """Spool and index a context read from a blocking stream."""
        from pallet.distribution.compression import detect_compression, decompressed

        head = stream.read(512 + 64)
        if not head:
            open(spool, "wb").close()
            return cls(spool, {"": Entry("", DIR, 0o755, mtime=time.time())})
        kind = detect_compression(head)
        if kind == "none" and not _looks_like_tar(head):
            return cls.dockerfile(spool, head + stream.read())
        prefixed = _Prefixed(head, stream)
        source = decompressed(prefixed) if kind != "none" else prefixed
        with open(spool, "wb") as out:
            entries = _index(_Tee(source, out))
        return cls(spool, entries)

    @classmethod
    def dockerfile(cls, spool: str, data: bytes, name: str = "Dockerfile") -> "Context":
        """A context of one Dockerfile (``docker build -`` with a plain
        Dockerfile, or a remote URL that serves one)."""
        with open(spool, "wb") as f:
            f.write(data)
        now = time.time()
        entries = {"": Entry("", DIR, 0o755, mtime=now),
                   name: Entry(name, REG, 0o644, size=len(data), mtime=now, offset=0,
                               sum=hashlib.sha256(data).hexdigest())}
        return cls(spool, entries, dockerfile_only=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- lookups -------------------------------------------------------------------------
    def children(self, name: str) -> list[str]:
        """Names of the entries right below directory ``name``, sorted."""
        if self._children is None:
            kids: dict[str, list[str]] = {}
            for n in self.entries:
                if n:
                    kids.setdefault(posixpath.dirname(n), []).append(n)
            for v in kids.values():
                v.sort()
            self._children = kids
        return self._children.get(name, [])

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """``path`` resolved inside the context (symlinks followed in scope);
        the cleaned name, which may not exist."""
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        done: list[str] = []
        links = 0
        while parts:
            comp = parts.pop(0)
            if comp == "..":
                if done:
                    done.pop()
                continue
            cur = "/".join(done + [comp])
            entry = self.entries.get(cur)
            if entry is not None and entry.is_symlink and (parts or follow_last):
                links += 1
                if links > _MAX_LINKS:
                    raise InvalidArgument(f"too many links in {path}")
                target = entry.linkname
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            done.append(comp)
        return "/".join(done)

    def lookup(self, path: str, *, follow_last: bool = True) -> Entry | None:
        """The entry at ``path`` (resolved in scope), or None."""
        return self.entries.get(self.resolve(path, follow_last=follow_last))

    def stat(self, path: str) -> Entry:
        entry = self.lookup(path)
        if entry is None:
            raise NotFound(f"stat {path}: file does not exist")
        return entry

    def walk(self, name: str) -> Iterator[Entry]:
        """Every entry below directory ``name`` (not itself), parents first,
        in path order; symlinks are not followed."""
        for child in self.children(name):
            entry = self.entries[child]
            yield entry
            if entry.is_dir:
                yield from self.walk(child)

    def data_entry(self, entry: Entry) -> Entry:
        """The entry holding the bytes of ``entry`` (a hard link's target)."""
        seen = 0
        while entry.type == LNK:
            target = self.entries.get(clean(entry.linkname))
            if target is None or seen > 16:
                raise InvalidArgument(f"hard link {entry.name} to {entry.linkname}: "
                                      "no such file in the build context")
            entry, seen = target, seen + 1
        return entry

    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.spool, os.O_RDONLY | os.O_CLOEXEC)
        return self._fd

    def read(self, entry: Entry) -> bytes:
        """The whole content of a file entry."""
        entry = self.data_entry(entry)
        return os.pread(self.fd(), entry.size, entry.offset) if entry.size else b""

    def copy_to(self, entry: Entry, out_fd: int) -> None:
        """Write a file entry's bytes to ``out_fd`` (in the kernel when it can)."""
        entry = self.data_entry(entry)
        left, offset, src = entry.size, entry.offset, self.fd()
        while left:
            try:
                n = os.copy_file_range(src, out_fd, left, offset)
            except OSError:
                n = 0
            if n <= 0:
                data = os.pread(src, min(left, _CHUNK), offset)
                if not data:
                    raise InvalidArgument(f"{entry.name}: the build context is truncated")
                os.write(out_fd, data)
                n = len(data)
            left -= n
            offset += n

    def remove(self, path: str) -> None:
        """Drop ``path`` (and what is below it) from the context."""
        name = self.resolve(path, follow_last=False)
        for n in [n for n in self.entries if n == name or n.startswith(name + "/")]:
            del self.entries[n]
        self._children = None

    # --- dockerd's checksums ----------------------------------------------------------------
    def path_hash(self, name: str) -> str:
        """dockerd's ``Source.Hash`` of a path: the tarsum of what it resolves
        to (a symlink counts as its target), or the path itself."""
        entry = self.entries.get(self.resolve(name))
        return entry.sum if entry is not None and entry.sum else name

    def dir_hash(self, name: str) -> str:
        """``dir:<sha256>`` of the hashes of directory ``name`` (unless it is
        the root) and of every path below it, sorted."""
        if name not in self._dir_sums:
            subs = sorted([self.path_hash(name)] * bool(name) +
                          [self.path_hash(e.name) for e in self.walk(name)])
            self._dir_sums[name] = "dir:" + hashlib.sha256(",".join(subs).encode()).hexdigest()
        return self._dir_sums[name]

    def source_hash(self, path: str) -> str:
        """``file:<sum>`` or ``dir:<sum>`` of a source path (resolved)."""
        name = self.resolve(path)
        entry = self.entries.get(name)
        if entry is None:
            raise NotFound(f"stat {path}: file does not exist")
        if entry.is_dir:
            return self.dir_hash(name)
        return "file:" + self.path_hash(name)

    # --- on disk ---------------------------------------------------------------------------
    def extract(self, dest: str) -> None:
        """Write the context under ``dest`` (for ``RUN --mount=type=bind``)."""
        from pallet.plugins.builder_dockerfile.copy import write_entry

        for entry in self.walk(""):
            write_entry(self, entry, dest, entry.name, uid=entry.uid, gid=entry.gid)


class _Prefixed:
    def __init__(self, head: bytes, rest):
        self.head = head
        self.rest = rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                out, self.head = self.head + self.rest.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            if len(out) < n:
                out += self.rest.read(n - len(out))
            return out
        return self.rest.read(n)


def _looks_like_tar(head: bytes) -> bool:
    if len(head) < 512:
        return len(head) == 0 or head.strip(b"\0") == b""
    if head[257:262] == b"ustar":
        return True
    # an old (v7) header: its checksum must be right
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
        return True
    except tarfile.HeaderError:
        return False


def _index(stream) -> dict[str, Entry]:
    """Read a tar stream member by member, hashing every entry."""
    entries: dict[str, Entry] = {}
    now = time.time()
    try:
        with tarfile.open(fileobj=stream, mode="r|", errorlevel=2) as tf:
            for ti in tf:
                typeflag = ti.type.decode() if ti.type != b"\0" else REG
                if typeflag in ("g", "x", "L", "K"):
                    continue
                name = clean(ti.name)
                raw = ti.pax_headers.get("path") or ti.name
                if ti.isdir() and not raw.endswith("/"):
                    raw += "/"  # Go keeps the slash Python strips
                h = _tarsum(ti, raw, typeflag)
                offset = -1
                if ti.isreg():
                    offset = ti.offset_data
                    f = tf.extractfile(ti)
                    while True:
                        data = f.read(_CHUNK)
                        if not data:
                            break
                        h.update(data)
                linkname = ti.linkname
                if ti.islnk():
                    linkname = clean(linkname)
                    if not linkname:
                        raise InvalidArgument(f"error processing tar file: hard link "
                                              f"{ti.name} to the root")
                xattrs = {k[len("SCHILY.xattr."):]: v for k, v in ti.pax_headers.items()
                          if k.startswith("SCHILY.xattr.")}
                if name:
                    _parents(entries, name, now)
                entries[name] = Entry(name, DIR if ti.isdir() else typeflag,
                                      stat.S_IMODE(ti.mode), ti.uid, ti.gid,
                                      ti.size if ti.isreg() else 0, float(ti.mtime), linkname,
                                      offset, h.hexdigest(), ti.devmajor, ti.devminor, xattrs)
    except tarfile.TarError as e:
        raise InvalidArgument(f"error processing tar file: {e}") from None
    except EOFError:
        raise InvalidArgument("error processing tar file: unexpected EOF") from None
    entries.setdefault("", Entry("", DIR, 0o755, mtime=now))
    return entries


def _parents(entries: dict[str, Entry], name: str, now: float) -> None:
    parent = posixpath.dirname(name)
    missing = []
    while parent and parent not in entries:
        missing.append(parent)
        parent = posixpath.dirname(parent)
    for p in missing:
        entries[p] = Entry(p, DIR, 0o755, mtime=now)
    if "" not in entries:
        entries[""] = Entry("", DIR, 0o755, mtime=now)
