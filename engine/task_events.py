"""palletd's one subscription to containerd's task events, as dockerd's
libcontainerd has: the exits of the containers' PID 1 and their OOM kills.

One Events.Subscribe stream for the engine's namespace, rather than a
Tasks.Wait per running container: no call per container, and a shim's
``/tasks/oom`` comes on the same stream as, and before, the ``/tasks/exit``
of the kill it caused, so that the exit is recorded knowing it.

The engine says which exits it expects (:meth:`TaskEvents.expect`: the
container's id and its PID 1, before the task starts) and gets a future of
the exit status.  When the stream breaks (containerd restarting), it is
opened again; once containerd has it (a marker event published in the
namespace comes back on it), every expected exit is checked with
Tasks.Get, for those that happened while nobody listened.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import secrets

from pallet.core import errors

log = logging.getLogger("pallet.engine.task_events")

STOPPED = 3  # containerd.v1.types.Status
#: the status of a task containerd lost (dockerd's exit code for it)
LOST = 255


class TaskEvents:
    """The subscription; ``on_oom(container_id)`` is called for each OOM event."""

    def __init__(self, ctrd, on_oom=None):
        self.ctrd = ctrd
        self.on_oom = on_oom or (lambda _cid: None)
        self._expected: dict[str, tuple[int, asyncio.Future]] = {}
        # exits nobody expected yet: one that comes between Tasks.Get and expect()
        self._unclaimed: collections.OrderedDict = collections.OrderedDict()
        self._marker = f"/pallet/engine/subscribed/{secrets.token_hex(8)}"
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    async def start(self, timeout: float = 10.0) -> None:
        """Subscribe; return once containerd has the subscription (or after
        ``timeout``: the stream keeps trying in the background)."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("no event stream from containerd after %gs; still trying", timeout)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 — on the way out
                pass
            self._task = None

    def expect(self, container_id: str, pid: int) -> asyncio.Future:
        """A future of the exit status of the task's PID 1 ``pid``."""
        fut = asyncio.get_running_loop().create_future()
        early = self._unclaimed.pop(container_id, None)
        if early is not None and early[0] == pid:
            fut.set_result(early[1])
            return fut
        self._expected[container_id] = (pid, fut)
        return fut

    def forget(self, container_id: str) -> None:
        """No exit to wait for any more (the task did not start)."""
        entry = self._expected.pop(container_id, None)
        if entry is not None and not entry[1].done():
            entry[1].cancel()

    def _exited(self, container_id: str, pid: int, status: int) -> None:
        entry = self._expected.get(container_id)
        if entry is None or (pid and entry[0] and pid != entry[0]):
            # not expected (yet), or the exit of an earlier task of the container
            self._unclaimed[container_id] = (pid, status)
            while len(self._unclaimed) > 256:
                self._unclaimed.popitem(last=False)
            return
        del self._expected[container_id]
        if not entry[1].done():
            entry[1].set_result(status)

    # ---- the stream ---------------------------------------------------------------
    def _filters(self) -> list[str]:
        ns = self.ctrd.namespace
        return [f'namespace=={ns},topic=="{t}"' for t in ("/tasks/exit", "/tasks/oom",
                                                          self._marker)]

    async def _run(self) -> None:
        from pallet.containerd.client import decode_event

        backoff, first = 0.1, True
        while not self._closing:
            seen = asyncio.Event()
            marker = asyncio.get_running_loop().create_task(self._publish_marker(seen))
            try:
                async for env in self.ctrd.subscribe(self._filters()):
                    if env.topic == self._marker:
                        if not seen.is_set():
                            seen.set()
                            backoff = 0.1
                            if not first:
                                asyncio.get_running_loop().create_task(self._reconcile())
                            first = False
                            self._ready.set()
                        continue
                    ev = decode_event(env)
                    if env.topic == "/tasks/oom":
                        self.on_oom(ev.container_id)
                    elif not ev.id or ev.id == ev.container_id:
                        self._exited(ev.container_id, ev.pid, ev.exit_status)
                raise errors.Unavailable("event stream ended")
            except asyncio.CancelledError:
                raise
            except errors.PalletError as e:
                if self._closing:
                    return
                log.info("containerd event stream: %s; subscribing again", e)
            finally:
                marker.cancel()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _publish_marker(self, seen: asyncio.Event) -> None:
        """Publish the marker until it comes back on the stream: containerd
        has the subscription then (a stream opens at its first read, and an
        event published before it is not delivered on it)."""
        from google.protobuf import empty_pb2

        delay = 0.02
        while not seen.is_set():
            try:
                await self.ctrd.publish(self._marker, empty_pb2.Empty())
            except errors.PalletError as e:
                log.debug("publish the event stream's marker: %s", e)
            try:
                await asyncio.wait_for(seen.wait(), delay)
            except asyncio.TimeoutError:
                delay = min(delay * 2, 1.0)

    async def _reconcile(self) -> None:
        """After the stream came back: the exits that happened while it was down."""
        for cid, (pid, _fut) in list(self._expected.items()):
            try:
                proc = await self.ctrd.task_get(cid)
            except errors.NotFound:
                self._exited(cid, pid, LOST)
                continue
            except errors.PalletError as e:
                log.info("container %s: task state after reconnecting: %s", cid[:12], e)
                continue
            if proc.status == STOPPED:
                self._exited(cid, pid, proc.exit_status)
