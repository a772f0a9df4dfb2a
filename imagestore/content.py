"""containerd's content store: blobs addressed by digest.

Layout (the one containerd uses, so its tools can read it)::

    {root}/blobs/sha256/<hex>          committed blobs, read-only
    {root}/ingest/<sha256(ref)>/data   an upload in progress, resumable
    {root}/ingest/<sha256(ref)>/ref    the ref it was opened with (and
                                       startedat, updatedat, total, expected)
    {root}/metadata.db                 blob labels (SQLite, WAL)

An ingest directory is named after the hash of its ref because refs are free
text (``default/1/layer-sha256:...``).  A blob becomes visible only when
:meth:`ContentWriter.commit` has checked its size and digest and renamed it
into place, so an interrupted upload never leaves a blob behind, only an
ingest that :meth:`ContentStore.abort` (or GC) removes.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
import uuid
from typing import BinaryIO, Iterator, Mapping, Sequence

import attrs

from pallet.core.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from pallet.core.models import Descriptor

from pallet.imagestore.db import (
    Database,
    apply_label_fieldpaths,
    dump_labels,
    load_labels,
    now_ns,
    ns_to_datetime)
from pallet.distribution.digests import (
    _HEX,
    parse_digest,
    sha256_digest)  # noqa: F401 (part of this API)
from pallet.imagestore.ingest import ContentWriter, IngestStatus, _status_of

_CHUNK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"""


@attrs.frozen
class ContentInfo:
    """What the store knows about one committed blob (containerd's content.Info)."""

    digest: str
    size: int
    created_at: object  # datetime.datetime (UTC)
    updated_at: object
    labels: Mapping[str, str] = attrs.field(factory=dict, eq=False)


