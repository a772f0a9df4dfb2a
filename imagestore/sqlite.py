"""One SQLite file with its schema: the tables of the image store's metadata
(namespaces, images, leases, containers, content references), of its
content labels and of each snapshotter.

The file is in WAL mode, so that a crash leaves either the old or the new
state and never a half-written one.  One connection per :class:`Database`,
opened on first use and shared by the threads of the process under a lock:
pallet-containerd serves gRPC from a thread pool, and an SQLite connection
must not be used by two threads at once.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from typing import Iterator


class Database:
    """One SQLite file with its schema, opened lazily.

    ``schema`` is a script of ``CREATE TABLE IF NOT EXISTS`` statements run
    once when the file is first opened; then ``upgrade(connection)``, when
    given, brings tables of an older layout up to date (in a transaction of
    its own).  Use :meth:`transaction` for every change (``BEGIN IMMEDIATE``:
    writers queue on the database lock instead of failing half-way) and
    :meth:`read` for queries.
    """

    def __init__(self, path: str, schema: str, upgrade=None):
        self.path = path
        self._schema = schema
        self._upgrade = upgrade
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            os.makedirs(os.path.dirname(self.path), mode=0o711, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed transaction survives a power cut, which the
            # store promises (an image that was reported created stays)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(self._schema)
            if self._upgrade is not None:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._upgrade(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    conn.close()
                    raise
                conn.execute("COMMIT")
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any error."""
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection, for queries that change nothing."""
        with self._lock:
            yield self._connect()

    def close(self) -> None:
        """Close the connection (it is reopened on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
