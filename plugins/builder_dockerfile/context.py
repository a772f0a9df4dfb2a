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


class _QueueReader:
    """A blocking reader over chunks that the event loop puts in a queue."""

    def __init__(self):
        self.q: queue.Queue = queue.Queue(maxsize=64)
        self.chunk = b""
        self.pos = 0
        self.eof = False
        self.error: BaseException | None = None

    def _next(self) -> bool:
        item = self.q.get()
        if item is None:
            self.eof = True
            return False
        if isinstance(item, BaseException):
            self.eof = True
            self.error = item
            raise item
        self.chunk, self.pos = item, 0
        return True

    def read(self, n: int = -1) -> bytes:
        # one chunk at a time, by offset: slicing a big buffer per small read
        # would copy the whole context many times over
        parts = []
        while n != 0:
            left = len(self.chunk) - self.pos
            if left == 0:
                if self.eof or not self._next():
                    break
                continue
            take = left if n < 0 else min(left, n)
            parts.append(self.chunk[self.pos:self.pos + take] if take < len(self.chunk)
                         else self.chunk)
            self.pos += take
            if n > 0:
                n -= take
        return b"".join(parts) if len(parts) != 1 else parts[0]


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
        from pallet.distribution.compression import _Prefixed, decompressed, detect_compression

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
            entries = _index(source, out)
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


class _Scan:
    """A tar read in big chunks, each chunk written to the spool as it comes
    (one write per chunk, member data hashed in place, never copied)."""

    def __init__(self, src, spool: BinaryIO):
        self.src = src
        self.spool = spool
        self.buf = b""
        self.pos = 0
        self.base = 0  # offset of buf[0] in the stream

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def _more(self) -> bool:
        data = self.src.read(_CHUNK)
        if not data:
            return False
        self.spool.write(data)
        self.base += self.pos
        self.buf = self.buf[self.pos:] + data if self.pos < len(self.buf) else data
        self.pos = 0
        return True

    def take(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            if not self._more():
                raise EOFError
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def feed(self, n: int, sink) -> None:
        """Pass ``n`` bytes to ``sink`` (a hash's update, or None to skip)."""
        while n:
            avail = len(self.buf) - self.pos
            if not avail:
                if not self._more():
                    raise EOFError
                continue
            k = min(avail, n)
            if sink is not None:
                sink(memoryview(self.buf)[self.pos:self.pos + k])
            self.pos += k
            n -= k

    def drain(self) -> None:
        while self._more():
            self.pos = len(self.buf)


def _pax(data: bytes) -> dict[str, str]:
    out = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise InvalidArgument("error processing tar file: invalid pax header") from None
        if length <= 0:
            raise InvalidArgument("error processing tar file: invalid pax header")
        record = data[sp + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class _Header:
    """The fields of one tar header block (ustar, GNU and v7), read fast."""

    __slots__ = ("name", "mode", "uid", "gid", "size", "mtime", "type", "linkname",
                 "devmajor", "devminor", "pax_headers")


def _num(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # base-256 (GNU), for big or negative numbers
        n = int.from_bytes(field[1:], "big")
        return n if field[:1] == b"\x80" else n - (1 << (8 * (len(field) - 1)))
    field = field.split(b"\0", 1)[0].strip()
    return int(field, 8) if field else 0


def _header(block: bytes) -> _Header:
    stored = block[148:156].split(b"\0", 1)[0].strip()
    try:
        want = int(stored, 8)
    except ValueError:
        raise InvalidArgument("error processing tar file: invalid header") from None
    if want != sum(block) - sum(block[148:156]) + 256:
        raise InvalidArgument("error processing tar file: bad checksum")
    h = _Header()
    h.name = _raw_name(block)
    h.mode = _num(block[100:108])
    h.uid = _num(block[108:116])
    h.gid = _num(block[116:124])
    h.size = _num(block[124:136])
    h.mtime = _num(block[136:148])
    h.type = block[156:157]
    h.linkname = block[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    ustar = block[257:262] == b"ustar"
    h.devmajor = _num(block[329:337]) if ustar else 0
    h.devminor = _num(block[337:345]) if ustar else 0
    h.pax_headers = {}
    return h


def _raw_name(block: bytes) -> str:
    name = block[:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _index(stream, spool: BinaryIO) -> dict[str, Entry]:
    """Read a tar stream member by member, spooling and hashing every entry."""
    entries: dict[str, Entry] = {}
    now = time.time()
    scan = _Scan(stream, spool)
    pax: dict[str, str] = {}
    longname = longlink = None
    try:
        while True:
            try:
                block = scan.take(tarfile.BLOCKSIZE)
            except EOFError:
                break  # a tar cut short of its end blocks: what came is the context
            if block.count(0) == tarfile.BLOCKSIZE:
                break
            try:
                ti = _header(block)
            except ValueError as e:
                raise InvalidArgument(f"error processing tar file: {e}") from None
            kind = ti.type
            size = ti.size
            padded = size + (-size % tarfile.BLOCKSIZE)
            if kind in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME,
                        tarfile.GNUTYPE_LONGLINK, b"X"):
                data = scan.take(padded)[:size]
                if kind in (tarfile.XHDTYPE, b"X"):
                    pax = _pax(data)
                elif kind == tarfile.GNUTYPE_LONGNAME:
                    longname = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                elif kind == tarfile.GNUTYPE_LONGLINK:
                    longlink = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue
            raw = pax.get("path") or longname or ti.name
            linkname = pax.get("linkpath") or longlink or ti.linkname
            if "size" in pax:
                size = int(pax["size"])
                padded = size + (-size % tarfile.BLOCKSIZE)
            ti.name, ti.linkname, ti.size = raw, linkname, size
            ti.pax_headers = pax
            for key, attr in (("uid", "uid"), ("gid", "gid"), ("mtime", "mtime")):
                if key in pax:
                    setattr(ti, attr, int(float(pax[key])) if key != "mtime"
                            else float(pax[key]))
            typeflag = REG if kind in (tarfile.AREGTYPE, tarfile.REGTYPE, tarfile.CONTTYPE) \
                else kind.decode("latin-1")
            if kind == tarfile.AREGTYPE and raw.endswith("/"):
                typeflag = DIR
            pax, longname, longlink = {}, None, None
            h = _tarsum(ti, raw, typeflag)
            offset = -1
            if typeflag == REG:
                offset = scan.offset
                scan.feed(size, h.update)
            else:
                scan.feed(size, None)
            try:
                scan.feed(padded - size, None)
            except EOFError:
                pass  # the docker CLI's `-f -` archives end without the last padding
            name = clean(raw)
            if typeflag == LNK:
                linkname = clean(linkname)
                if not linkname:
                    raise InvalidArgument(f"error processing tar file: hard link {raw} to "
                                          "the root")
            xattrs = {k[len("SCHILY.xattr."):]: v for k, v in ti.pax_headers.items()
                      if k.startswith("SCHILY.xattr.")}
            if name:
                _parents(entries, name, now)
            entries[name] = Entry(name, typeflag, stat.S_IMODE(ti.mode), ti.uid, ti.gid,
                                  size if typeflag == REG else 0, float(ti.mtime), linkname,
                                  offset, h.hexdigest(), ti.devmajor, ti.devminor, xattrs)
        scan.drain()
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
