"""Operations on an existing container: stop, kill, restart, pause, unpause,
wait, rename, update, resize."""
from __future__ import annotations

import asyncio
import logging
import signal as _signal

from pallet.core import errors
from pallet.engine import resources
from pallet.engine.createconfig import parse_signal
from pallet.engine.restart import check_policy
from pallet.engine.state import Container

log = logging.getLogger("pallet.api_rest.containers")

DEFAULT_STOP_TIMEOUT = 10


class ContainerOps:
    # --- kill, stop, restart ---------------------------------------------------------
    async def kill(self, ref: str, sig=None) -> None:
        c = self.get(ref)
        signum = parse_signal(sig)
        if c.state.get("Status") == "restarting" and c.restart_task is not None:
            c.restart_task.cancel()
            c.restart_task = None
            c.data["HasBeenManuallyStopped"] = True
            c.save()
            return
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        stop_signal = c.data["Config"].get("StopSignal")
        # dockerd: SIGKILL, or the container's stop signal, means "do not restart"
        if signum == _signal.SIGKILL or not stop_signal or \
                parse_signal(stop_signal, _signal.SIGTERM) == signum:
            c.exit_on_next = True
        if not self.shutting_down:
            c.data["HasBeenManuallyStopped"] = True
            c.save()
        fut = self._exit_future(c) if signum == _signal.SIGKILL else None
        await self.ctrd.task_kill(c.id, signum, all=signum == _signal.SIGKILL)
        self.emit(c, "kill", signal=signum)
        if c.paused and signum == _signal.SIGKILL:
            # a frozen process sees its SIGKILL once thawed
            await self._quiet(self.ctrd.task_resume(c.id))
        if fut is not None:
            # as dockerd: a SIGKILL answers once the container is down
            try:
                await asyncio.wait_for(asyncio.shield(fut), 10)
            except asyncio.TimeoutError:
                pass

    def _exit_future(self, c: Container) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        c.exit_waiters.append(fut)
        return fut

    async def stop(self, ref: str, timeout: int | None = None, sig=None) -> None:
        c = self.get(ref)
        if c.state.get("Status") == "restarting":
            if c.restart_task is not None:
                c.restart_task.cancel()
                c.restart_task = None
            c.data["HasBeenManuallyStopped"] = True
            c.state.update({"Status": "exited", "Running": False, "Restarting": False})
            c.save()
            self.emit(c, "stop")
            return
        if not c.running:
            raise errors.NotModified("container already stopped")
        if sig is not None:
            parse_signal(sig)
        await asyncio.shield(self._spawn(self._stop(c, timeout, sig)))
        self.emit(c, "stop")

    async def _stop(self, c: Container, timeout: int | None, sig, *, manual: bool = True) -> None:
        if not c.running:
            return
        if timeout is None:
            timeout = c.data["Config"].get("StopTimeout")
            timeout = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
        signum = parse_signal(sig or c.data["Config"].get("StopSignal"), _signal.SIGTERM)
        c.exit_on_next = True
        if manual and not self.shutting_down:
            c.data["HasBeenManuallyStopped"] = True
            c.save()
        fut = self._exit_future(c)
        try:
            await self.ctrd.task_kill(c.id, signum)
            if c.paused:
                await self._quiet(self.ctrd.task_resume(c.id))
        except errors.NotFound:
            pass
        if timeout < 0:
            await fut
            return
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return
        except asyncio.TimeoutError:
            pass
        try:
            await self.ctrd.task_kill(c.id, _signal.SIGKILL, all=True)
            if c.paused:
                await self._quiet(self.ctrd.task_resume(c.id))
        except errors.NotFound:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(fut), 30)
        except asyncio.TimeoutError:
            raise errors.PalletError(f"container {c.id[:12]} did not exit after SIGKILL") \
                from None

    async def restart(self, ref: str, timeout: int | None = None, sig=None) -> None:
        c = self.get(ref)
        if sig is not None:
            parse_signal(sig)

        async def run():
            if c.restart_task is not None:
                c.restart_task.cancel()
                c.restart_task = None
            if c.running:
                await self._stop(c, timeout, sig)
                self.emit(c, "stop")
            try:
                await self._start(c, by_client=True)
            except errors.NotModified:
                pass
            self.emit(c, "restart")
        await asyncio.shield(self._spawn(run()))

    # --- pause --------------------------------------------------------------------------
    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        async with self._lock(c):
            if not c.running:
                raise errors.Conflict(f"Container {c.id} is not running")
            if c.paused:
                raise errors.Conflict(f"Container {c.id} is already paused")
            await self.ctrd.task_pause(c.id)
            c.set_paused(True)
            if self.health is not None:  # no health checks while paused
                self.health.stop(c)
            c.save()
        self.emit(c, "pause")

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        async with self._lock(c):
            if not c.paused:
                raise errors.Conflict(f"Container {c.id} is not paused")
            await self.ctrd.task_resume(c.id)
            c.set_paused(False)
            if self.health is not None:
                self.health.resume(c)
            c.save()
        self.emit(c, "unpause")

    # --- wait ---------------------------------------------------------------------------
    async def wait(self, ref: str, condition: str = "not-running"):
        """A future of the exit code for ``condition`` (registered before returning,
        so that the caller can answer its headers and then await it)."""
        c = self.get(ref)
        condition = condition or "not-running"
        loop = asyncio.get_running_loop()
        if condition == "not-running":
            if not c.running and c.state.get("Status") != "restarting":
                fut = loop.create_future()
                fut.set_result(c.state.get("ExitCode", 0))
                return fut
            return self._exit_future(c)
        if condition == "next-exit":
            return self._exit_future(c)
        if condition == "removed":
            fut = loop.create_future()
            c.removed_waiters.append(fut)
            return fut
        raise errors.InvalidArgument(f"invalid condition: {condition!r}")

    async def close_stdin(self, c: Container) -> None:
        """The attached client's stdin ended (``StdinOnce``): the container's ends too."""
        if c.io is not None:
            c.io.close_stdin()
        if c.running:
            await self._quiet(self.ctrd.task_close_io(c.id, stdin=True))

    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        if height < 0 or width < 0 or height > 65535 or width > 65535:
            raise errors.InvalidArgument("invalid terminal size")
        await self.ctrd.task_resize(c.id, width, height)
        self.emit(c, "resize", height=height, width=width)

    # --- rename, update -------------------------------------------------------------------
    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name:
            raise errors.InvalidArgument("Neither old nor new names may be empty")
        new = new_name.lstrip("/")
        old = c.name
        if new == old:
            raise errors.InvalidArgument("Renaming a container with the same name as its "
                                         "current name")
        new = self.store.check_name(new)
        self.store.names.pop(old, None)
        self.store.names[new] = c.id
        c.data["Name"] = "/" + new
        try:
            c.save()
        except OSError:
            c.data["Name"] = "/" + old
            self.store.names.pop(new, None)
            self.store.names[old] = c.id
            raise
        self.emit(c, "rename", oldName="/" + old)

    async def update(self, ref: str, body) -> dict:
        c = self.get(ref)
        if not isinstance(body, dict):
            raise errors.InvalidArgument("invalid update config: JSON object expected")
        host = c.data["HostConfig"]
        new, warnings = resources.merge_update(host, body)
        if "RestartPolicy" in body and body["RestartPolicy"] is not None:
            new["RestartPolicy"] = check_policy({"RestartPolicy": body["RestartPolicy"],
                                                 "AutoRemove": host.get("AutoRemove")})
        if c.running:
            res = resources.linux_resources(new)
            # containerd applies only what is given: send the fields that are set
            if res:
                try:
                    await self.ctrd.task_update(c.id, res)
                except (errors.InvalidArgument, errors.NotFound, errors.Conflict,
                        errors.Unavailable, errors.NotImplementedYet):
                    raise
                except errors.PalletError as e:
                    raise errors.InvalidArgument(f"Cannot update container {c.id}: "
                                                 f"{e.message}") from None
        c.data["HostConfig"] = new
        c.save()
        self.emit(c, "update")
        return {"Warnings": warnings or None}

