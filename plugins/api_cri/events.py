"""Events, both ways.

In: the task events of the ``k8s.io`` namespace from pallet-containerd's
exchange (a container's process exited, ran out of memory), handed to
api_cri on a thread of their own.

Out: CRI's GetContainerEvents, a stream per client of created, started,
stopped and deleted events, each with the pod's and the container's status
at that moment.  A client that does not keep up loses events rather than
slowing the runtime down.
"""
from __future__ import annotations

import logging
import threading

from pallet.containerd.client import decode_event
from pallet.containerd_services.exchange import Fanout

from pallet.plugins.api_cri.config import NAMESPACE

log = logging.getLogger("pallet.cri.events")

BACKLOG = 1024


class EventBus:
    """The subscribers of GetContainerEvents."""

    def __init__(self):
        self._fanout = Fanout(BACKLOG)

    def publish(self, event) -> None:
        self._fanout.publish(event)

    def subscribe(self, is_active, poll: float = 0.5):
        """Yield events until ``is_active()`` turns false."""
        return self._fanout.subscribe(is_active, poll=poll)


class TaskWatcher:
    """Calls ``on_exit(container_id, exec_id, status, exited_at_ns)`` and
    ``on_oom(container_id)`` for the namespace's task events."""

    def __init__(self, exchange, on_exit, on_oom):
        self.exchange = exchange
        self.on_exit, self.on_oom = on_exit, on_oom
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cri-events", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5)

    def _active(self) -> bool:
        self._ready.set()
        return not self._stop.is_set()

    def _run(self) -> None:
        filters = [f'namespace=="{NAMESPACE}",topic=="/tasks/exit"',
                   f'namespace=="{NAMESPACE}",topic=="/tasks/oom"']
        for env in self.exchange.subscribe(filters, self._active, poll=0.2):
            try:
                ev = decode_event(env)
                if env.topic == "/tasks/exit":
                    exec_id = ev.id if ev.id != ev.container_id else ""
                    at = ev.exited_at.seconds * 1_000_000_000 + ev.exited_at.nanos
                    self.on_exit(ev.container_id, exec_id, int(ev.exit_status), at)
                elif env.topic == "/tasks/oom":
                    self.on_oom(ev.container_id)
            except Exception:  # noqa: BLE001 — one bad event must not end the watcher
                log.exception("task event %s", env.topic)

    def stop(self) -> None:
        self._stop.set()
