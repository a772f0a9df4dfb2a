"""The ``pallet_on_container_*`` hooks, driven by pallet-containerd's own events.

Every container of every namespace passes through pallet-containerd,
whoever made it (palletd, ctr, pallet-ctr, a CRI client), so the container
event hooks are called here, in pallet-containerd, from the events its
exchange publishes:

============================  ==============================================
event (topic)                 hook
============================  ==============================================
``/containers/create``        ``pallet_on_container_created``
``/tasks/start`` (the task)   ``pallet_on_container_started``
``/tasks/exit`` (its PID 1)   ``pallet_on_container_exited``
``/containers/delete``        ``pallet_on_container_removed``
============================  ==============================================

One thread calls the hooks, in the order of the events; it runs only when
a loaded plugin implements one of them, so that nobody pays for events no
one listens to.  A slow hook delays the hooks after it, never containerd.
"""
from __future__ import annotations

import logging
import threading

from pallet.core import errors

log = logging.getLogger("pallet.containerd.hooks")

#: topic -> the event of ``kernel.notify`` (the hook ``pallet_on_<event>``)
TOPICS = {"/containers/create": "container_created", "/tasks/start": "container_started",
          "/tasks/exit": "container_exited", "/containers/delete": "container_removed"}


def listened(kernel) -> bool:
    """Whether a loaded plugin implements one of the container event hooks."""
    return any(getattr(kernel.hook, f"pallet_on_{event}").get_hookimpls()
               for event in TOPICS.values())


class ContainerHooks:
    """Calls the container event hooks of ``kernel`` for what ``exchange``
    publishes; ``containers`` (the container records) tells a container's
    image, runtime and labels."""

    def __init__(self, kernel, exchange, containers):
        self.kernel = kernel
        self.exchange = exchange
        self.containers = containers
        self._known: dict[tuple[str, str], dict] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start calling the hooks (only if some plugin implements one)."""
        if not listened(self.kernel):
            return
        filters = [f'topic=="{t}"' for t in TOPICS]
        events = self.exchange.subscribe(filters, lambda: not self._stop.is_set())
        self._thread = threading.Thread(target=self._run, args=(events,), daemon=True,
                                        name="container-hooks")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self, events) -> None:
        from pallet.containerd.client import decode_event

        for env in events:
            try:
                self.handle(env.namespace, env.topic, decode_event(env))
            except Exception:  # noqa: BLE001 - one bad event must not stop the others
                log.exception("container hook for %s in %s", env.topic, env.namespace)

    def handle(self, namespace: str, topic: str, event) -> None:
        """Call the hook of one event (a decoded containerd event message)."""
        cid = getattr(event, "container_id", "") or getattr(event, "id", "")
        key = (namespace, cid)
        if topic == "/tasks/exit" and event.id and event.id != cid:
            return  # an exec process, not the container's PID 1
        info = self._known.get(key)
        if info is None:
            info = self._describe(namespace, cid)
        if topic == "/containers/create":
            info.update(image=event.image, runtime=event.runtime.name)
        elif topic == "/tasks/start":
            info.update(pid=event.pid, exit_code=None, exited_at=None)
        elif topic == "/tasks/exit":
            info.update(pid=event.pid, exit_code=event.exit_status,
                        exited_at=event.exited_at.ToNanoseconds() / 1e9)
        if topic == "/containers/delete":
            self._known.pop(key, None)
        else:
            self._known[key] = info
        extra = {"exit_code": event.exit_status} if topic == "/tasks/exit" else {}
        self.kernel.notify(TOPICS[topic], container=dict(info), **extra)

    def _describe(self, namespace: str, cid: str) -> dict:
        """What the container record says (nothing more once it is deleted)."""
        info = {"id": cid, "namespace": namespace, "image": "", "runtime": "", "labels": {},
                "pid": 0, "exit_code": None, "exited_at": None}
        try:
            c = self.containers.get(namespace, cid)
        except errors.NotFound:
            return info
        info.update(image=c.image, runtime=c.runtime.name, labels=dict(c.labels))
        return info