class ContentStore:
    """Blobs by digest under ``root`` (see the module docstring for the layout).

    Opening is free: directories and the labels database are created on the
    first write.  Safe to use from several threads; two writers on the same
    ref are refused (``Unavailable``, containerd's "ref locked").
    """

    def __init__(self, root: str):
        self.root = root
        self._db = Database(os.path.join(root, "metadata.db"), _SCHEMA)
        self._locks: set[str] = set()
        self._locks_guard = threading.Lock()

    def close(self) -> None:
        """Close the labels database (reopened on next use)."""
        self._db.close()

    # --- paths -----------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        """Where the blob ``digest`` lives (whether or not it exists)."""
        return os.path.join(self.root, "blobs", "sha256", parse_digest(digest))

    def _ingest_dir(self, ref: str) -> str:
        if not ref:
            raise InvalidArgument("ingest ref must not be empty")
        return os.path.join(self.root, "ingest", hashlib.sha256(ref.encode()).hexdigest())

    # --- reading ---------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        """Whether the blob is committed."""
        return os.path.isfile(self.blob_path(digest))

    def info(self, digest: str) -> ContentInfo:
        """The size, times and labels of a committed blob (NotFound if absent)."""
        path = self.blob_path(digest)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None
        with self._db.read() as conn:
            row = conn.execute("SELECT * FROM blobs WHERE digest=?", (digest,)).fetchone()
        if row is None:
            created = updated = st.st_mtime_ns
            labels = {}
        else:
            created, updated, labels = row["created_at"], row["updated_at"], \
                load_labels(row["labels"])
        return ContentInfo(digest, st.st_size, ns_to_datetime(created), ns_to_datetime(updated),
                           labels)

    def open(self, digest: str) -> BinaryIO:
        """The committed blob as a binary file object, to be closed by the caller."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def read(self, digest: str, offset: int = 0, size: int = -1) -> bytes:
        """``size`` bytes of the blob from ``offset`` (all of the rest if size < 0)."""
        if offset < 0:
            raise InvalidArgument(f"read content {digest}: negative offset {offset}")
        with self.open(digest) as f:
            f.seek(offset)
            return f.read(size if size >= 0 else -1)

    def read_chunks(self, digest: str, offset: int = 0, size: int = -1,
                    chunk_size: int = _CHUNK) -> Iterator[bytes]:
        """The same bytes as :meth:`read`, in chunks (for streaming replies).

        The blob is opened before the first chunk is asked for, so a missing
        blob raises NotFound at the call, not at the first ``next()``.
        """
        f = self.open(digest)
        return self._chunks(f, offset, size, chunk_size)

    @staticmethod
    def _chunks(f: BinaryIO, offset: int, size: int, chunk_size: int) -> Iterator[bytes]:
        with f:
            f.seek(offset)
            left = size if size >= 0 else None
            while left is None or left > 0:
                data = f.read(chunk_size if left is None else min(chunk_size, left))
                if not data:
                    return
                if left is not None:
                    left -= len(data)
                yield data

    def list(self) -> list[ContentInfo]:
        """Every committed blob, sorted by digest."""
        top = os.path.join(self.root, "blobs", "sha256")
        try:
            names = sorted(n for n in os.listdir(top) if _HEX.match(n))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            try:
                out.append(self.info("sha256:" + name))
            except NotFound:  # deleted meanwhile
                continue
        return out

    # --- changing --------------------------------------------------------------

    def delete(self, digest: str) -> None:
        """Remove a committed blob and its labels (NotFound if absent)."""
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM blobs WHERE digest=?", (digest,))

    def update(self, digest: str, labels: Mapping[str, str],
               fieldpaths: Sequence[str] | None = None) -> ContentInfo:
        """Change a blob's labels as containerd's Content.Update does.

        Without ``fieldpaths`` the labels are replaced; with them, only the
        named ones change: ``labels`` replaces all, ``labels.KEY`` sets or (when
        absent from ``labels``) removes one.
        """
        info = self.info(digest)
        new = apply_label_fieldpaths(info.labels, labels, fieldpaths)
        self._set_labels(digest, new)
        return self.info(digest)

    def _set_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        now = now_ns()
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO blobs(digest, labels, created_at, updated_at) VALUES(?,?,?,?) "
                "ON CONFLICT(digest) DO UPDATE SET labels=excluded.labels, "
                "updated_at=excluded.updated_at",
                (digest, dump_labels(labels), now, now))

    # --- ingests ---------------------------------------------------------------

    def writer(self, ref: str, expected_digest: str | None = None,
               expected_size: int | None = None) -> "ContentWriter":
        """Open (or resume) the upload ``ref``.

        An existing ingest with the same ref is resumed at its current offset
        (``writer.offset``); a different ``expected_digest`` than the one it
        was started with restarts it from zero.  If ``expected_digest`` is
        already committed, AlreadyExists is raised (as containerd does), so a
        client can skip the upload.
        """
        if expected_digest is not None:
            parse_digest(expected_digest)
            if self.exists(expected_digest):
                raise AlreadyExists(f"content {expected_digest}: already exists")
        if expected_size is not None and expected_size < 0:
            raise InvalidArgument(f"ingest {ref}: negative expected size")
        path = self._ingest_dir(ref)
        with self._locks_guard:
            if ref in self._locks:
                raise Unavailable(f"ref {ref} locked: unavailable")
            self._locks.add(ref)
        try:
            return ContentWriter(self, ref, path, expected_digest, expected_size)
        except BaseException:
            self._unlock(ref)
            raise

    def _unlock(self, ref: str) -> None:
        with self._locks_guard:
            self._locks.discard(ref)

    def status(self, ref: str) -> IngestStatus:
        """The status of the upload ``ref`` (NotFound if there is none)."""
        path = self._ingest_dir(ref)
        if not os.path.isdir(path):
            raise NotFound(f"ingest {ref}: not found")
        return _status_of(path)

    def ingests(self) -> list[IngestStatus]:
        """Every upload in progress."""
        top = os.path.join(self.root, "ingest")
        try:
            names = sorted(os.listdir(top))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            path = os.path.join(top, name)
            if os.path.isfile(os.path.join(path, "ref")):
                out.append(_status_of(path))
        return out

    def abort(self, ref: str) -> None:
        """Drop the upload ``ref`` and its data (NotFound if there is none)."""
        path = self._ingest_dir(ref)
        with self._locks_guard:
            if ref in self._locks:
                raise Unavailable(f"ref {ref} locked: unavailable")
        if not os.path.isdir(path):
            raise NotFound(f"ingest {ref}: not found")
        shutil.rmtree(path, ignore_errors=True)

    # --- conveniences ------------------------------------------------------------

    def write_blob(self, src: BinaryIO | bytes, expected_digest: str | None = None,
                   expected_size: int | None = None, labels: Mapping[str, str] | None = None,
                   media_type: str = "application/octet-stream") -> Descriptor:
        """Store a whole blob from bytes or a file object; return its descriptor.

        An already stored blob is not written again (its labels are merged).
        """
        if isinstance(src, (bytes, bytearray, memoryview)):
            src = io.BytesIO(bytes(src))
        if expected_digest is not None and self.exists(expected_digest):
            info = self.info(expected_digest)
            if labels:
                self._set_labels(expected_digest, {**info.labels, **labels})
            return Descriptor(media_type, expected_digest, info.size)
        ref = f"write-blob-{uuid.uuid4().hex}"
        with self.writer(ref, expected_digest, expected_size) as w:
            while True:
                data = src.read(_CHUNK)
                if not data:
                    break
                w.write(data)
            size = w.offset
            try:
                digest = w.commit(expected_size or 0, expected_digest, labels)
            except AlreadyExists:
                digest = w.digest()
                if labels:
                    self._set_labels(digest, {**self.info(digest).labels, **labels})
        return Descriptor(media_type, digest, size)


