"""The container service: docker's container operations over containerd.

A container lives in three places: its ``config.v2.json`` (palletd's record,
the source of truth for docker's view), a containerd container of the same id
(spec, and the rootfs snapshot whose key is the id) created with it, and while
it runs a containerd task whose stdio are FIFOs palletd reads into its log.
Handlers call one method here each.

One operation per module: ``container_create`` (create), ``container_start``
(start, exit, restart policies), ``container_ops`` (stop, kill, pause, rename,
update, wait...), ``container_remove`` (remove, prune); this module holds what
they share, the start-up of palletd (restore) and the listing.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re

from pallet.core import errors
from pallet.engine import events as eventsmod
from pallet.engine import health as healthmod
from pallet.engine import links as linksmod
from pallet.engine import networking
from pallet.engine.container_create import CreateOps
from pallet.engine.container_ops import ContainerOps
from pallet.engine.container_remove import RemoveOps
from pallet.engine.container_start import StartOps
from pallet.engine.fifos import ContainerIO
from pallet.engine.logs import ContainerLog
from pallet.engine.mounts import inspect_mounts
from pallet.engine.restart import should_restart
from pallet.engine.state import Container, ContainerStore
from pallet.engine.task_events import TaskEvents
from pallet.linux.cgroupfs import directories

log = logging.getLogger("pallet.api_rest.containers")

_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
#: keys of config.v2.json that are palletd's own bookkeeping, not docker's inspect
PRIVATE_KEYS = ("CreatedUnix", "ImageName", "RootfsParent", "MountPoints",
                "HasBeenStartedBefore", "HasBeenManuallyStopped")


class ContainerService(CreateOps, StartOps, ContainerOps, RemoveOps):
    def __init__(self, kernel, ctrd, images, *, runtime: str, snapshotter: str = "overlayfs",
                 cgroup_parent: str = "/pallet", volumes=None, live_restore: bool = False):
        self.kernel = kernel
        self.paths = kernel.paths
        self.ctrd = ctrd
        self.images = images
        self.volumes = volumes
        self.runtime = runtime
        self.snapshotter = snapshotter
        self.cgroup_parent = cgroup_parent
        self.live_restore = live_restore
        self.shutting_down = False
        self.store = ContainerStore(self.paths)
        self.events = eventsmod.bus_of(kernel)
        self.task_events = TaskEvents(ctrd, on_oom=self._oom)
        self._background: set[asyncio.Task] = set()
        self.health = None         # health.HealthMonitor, set by the engine
        images.in_use = self._users_of
        if volumes is not None:
            volumes.users = self.volume_users

    # --- helpers ---------------------------------------------------------------
    def _users_of(self, image_id: str) -> list[str]:
        return [c.id for c in self.store.all() if c.data.get("Image") == image_id]

    def volume_users(self, name: str) -> list[str]:
        """Ids of the containers whose mount points name volume ``name``."""
        return [c.id for c in self.store.all()
                if any(p.get("Type") == "volume" and p.get("Name") == name
                       for p in c.data.get("MountPoints") or ())]

    def _spawn(self, coro) -> asyncio.Task:
        """Run work to completion whatever happens to the request that caused it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def get(self, ref: str) -> Container:
        return self.store.get(ref)

    def _lock(self, c: Container) -> asyncio.Lock:
        if c.op_lock is None:
            c.op_lock = asyncio.Lock()
        return c.op_lock

    def log_of(self, c: Container) -> ContainerLog:
        """The live log of a container, made on demand so that attach-before-start works."""
        if c.log is None:
            c.log = ContainerLog.for_config(c.log_path, c.data["HostConfig"].get("LogConfig"),
                                            container=c)
        return c.log

    def emit(self, c: Container, action: str, **attrs) -> None:
        """A container event (``docker events``)."""
        self.events.publish("container", action, c.id, eventsmod.container_attributes(c, **attrs))

    @staticmethod
    async def _quiet(coro) -> None:
        try:
            await coro
        except errors.PalletError:
            pass

    def counts(self) -> dict:
        out = {"running": 0, "paused": 0, "stopped": 0}
        for c in self.store.all():
            st = c.state.get("Status")
            if st in ("running", "restarting"):
                out["running"] += 1
            elif st == "paused":
                out["paused"] += 1
            else:
                out["stopped"] += 1
        return out

    # --- start-up ----------------------------------------------------------------
    async def restore(self) -> None:
        """Load every container; reconnect to the tasks still running (or, without
        live-restore, stop them as dockerd does); then bring back the containers
        whose restart policy says so."""
        await self.task_events.start()  # first: no exit may pass unseen
        self.store.load()
        if self.volumes is not None:
            self.volumes.load()
        stops = []
        for c in self.store.all():
            if c.state.get("Status") in ("running", "paused", "restarting"):
                try:
                    alive = await self._reattach(c)
                except errors.Unavailable as e:
                    # containerd is not there yet: the container keeps its state
                    log.warning("container %s: containerd unavailable (%s); will reattach",
                                c.id[:12], e)
                    self._spawn(self._reattach_later(c))
                    continue
                except Exception as e:  # noqa: BLE001 — a bad record must not stop palletd
                    log.warning("container %s: cannot reattach: %s", c.id[:12], e)
                    c.set_exited(c.state.get("ExitCode") or 255, str(e))
                    c.save()
                    continue
                if alive and not self.live_restore:
                    stops.append(self._stop_for_shutdown(c))
            elif c.state.get("Status") == "removing" or c.data["HostConfig"].get("AutoRemove") \
                    and c.state.get("Status") == "exited":
                self._spawn(self._auto_remove(c))
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)
        for c in self.store.all():
            if c.running or c.state.get("Status") not in ("exited", "created") or \
                    not c.data.get("HasBeenStartedBefore"):
                continue
            if should_restart(c.data["HostConfig"].get("RestartPolicy"),
                              c.state.get("ExitCode", 0),
                              bool(c.data.get("HasBeenManuallyStopped")), 0):
                self._spawn(self._start_at_boot(c))

    async def _start_at_boot(self, c: Container) -> None:
        try:
            await self._start(c)
        except errors.PalletError as e:
            log.warning("container %s: restart at daemon start: %s", c.id[:12], e)

    async def _reattach_later(self, c: Container) -> None:
        delay = 0.5
        while c.id in self.store.by_id and c.running and c.wait_task is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            try:
                if await self._reattach(c) and not self.live_restore:
                    await self._stop_for_shutdown(c)
                return
            except errors.Unavailable:
                continue
            except errors.PalletError as e:
                log.warning("container %s: cannot reattach: %s", c.id[:12], e)
                return

    async def _reattach(self, c: Container) -> bool:
        """Take a running task back (log, wait); False when it is gone."""
        try:
            proc = await self.ctrd.task_get(c.id)
        except errors.NotFound:
            proc = None
        if proc is None or proc.status not in (2, 4, 5):  # RUNNING, PAUSED, PAUSING
            code = proc.exit_status if proc is not None and proc.status == 3 else 255
            try:
                await self.ctrd.task_delete(c.id)
            except errors.NotFound:
                pass
            c.task_may_exist = False
            c.set_exited(code)
            c.save()
            self.emit(c, "die", exitCode=code)
            if c.data["HostConfig"].get("AutoRemove"):
                self._spawn(self._auto_remove(c))
            return False
        exit_status = self.task_events.expect(c.id, proc.pid)  # before any other await
        io = ContainerIO(self.paths.fifo_dir(c.id), stdin=bool(c.data["Config"].get("OpenStdin")),
                         stderr=not c.tty)
        io.open()
        clog = self.log_of(c)
        clog.open()
        io.start_reading(self._sink(c, clog))
        c.io = io
        c.set_paused(proc.status == 4)  # PAUSED
        c.state["Pid"] = proc.pid
        c.cgroups = _cgroups_of(proc.pid)
        await self._mount_volumes(c, remount=True)
        c.wait_task = self._spawn(self._watch(c, exit_status))
        if self.health is not None:  # health checks go on where they were
            self.health.resume(c)
        log.info("container %s: reattached to running task (pid %s)", c.id[:12], proc.pid)
        return True

    async def _stop_for_shutdown(self, c: Container) -> None:
        """Stop without marking the container stopped by hand (its restart policy
        applies at the next start, as with dockerd)."""
        try:
            await self._stop(c, None, None, manual=False)
        except errors.PalletError as e:
            log.warning("container %s: stop: %s", c.id[:12], e)

    # --- listing -------------------------------------------------------------------
    async def list(self, *, all: bool = False, limit: int | None = None,
                   filters: dict | None = None, size: bool = False) -> list[dict]:
        filters = filters or {}
        known = {"status", "name", "id", "label", "exited", "ancestor", "network", "before",
                 "since", "volume", "is-task", "health", "publish", "expose"}
        for key, values in filters.items():
            if key not in known:
                raise errors.InvalidArgument(f"invalid filter '{key}'")
            if key == "status":
                for v in values:
                    if v not in _STATUSES:
                        raise errors.InvalidArgument(f"invalid filter 'status={v}'")
            if key == "health":
                healthmod.check_filter(values)
            if key == "exited":
                for v in values:
                    if not v.lstrip("-").isdigit():
                        raise errors.InvalidArgument(f"invalid filter 'exited={v}'")
            if key == "name":
                for v in values:
                    try:
                        re.compile(v)
                    except re.error:
                        raise errors.InvalidArgument(f"invalid filter 'name={v}'") from None
        ancestors = await self._ancestor_ids(filters.get("ancestor") or [])
        bounds = {}
        for key in ("before", "since"):
            for v in filters.get(key) or ():
                bounds[key] = self.get(v).data.get("Created", "")
        out = []
        link_names = linksmod.names_by_child(self.store)
        containers = sorted(self.store.all(), key=lambda c: c.data.get("Created", ""),
                            reverse=True)
        for c in containers:
            st = c.state.get("Status", "created")
            if not all and not filters.get("status") and not filters.get("exited") and \
                    st not in ("running", "paused", "restarting"):
                continue
            if "before" in bounds and not c.data.get("Created", "") < bounds["before"]:
                continue
            if "since" in bounds and not c.data.get("Created", "") > bounds["since"]:
                continue
            entry = networking.summary(self.kernel, c, c.summary())
            if c.id in link_names:
                entry["Names"] += link_names[c.id]
            if not _matches(c, filters, ancestors, entry):
                continue
            if size:
                entry.update(await self.sizes(c))
            out.append(entry)
            if limit and limit > 0 and len(out) >= limit:
                break
        return out

    async def _ancestor_ids(self, refs: list[str]) -> set[str]:
        ids = set()
        for ref in refs:
            try:
                ids.add((await self.images.get(ref)).id)
            except errors.PalletError:
                ids.add(ref)
        return ids

    async def remove_link(self, ref: str) -> None:
        """``docker rm --link /PARENT/ALIAS``."""
        c = linksmod.remove(self.store, ref)
        async with self._lock(c):
            c.save()

    async def sizes(self, c: Container) -> dict:
        """``SizeRw`` (the container's layer) and ``SizeRootFs`` (with the image's)."""
        rw = 0
        try:
            rw = int((await self.ctrd.snapshot_usage(c.id, snapshotter=self.snapshotter))
                     .get("size", 0))
        except (errors.PalletError, AttributeError, TypeError, ValueError):
            pass
        base = 0
        parent = c.data.get("RootfsParent") or ""
        for _ in range(128):
            if not parent:
                break
            try:
                base += int((await self.ctrd.snapshot_usage(parent, snapshotter=self.snapshotter))
                            .get("size", 0))
                parent = (await self.ctrd.snapshot_stat(parent, snapshotter=self.snapshotter)) \
                    .parent
            except (errors.PalletError, AttributeError, TypeError, ValueError):
                break
        return {"SizeRw": rw, "SizeRootFs": rw + base}

    def inspect(self, ref: str) -> dict:
        c = self.get(ref)
        data = {k: v for k, v in c.data.items() if k not in PRIVATE_KEYS}
        data["State"] = dict(data["State"])
        data["Mounts"] = inspect_mounts(c.data.get("MountPoints") or [])
        data["NetworkSettings"] = networking.settings(self.kernel, c)
        data["ExecIDs"] = [e for e in getattr(self, "exec_ids", lambda c: [])(c)] or None
        return data

    async def shutdown(self) -> None:
        """palletd stops.  With live-restore the containers stay (their shims keep
        them) and palletd only stops reading; without, they are stopped first, as
        dockerd does."""
        self.shutting_down = True
        if self.health is not None:
            self.health.close()
        for c in self.store.all():
            if c.restart_task is not None:
                c.restart_task.cancel()
        if not self.live_restore:
            running = [c for c in self.store.all() if c.running]
            if running:
                await asyncio.gather(*(self._stop_for_shutdown(c) for c in running),
                                     return_exceptions=True)
        await self.task_events.close()
        for c in self.store.all():
            if c.wait_task is not None:
                c.wait_task.cancel()
            if c.io is not None:
                c.io.close(remove=False)
                c.io = None
            if c.log is not None:
                c.log.close()
                c.log = None


