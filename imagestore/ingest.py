"""Uploads in progress: the content store's ingests and their writer.

``{root}/ingest/<sha256(ref)>/`` holds ``data`` (the bytes so far), ``ref``,
``startedat``, ``updatedat``, and the ``total`` and ``expected`` digest given
when it was opened.  Small files are written temp-then-rename; the data file
is only appended to, and its hash state rebuilt by re-reading it on resume
(as containerd does), so a crash at any point leaves a resumable ingest.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
from typing import Mapping

import attrs

from pallet.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Unavailable
from pallet.core.files import write_atomic

from pallet.imagestore.db import now_ns, ns_to_datetime
from pallet.distribution.digests import parse_digest

_CHUNK = 1 << 20


@attrs.frozen
class IngestStatus:
    """The state of one upload (containerd's content.Status)."""

    ref: str
    offset: int
    total: int
    expected: str | None
    started_at: object
    updated_at: object


def _read_small(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return default


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _status_of(path: str) -> IngestStatus:
    try:
        offset = os.stat(os.path.join(path, "data")).st_size
    except FileNotFoundError:
        offset = 0
    total = _read_small(os.path.join(path, "total"), "0") or "0"
    return IngestStatus(
        ref=_read_small(os.path.join(path, "ref")),
        offset=offset,
        total=int(total),
        expected=_read_small(os.path.join(path, "expected")) or None,
        started_at=ns_to_datetime(int(_read_small(os.path.join(path, "startedat"), "0") or 0)),
        updated_at=ns_to_datetime(int(_read_small(os.path.join(path, "updatedat"), "0") or 0)))


class ContentWriter:
    """One upload: append bytes, then :meth:`commit` them into a blob.

    Obtained from :meth:`ContentStore.writer`; use it as a context manager
    (closing without commit keeps the ingest for a later resume).
    """

    def __init__(self, store: ContentStore, ref: str, path: str,
                 expected: str | None, total: int | None):
        self._store = store
        self.ref = ref
        self._path = path
        self._closed = False
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fresh = not os.path.isdir(path)
        if not fresh:
            old_expected = _read_small(os.path.join(path, "expected")) or None
            if expected is not None and old_expected not in (None, expected):
                shutil.rmtree(path)
                fresh = True
        if fresh:
            os.makedirs(path, mode=0o700)
            write_atomic(os.path.join(path, "ref"), ref, fsync=False)
            write_atomic(os.path.join(path, "startedat"), str(now_ns()), fsync=False)
        if expected is not None:
            write_atomic(os.path.join(path, "expected"), expected, fsync=False)
        if total is not None:
            write_atomic(os.path.join(path, "total"), str(total), fsync=False)
        self._fd = os.open(os.path.join(path, "data"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # another process resuming the same ref: refuse rather than interleave
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise Unavailable(f"ref {ref} locked: unavailable") from None
            raise
        # resuming: the hash state is not kept on disk, so re-read what is there
        self._hash = hashlib.sha256()
        self.offset = 0
        while True:
            data = os.pread(self._fd, _CHUNK, self.offset)
            if not data:
                break
            self._hash.update(data)
            self.offset += len(data)
        self.expected = expected or (_read_small(os.path.join(path, "expected")) or None)
        self.total = total if total is not None else int(
            _read_small(os.path.join(path, "total"), "0") or 0)

    def __enter__(self) -> "ContentWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition(f"ingest {self.ref}: writer closed")

    def write(self, data: bytes) -> int:
        """Append ``data`` at the current offset; return its length."""
        self._check_open()
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, self.offset)
            self._hash.update(view[:n])
            self.offset += n
            view = view[n:]
        write_atomic(os.path.join(self._path, "updatedat"), str(now_ns()), fsync=False)
        return len(data)

    def write_at(self, data: bytes, offset: int) -> int:
        """Write at ``offset``, which must be the current offset (containerd's
        Write with an offset; 0 on a non-empty ingest restarts it)."""
        self._check_open()
        if offset == 0 and self.offset:
            self.truncate(0)
        elif offset != self.offset:
            raise FailedPrecondition(
                f"ingest {self.ref}: write at offset {offset}, current offset is {self.offset}")
        return self.write(data)

    def truncate(self, size: int) -> None:
        """Cut the upload back to ``size`` bytes (only 0 is supported, as in containerd)."""
        self._check_open()
        if size != 0:
            raise InvalidArgument(f"ingest {self.ref}: truncate to {size} is not supported")
        os.ftruncate(self._fd, 0)
        self._hash = hashlib.sha256()
        self.offset = 0

    def digest(self) -> str:
        """The digest of the bytes written so far."""
        return "sha256:" + self._hash.hexdigest()

    def status(self) -> IngestStatus:
        """This upload's status."""
        return _status_of(self._path)

    def commit(self, size: int = 0, expected: str | None = None,
               labels: Mapping[str, str] | None = None) -> str:
        """Check and publish the blob; return its digest.

        ``size`` (0: unchecked) and ``expected`` (default: the digest given to
        ``writer()``) must match what was written, or InvalidArgument is raised
        and nothing is stored (the ingest stays, to be truncated or aborted).
        If the blob exists already, the ingest is dropped and AlreadyExists
        raised, as containerd does.
        """
        self._check_open()
        expected = expected or self.expected
        if expected is not None:
            parse_digest(expected)
        if size and size != self.offset:
            raise InvalidArgument(
                f"commit {self.ref}: unexpected size {self.offset}, expected {size}")
        digest = self.digest()
        if expected is not None and expected != digest:
            raise InvalidArgument(
                f"commit {self.ref}: unexpected digest {digest}, expected {expected}")
        os.fsync(self._fd)
        target = self._store.blob_path(digest)
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if os.path.exists(target):
            self._drop()
            raise AlreadyExists(f"content {digest}: already exists")
        os.fchmod(self._fd, 0o444)
        os.rename(os.path.join(self._path, "data"), target)
        _fsync_dir(os.path.dirname(target))
        if labels is not None:
            self._store._set_labels(digest, labels)
        else:
            self._store._set_labels(digest, {})
        self._drop()
        return digest

    def _drop(self) -> None:
        shutil.rmtree(self._path, ignore_errors=True)
        self.close()

    def close(self) -> None:
        """Release the ref; an uncommitted ingest stays on disk for a resume."""
        if not self._closed:
            self._closed = True
            os.close(self._fd)
            self._store._unlock(self.ref)
