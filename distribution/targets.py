"""Where pull writes and push reads: one small async interface, two backends.

containerd 1.6 pulls on the client side: ``ctr`` and dockerd fetch blobs
into the Content service and then unpack them through the Snapshots and Diff
services.  pallet's pull and push (:mod:`.pull`, :mod:`.push`) are written
against :class:`ContentTarget`, so that the same code runs

* next to the store, in the process that owns it (:class:`LocalTarget`
  over an :class:`~.store.ImageStore` and a containerd namespace; blocking
  work runs in threads), and
* anywhere else through containerd's gRPC API (:class:`ContainerdTarget`
  over :class:`pallet.containerd.client.Containerd`: palletd, pallet-ctr).
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import AsyncIterator, Awaitable, Callable, Mapping, Protocol

from pallet.core.errors import (InvalidArgument)
from pallet.core.models import Descriptor

#: the process that holds a lease of the local store, ``<pid>:<start time>``:
#: GC drops the lease once that process is gone (a daemon killed mid-pull)
LABEL_LEASE_OWNER = "pallet.io/lease.owner"
#: containerd's label naming where a blob came from (used to mount on push)
LABEL_DISTRIBUTION_SOURCE = "containerd.io/distribution.source."

#: how long a writer waits for a blob that another process is writing
LOCKED_WAIT = 600.0


class BlobSource(Protocol):
    """An open download (see :class:`.registry.BlobStream`)."""

    offset: int

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


OpenStream = Callable[[int], Awaitable[BlobSource]]
OnBytes = Callable[[int], Awaitable[None]]


class ContentTarget(Protocol):
    """What pull and push need of a content store and a snapshotter."""

    async def exists(self, digest: str) -> bool: ...

    async def read(self, digest: str) -> bytes: ...

    def read_iter(self, digest: str) -> AsyncIterator[bytes]: ...

    async def labels(self, digest: str) -> dict[str, str]: ...

    async def set_labels(self, digest: str, labels: Mapping[str, str]) -> None: ...

    async def write(self, ref: str, desc: Descriptor, open_stream: OpenStream,
                    labels: Mapping[str, str] | None = None,
                    on_bytes: OnBytes | None = None) -> bool: ...

    async def get_image(self, name: str) -> Descriptor | None: ...

    async def put_image(self, name: str, target: Descriptor,
                        labels: Mapping[str, str] | None = None) -> None: ...

    async def unpack_layer(self, layer: Descriptor, diff_id: str, chain_id: str,
                           parent: str | None, snapshotter: str | None) -> bool: ...

    async def snapshot_exists(self, chain_id: str, snapshotter: str | None) -> bool: ...

    def lease(self) -> contextlib.AbstractAsyncContextManager: ...


def owner_label() -> str:
    """This process as a lease owner: pid and start time (clock ticks since
    boot, field 22 of /proc/PID/stat), so that a reused pid does not count."""
    return f"{os.getpid()}:{process_start(os.getpid())}"


def process_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return ""
    # the command name may hold spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2:].split()
    return fields[19].decode() if len(fields) > 19 else ""


def owner_alive(value: str) -> bool:
    """Whether the process named by a :data:`LABEL_LEASE_OWNER` value still runs."""
    pid, _, start = value.partition(":")
    try:
        pid_n = int(pid)
    except ValueError:
        return False
    current = process_start(pid_n)
    return bool(current) and current == start


def expire_label(seconds: float) -> str:
    """The value of containerd's ``gc.expire`` label ``seconds`` from now (RFC 3339 UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


def _too_big(desc: Descriptor, got: int) -> InvalidArgument:
    return InvalidArgument(f"blob {desc.digest}: registry sent more than the {desc.size} "
                           f"bytes the manifest announces ({got})")


def mismatch_error(desc: Descriptor, detail: str) -> InvalidArgument:
    return InvalidArgument(f"filesystem layer verification failed for digest {desc.digest}: "
                           f"{detail}")
