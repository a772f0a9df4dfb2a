"""dockerd's init layer: a committed snapshot between an image's layers and a
container's own, holding the mount points the runtime needs (``/proc``,
``/sys``, ``/dev/pts``, ``/dev/shm``, ``/etc/hosts``, ``/etc/hostname``,
``/etc/resolv.conf``, ``/dev/console``, ``/.dockerenv``, ``/etc/mtab``).

The runtime would otherwise make them in the container's own layer, where
``docker commit`` and a build's ``RUN`` would find them as changes.  One init
snapshot is shared by every container of the same parent (named after it);
a build step adds its ``RUN --mount`` targets (``extra``), so that their
stubs stay out of the step's layer too.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat

from pallet.core import errors

#: path -> "dir", "file" or a symlink target, as dockerd's initlayer.Setup
INIT_PATHS = (("/dev/pts", "dir"), ("/dev/shm", "dir"), ("/proc", "dir"), ("/sys", "dir"),
              ("/.dockerenv", "file"), ("/etc/resolv.conf", "file"), ("/etc/hosts", "file"),
              ("/etc/hostname", "file"), ("/dev/console", "file"), ("/etc/mtab", "/proc/mounts"))


def init_key(parent: str, extra=()) -> str:
    """The init snapshot's name for ``parent`` (a chain ID, "" for none)."""
    base = f"{parent}-init" if parent else "init"
    if extra:
        h = hashlib.sha256(repr(sorted(extra)).encode()).hexdigest()[:16]
        base += "-" + h
    return base


def populate(root: str, extra=()) -> None:
    """Make the init layer's paths under ``root`` (the mounted snapshot)."""
    from pallet.linux.confined import ConfinedRoot, split_name

    confined = ConfinedRoot(root)
    try:
        for path, kind in (*INIT_PATHS, *extra):
            parts = split_name(path)
            if not parts:
                continue
            pfd = confined.walk(parts[:-1], create=True)
            try:
                name = parts[-1]
                try:
                    st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None:
                    is_dir = stat.S_ISDIR(st.st_mode)
                    keep = is_dir if kind == "dir" else \
                        (is_dir or stat.S_ISREG(st.st_mode)) if kind == "file" else is_dir
                    if keep:
                        continue
                    # what is there of another kind goes (dockerd unlinks it), so
                    # that the runtime mounts on a plain file or directory
                    os.unlink(name, dir_fd=pfd)
                if kind == "dir":
                    os.mkdir(name, 0o755, dir_fd=pfd)
                elif kind == "file":
                    os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o755, dir_fd=pfd))
                else:
                    os.symlink(kind, name, dir_fd=pfd)
            finally:
                os.close(pfd)
    finally:
        confined.close()


def as_mount(m):
    """A containerd Mount message (or a model) as the core model."""
    from pallet.core.models import Mount

    if isinstance(m, Mount):
        return m
    return Mount(m.type, m.source, tuple(m.options))


async def ensure(ctrd, parent: str, snapshotter: str, *, extra=(), tmp: str | None = None) -> str:
    """The init snapshot over ``parent`` (made if missing); its key."""
    import asyncio

    key = init_key(parent, extra)
    try:
        await ctrd.snapshot_stat(key, snapshotter=snapshotter)
        return key
    except errors.NotFound:
        pass
    work = f"{key}-{secrets.token_hex(4)}"
    mounts = await ctrd.snapshot_prepare(work, parent, snapshotter=snapshotter)
    committed = False
    try:
        def fill():
            from pallet.linux.mounts import temp_mount

            if tmp:
                os.makedirs(tmp, mode=0o700, exist_ok=True)
            with temp_mount([as_mount(m) for m in mounts], tmp) as root:
                populate(root, extra)
        await asyncio.to_thread(fill)
        try:
            await ctrd.snapshot_commit(key, work, snapshotter=snapshotter)
        except errors.AlreadyExists:
            pass  # made meanwhile by another container of the same image
        else:
            committed = True
    finally:
        if not committed:
            with contextlib.suppress(errors.PalletError):
                await ctrd.snapshot_remove(work, snapshotter=snapshotter)
    return key


async def prepare(ctrd, key: str, parent: str, snapshotter: str, *, labels=None, extra=(),
                  tmp: str | None = None) -> tuple[str, list]:
    """Prepare a container's snapshot ``key`` over the init layer of
    ``parent``: ``(init key, mounts)``; ``NotFound`` when ``parent`` itself
    is missing.

    The init snapshot is there for every container but an image's first:
    one call.  Otherwise it is made, and the container's snapshot prepared
    over it, under a lease of their own: containerd collects what nothing
    references (its GC runs when it likes), and until the container's
    snapshot exists neither the half-made init snapshot nor the committed one
    is referenced.  ``labels`` should hold ``containerd.io/gc.root`` or the
    container's own reference, which keeps both once the lease is gone.
    """
    init = init_key(parent, extra)
    try:
        mounts = await ctrd.snapshot_prepare(key, init, snapshotter=snapshotter, labels=labels)
        return init, mounts
    except errors.NotFound:
        pass
    async with ctrd.leased(expire=600) as leased:
        await ensure(leased, parent, snapshotter, extra=extra, tmp=tmp)
        mounts = await leased.snapshot_prepare(key, init, snapshotter=snapshotter, labels=labels)
    return init, mounts
