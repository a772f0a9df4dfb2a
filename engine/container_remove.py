"""Removing containers: ``DELETE /containers/{id}`` (``force``, ``v``) and
``POST /containers/prune``."""
from __future__ import annotations

import asyncio
import logging
import shutil
import signal as _signal

from pallet.core import errors
from pallet.engine import networking
from pallet.engine.state import Container
from pallet.units.duration import parse_go_duration

log = logging.getLogger("pallet.api_rest.containers")


class RemoveOps:
    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.running and not force:
            what = "paused" if c.paused else "running"
            raise errors.Conflict(f"You cannot remove a {what} container {c.id}. Stop the "
                                  "container before attempting removal or force remove")
        if c.state.get("Status") == "restarting" and not force:
            raise errors.Conflict(f"You cannot remove a restarting container {c.id}. Stop the "
                                  "container before attempting removal or force remove")
        await asyncio.shield(self._spawn(self._remove(c, force=force, volumes=volumes)))

    async def _remove(self, c: Container, *, force: bool, volumes: bool = False) -> None:
        if c.removing:
            return
        if c.restart_task is not None:
            c.restart_task.cancel()
            c.restart_task = None
        if c.running:
            if not force:
                raise errors.Conflict(f"You cannot remove a running container {c.id}")
            fut = self._exit_future(c)
            c.exit_on_next = True
            await self._quiet(self.ctrd.task_kill(c.id, _signal.SIGKILL, all=True))
            if c.paused:
                await self._quiet(self.ctrd.task_resume(c.id))
            try:
                await asyncio.wait_for(fut, 30)
            except asyncio.TimeoutError:
                raise errors.PalletError(f"could not kill running container {c.id}, cannot "
                                         "remove") from None
            if c.id not in self.store.by_id:
                return  # auto-removed meanwhile
        if c.removing:
            return
        c.removing = True
        c.state["Status"] = "removing"
        try:
            if c.task_may_exist:  # the exit deleted it otherwise
                await self._quiet(self.ctrd.task_delete(c.id))
            await self._quiet(self.ctrd.container_delete(c.id))
            await self._quiet(self.ctrd.snapshot_remove(c.id, snapshotter=self.snapshotter))
        except errors.Unavailable:
            c.removing = False
            raise
        if c.io is not None:
            c.io.close()
            c.io = None
        await self._unmount_volumes(c)
        await networking.unregister(self.kernel, c)
        shutil.rmtree(self.paths.fifo_dir(c.id), ignore_errors=True)
        shutil.rmtree(c.dir, ignore_errors=True)
        self.store.drop(c)
        if getattr(self, "forget_execs", None):
            self.forget_execs(c)
        if volumes and self.volumes is not None:
            await self._remove_anonymous_volumes(c)
        self.emit(c, "destroy")
        waiters, c.removed_waiters = c.removed_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(c.state.get("ExitCode", 0))

    async def _remove_anonymous_volumes(self, c: Container) -> None:
        """``rm -v`` and ``--rm``: the container's anonymous volumes go, when no other
        container uses them (named volumes always stay)."""
        for p in c.data.get("MountPoints") or ():
            if p.get("Type") != "volume" or not p.get("Anonymous"):
                continue
            try:
                v = self.volumes.get(p["Name"])
            except errors.NotFound:
                continue
            if not v.anonymous or self.volumes.users(v.name):
                continue
            try:
                await self.volumes.remove(v.name)
            except errors.PalletError as e:
                log.warning("container %s: remove volume %s: %s", c.id[:12], v.name, e)

    async def prune(self, filters: dict | None = None) -> dict:
        """Every stopped container goes (``until``, ``label``, ``label!`` filters)."""
        from pallet.engine.logs import parse_time

        filters = filters or {}
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise errors.InvalidArgument(f"invalid filter '{key}'")
        until = None
        for v in filters.get("until") or ():
            until = _until_ns(v, parse_time)
        deleted, reclaimed = [], 0
        for c in list(self.store.all()):
            if c.running or c.state.get("Status") in ("restarting", "removing"):
                continue
            labels = c.data["Config"].get("Labels") or {}
            if not _labels(labels, filters.get("label") or [], all_=True):
                continue
            if filters.get("label!") and _labels(labels, filters["label!"], all_=False):
                continue
            if until is not None:
                try:
                    if parse_time(c.data["Created"]) >= until:
                        continue
                except (KeyError, ValueError):
                    continue
            size = (await self.sizes(c)).get("SizeRw", 0)
            try:
                await self._remove(c, force=False)
            except errors.PalletError as e:
                log.warning("prune container %s: %s", c.id[:12], e)
                continue
            deleted.append(c.id)
            reclaimed += size
        self.events.publish("container", "prune", "", {"reclaimed": reclaimed})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}


def _labels(labels: dict, wanted, *, all_: bool) -> bool:
    results = []
    for w in wanted:
        k, eq, val = w.partition("=")
        results.append(k in labels and (not eq or labels[k] == val))
    if not results:
        return True
    return all(results) if all_ else any(results)


def _until_ns(value: str, parse_time) -> int:
    """``until``: unix seconds, an RFC 3339 time, or a Go duration before now."""
    import time

    try:
        return int(float(value) * 1e9)
    except ValueError:
        pass
    try:
        return time.time_ns() - parse_go_duration(value)
    except ValueError:
        pass
    try:
        return parse_time(value)
    except ValueError:
        raise errors.InvalidArgument(f"invalid filter 'until={value}'") from None