def _cgroups_of(pid: int) -> dict[str, str]:
    """controller -> directory of a process's cgroups (v1, or ``unified`` for v2)."""
    try:
        out = directories(pid)
    except OSError:
        return {}
    if "" in out:
        out["unified"] = out.pop("")
    return out


def _matches(c: Container, filters: dict, ancestors: set[str], entry: dict) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        if key == "status" and c.state.get("Status") not in values:
            return False
        if key == "name" and not any(re.search(v.lstrip("/") if v.startswith("/") else v,
                                               c.name) for v in values):
            return False
        if key == "id" and not any(c.id.startswith(v) for v in values):
            return False
        if key == "health" and healthmod.status_of(c.state) not in values:
            return False
        if key == "exited":
            if c.state.get("Status") != "exited" or str(c.state.get("ExitCode")) not in values:
                return False
        if key == "ancestor" and not (c.data.get("Image") in ancestors or any(
                v in (c.data["Config"].get("Image"),) for v in values)):
            return False
        if key == "label":
            labels = c.data["Config"].get("Labels") or {}
            for v in values:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    return False
        if key == "network":
            nets = (entry.get("NetworkSettings") or {}).get("Networks") or {}
            ids = {n.get("NetworkID") for n in nets.values() if isinstance(n, dict)}
            mode = c.data["HostConfig"].get("NetworkMode") or ""
            if not any(v in nets or v in ids or v == mode or
                       any(i and i.startswith(v) for i in ids) for v in values):
                return False
        if key == "volume":
            points = c.data.get("MountPoints") or []
            if not any(p.get("Name") == v or p.get("Destination") == v or p.get("Source") == v
                       for p in points for v in values):
                return False
        if key == "is-task" and any(v.lower() in ("true", "1") for v in values):
            return False
    return True
