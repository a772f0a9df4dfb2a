"""What a build does through the chain, step by step (the engine's side of
the ``builder`` role).

A :class:`Session` is one build's hold on pallet-containerd: a lease keeps
the blobs and snapshots it makes until its images are named or cached, and
everything it prepares, mounts or creates is undone by :meth:`Session.close`
whatever happened (an error, a cancel, the client gone).

* file steps (COPY, ADD) write into a :meth:`Session.workspace`: a snapshot
  prepared on the parent's top layer, mounted in palletd; its changes are
  taken with containerd's Diff service and the snapshot is committed as the
  new top layer;
* RUN steps are containers of the engine (:meth:`Session.run`), created on
  the step's image over an init layer (which also holds the ``--mount``
  targets), started through pallet-containerd, a shim and the configured
  runtime; the changes of the container's own layer are the new layer,
  applied onto the parent's top layer with the Diff service;
* every step's image is written with :func:`.build_image.write_image`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import tempfile

import attrs

from pallet.core import errors
from pallet.core.models import Descriptor
from pallet.distribution.mediatypes import MT_OCI_LAYER
from pallet.distribution.platforms import chain_ids
from pallet.engine import initlayer
from pallet.engine.build_image import EMPTY_LAYER, BuildImage

log = logging.getLogger("pallet.engine.build")

#: label of a build's containers and snapshots (its build ID)
LABEL_BUILD = "org.pallet.build"
LEASE_PREFIX = "pallet-build-session-"


@attrs.frozen
class RunResult:
    """A finished RUN container: its ID and exit code."""

    container: str
    exit_code: int


class Workspace:
    """A writable snapshot on a parent image, mounted at :attr:`path`."""

    def __init__(self, session: "Session", key: str, parent: str, mounts, path: str):
        self.session = session
        self.key = key
        self.parent = parent
        self.mounts = mounts
        self.path = path


class Session:
    """One build's work in the chain (see the module doc)."""

    def __init__(self, engine, build_id: str | None = None):
        self.engine = engine
        self.images = engine.images
        self.kernel = engine.kernel
        self.id = build_id or secrets.token_hex(8)
        self.snapshotter = engine.images.snapshotter
        self.base_ctrd = engine.ctrd
        self.ctrd = engine.ctrd
        self.lease = ""
        self.tmp = os.path.join(engine.kernel.paths.exec_root, "builder", self.id)
        #: room on the data root's disk (an extracted context, downloads)
        self.data_tmp = os.path.join(engine.kernel.paths.data_root, "builder", "tmp", self.id)
        self._active: list[str] = []       # snapshot keys to remove at close
        self._mounts: list[str] = []       # directories to unmount at close
        self._containers: list[str] = []   # containers running or to remove at close
        self._views: dict[str, str] = {}   # chain -> mounted read-only view

    # --- lifetime -------------------------------------------------------------------
    async def open(self) -> "Session":
        from pallet.distribution.targets import LABEL_LEASE_OWNER, owner_label

        os.makedirs(self.tmp, mode=0o700, exist_ok=True)
        os.makedirs(self.data_tmp, mode=0o700, exist_ok=True)
        try:
            self.lease = await self.base_ctrd.lease_create(
                f"{LEASE_PREFIX}{self.id}", expire=86400,
                labels={LABEL_LEASE_OWNER: owner_label(), LABEL_BUILD: self.id})
            self.ctrd = self.base_ctrd.with_lease(self.lease)
        except errors.NotImplementedYet:
            pass
        return self

    async def close(self) -> None:
        """Undo what is left: containers (killed, removed), mounts, active
        snapshots, the lease (what nothing else holds goes with the next GC)."""
        for cid in reversed(self._containers):
            with contextlib.suppress(errors.PalletError):
                await self.engine.containers.remove(cid, force=True, volumes=True)
        self._containers.clear()
        await asyncio.to_thread(self._unmount_all)
        for key in reversed(self._active):
            with contextlib.suppress(errors.PalletError):
                await self.base_ctrd.snapshot_remove(key, snapshotter=self.snapshotter)
        self._active.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.data_tmp, ignore_errors=True)
        if self.lease:
            with contextlib.suppress(errors.PalletError):
                await self.base_ctrd.lease_delete(self.lease)
            self.lease = ""

    def _unmount_all(self) -> None:
        from pallet.linux.mounts import unmount_all

        for path in reversed(self._mounts):
            with contextlib.suppress(OSError):
                unmount_all(path, detach=True)
        self._mounts.clear()
        self._views.clear()

    def _key(self, what: str) -> str:
        return f"build-{self.id}-{what}-{secrets.token_hex(4)}"

    def _labels(self) -> dict:
        return {LABEL_BUILD: self.id}

    async def _mount(self, mounts) -> str:
        from pallet.linux.mounts import mount_all

        path = tempfile.mkdtemp(prefix="m-", dir=self.tmp)
        self._mounts.append(path)
        await asyncio.to_thread(mount_all, [initlayer.as_mount(m) for m in mounts], path)
        return path

    async def _unmount(self, path: str) -> None:
        from pallet.linux.mounts import unmount_all

        await asyncio.to_thread(unmount_all, path, True)
        if path in self._mounts:
            self._mounts.remove(path)
        with contextlib.suppress(OSError):
            os.rmdir(path)

    async def _drop(self, key: str) -> None:
        with contextlib.suppress(errors.PalletError):
            await self.ctrd.snapshot_remove(key, snapshotter=self.snapshotter)
        if key in self._active:
            self._active.remove(key)

    # --- reading images ---------------------------------------------------------------
    async def view(self, img: BuildImage) -> str:
        """A read-only view of an image's files, mounted for the session."""
        chain = img.chain
        if chain in self._views:
            return self._views[chain]
        if not chain:
            path = tempfile.mkdtemp(prefix="empty-", dir=self.tmp)
        else:
            key = self._key("view")
            self._active.append(key)
            mounts = await self.ctrd.snapshot_view(key, chain, snapshotter=self.snapshotter,
                                                   labels=self._labels())
            path = await self._mount(mounts)
        self._views[chain] = path
        return path

    async def overlay(self, lower: str) -> str:
        """``lower`` made writable for the session: an overlay whose changes
        are dropped (a ``RUN --mount=type=bind,rw``)."""
        from pallet.core.models import Mount

        base = tempfile.mkdtemp(prefix="ovl-", dir=self.data_tmp)
        upper, work = os.path.join(base, "upper"), os.path.join(base, "work")
        os.mkdir(upper)
        os.mkdir(work)
        return await self._mount([Mount("overlay", "overlay", (
            f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"))])

    # --- file steps ------------------------------------------------------------------------
    async def workspace(self, parent: BuildImage, *, empty: bool = False) -> Workspace:
        """A writable snapshot on ``parent`` (on nothing with ``empty``), mounted."""
        base = "" if empty else parent.chain
        key = self._key("fs")
        self._active.append(key)
        mounts = await self.ctrd.snapshot_prepare(key, base, snapshotter=self.snapshotter,
                                                  labels=self._labels())
        path = await self._mount(mounts)
        return Workspace(self, key, base, mounts, path)

    async def finish(self, ws: Workspace, parent: BuildImage) -> Descriptor | None:
        """Take a workspace's changes as a layer (None when nothing changed)
        and make it the layer on top of ``parent``."""
        await self._unmount(ws.path)
        lower = []
        view = ""
        if ws.parent:
            view = self._key("lower")
            self._active.append(view)
            lower = await self.ctrd.snapshot_view(view, ws.parent, snapshotter=self.snapshotter,
                                                  labels=self._labels())
        try:
            layer = await self.ctrd.diff_compare(lower, ws.mounts, media_type=MT_OCI_LAYER)
        finally:
            if view:
                await self._drop(view)
        layer = Descriptor(MT_OCI_LAYER, layer.digest, layer.size)
        if layer.digest == EMPTY_LAYER:
            await self._drop(ws.key)
            return None
        chain = chain_ids(parent.diff_ids + [layer.digest])[-1]
        if ws.parent == parent.chain:
            # the workspace is the new top layer as it is: commit it
            try:
                await self.ctrd.snapshot_commit(chain, ws.key, snapshotter=self.snapshotter)
                self._active.remove(ws.key)
            except errors.AlreadyExists:
                await self._drop(ws.key)
        else:
            await self._drop(ws.key)
            await self.apply(parent, layer)
        return layer

    async def apply(self, parent: BuildImage, layer: Descriptor, diff_id: str = "") -> str:
        """Apply ``layer`` (whose uncompressed digest is ``diff_id``, by default
        its own) on ``parent``'s top layer, unless done before; the new chain."""
        from pallet.containerd.target import ContainerdTarget

        diff_id = diff_id or layer.digest
        chain = chain_ids(parent.diff_ids + [diff_id])[-1]
        target = ContainerdTarget(self.ctrd, snapshotter=self.snapshotter)
        await target.unpack_layer(layer, diff_id, chain, parent.chain or None,
                                  self.snapshotter)
        return chain

    # --- RUN steps ---------------------------------------------------------------------------
    async def run(self, img: BuildImage, config: dict, host_config: dict, *, output,
                  stubs=(), keep_failed: bool = True, on_created=None) -> RunResult:
        """Run a step's container on ``img`` to its end, its output (bytes)
        to ``output`` (a coroutine function); it is kept for :meth:`container_layer`
        and :meth:`remove`.  ``on_created(id)`` is told its ID first."""
        body = dict(config)
        body["Image"] = img.id or "scratch"
        body["Entrypoint"] = []
        body["Labels"] = {**(body.get("Labels") or {}), LABEL_BUILD: self.id}
        body["HostConfig"] = dict(host_config)
        containers = self.engine.containers
        r = await containers.create(body, None, image=img.record(), parent=img.chain,
                                    mount_stubs=tuple(stubs))
        cid = r["Id"]
        self._containers.append(cid)
        if on_created is not None:
            on_created(cid)
        c = containers.get(cid)
        queue = containers.log_of(c).subscribe_raw()
        try:
            await containers.start(cid)
            exit_fut = await containers.wait(cid)
            while True:
                item = await queue.get()
                if item is None:
                    break
                await output(item[1])
            code = await exit_fut
        except BaseException:
            with contextlib.suppress(errors.PalletError):
                await containers.kill(cid, "KILL")
            raise
        finally:
            log_of = c.log
            if log_of is not None:
                log_of.unsubscribe_raw(queue)
        if code != 0 and keep_failed:
            self._containers.remove(cid)  # dockerd keeps a failed step's container
        return RunResult(cid, code)

    async def container_layer(self, cid: str, img: BuildImage) -> Descriptor | None:
        """The changes of a container's own layer (against the snapshot below
        it: its init layer), applied as the layer on top of ``img``; None
        when there are none."""
        sn = self.snapshotter
        below = (await self.ctrd.snapshot_stat(cid, snapshotter=sn)).parent
        lower, view = [], ""
        try:
            if below:
                view = self._key("below")
                self._active.append(view)
                lower = await self.ctrd.snapshot_view(view, below, snapshotter=sn,
                                                      labels=self._labels())
            upper = await self.ctrd.snapshot_mounts(cid, snapshotter=sn)
            layer = await self.ctrd.diff_compare(lower, upper, media_type=MT_OCI_LAYER)
        finally:
            if view:
                await self._drop(view)
        if layer.digest == EMPTY_LAYER:
            return None
        layer = Descriptor(MT_OCI_LAYER, layer.digest, layer.size)
        await self.apply(img, layer)
        return layer

    async def remove(self, cid: str) -> None:
        """Remove a step's container (and the anonymous volumes it made)."""
        await self.engine.containers.remove(cid, force=True, volumes=True)
        if cid in self._containers:
            self._containers.remove(cid)

    def keep(self, cid: str) -> None:
        """Leave a step's container behind (``rm=false``)."""
        if cid in self._containers:
            self._containers.remove(cid)


async def recover(engine) -> list[str]:
    """At palletd's start: remove what builds killed with palletd left (their
    containers, mounts and active snapshots); what was removed."""
    from pallet.linux.mounts import unmount_all

    removed = []
    for c in list(engine.containers.store.all()):
        if LABEL_BUILD in ((c.data.get("Config") or {}).get("Labels") or {}):
            with contextlib.suppress(errors.PalletError):
                await engine.containers.remove(c.id, force=True, volumes=True)
                removed.append(c.id)
    base = os.path.join(engine.kernel.paths.exec_root, "builder")
    if os.path.isdir(base):
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for p in sorted((p for p in points if p.startswith(base + "/")), key=len, reverse=True):
            with contextlib.suppress(OSError):
                unmount_all(p, detach=True)
        shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(os.path.join(engine.kernel.paths.data_root, "builder", "tmp"),
                  ignore_errors=True)
    sn = engine.images.snapshotter
    with contextlib.suppress(errors.PalletError):
        for info in await engine.ctrd.snapshots(snapshotter=sn):
            if info.name.startswith("build-") and LABEL_BUILD in info.labels:
                with contextlib.suppress(errors.PalletError):
                    await engine.ctrd.snapshot_remove(info.name, snapshotter=sn)
                    removed.append(info.name)
    with contextlib.suppress(errors.PalletError):
        for lease in await engine.ctrd.leases():
            if lease.id.startswith(LEASE_PREFIX):
                with contextlib.suppress(errors.PalletError):
                    await engine.ctrd.lease_delete(lease.id)
    return removed
