"""palletd's event stream (``GET /events``): what happened to containers,
images, volumes and networks, in docker's JSON form.

Every part of the engine publishes through one :class:`EventBus` per kernel
(the engine's, made on first use), which every service reaches with
:func:`emit`.  The bus keeps the last
events in memory (dockerd keeps 256) so that ``since`` can replay them.
"""
from __future__ import annotations

import asyncio
import collections
import time
import weakref

#: how many past events ``since`` can reach (dockerd's events limit)
BACKLOG = 1024

#: the ``type`` filter's accepted values (the Engine API's event types)
TYPES = ("builder", "config", "container", "daemon", "image", "network", "node", "plugin",
         "secret", "service", "volume")

FILTER_KEYS = ("config", "container", "daemon", "event", "image", "label", "network", "node",
               "plugin", "scope", "secret", "service", "type", "volume")


def message(type_: str, action: str, actor_id: str, attributes: dict | None = None, *,
            scope: str = "local", time_ns: int | None = None) -> dict:
    """One event as dockerd writes it; the legacy ``status``/``id``/``from``
    fields only for containers and images, as dockerd does."""
    ns = time.time_ns() if time_ns is None else time_ns
    attrs = {k: str(v) for k, v in (attributes or {}).items()}
    msg: dict = {}
    if type_ in ("container", "image"):
        msg["status"] = action
        msg["id"] = actor_id
        if type_ == "container" and attrs.get("image"):
            msg["from"] = attrs["image"]
    msg.update({"Type": type_, "Action": action,
                "Actor": {"ID": actor_id, "Attributes": attrs},
                "scope": scope, "time": ns // 1_000_000_000, "timeNano": ns})
    return msg


class EventBus:
    """Fan-out of events to ``/events`` listeners, with a replay backlog."""

    def __init__(self, limit: int = BACKLOG):
        self.backlog: collections.deque = collections.deque(maxlen=limit)
        self._queues: set[asyncio.Queue] = set()

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict | None = None,
                *, scope: str = "local") -> dict:
        """Record and hand out an event; never blocks, never raises."""
        msg = message(type_, action, actor_id, attributes, scope=scope)
        self.backlog.append(msg)
        for q in self._queues:
            q.put_nowait(msg)
        return msg

    def subscribe(self) -> tuple[list[dict], asyncio.Queue]:
        """The backlog so far and a queue of every later event (in one step, so
        nothing falls between the two)."""
        q: asyncio.Queue = asyncio.Queue()
        self._queues.add(q)
        return list(self.backlog), q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._queues.discard(q)

    @property
    def listeners(self) -> int:
        return len(self._queues)


#: kernel -> its engine's bus (an embedding program may run several kernels)
_BUSES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def bus_of(kernel) -> EventBus:
    """The bus of the engine running on ``kernel`` (made on first use)."""
    bus = _BUSES.get(kernel)
    if bus is None:
        bus = _BUSES[kernel] = EventBus()
    return bus


def emit(kernel, type_: str, action: str, actor_id: str, attributes: dict | None = None,
         *, scope: str = "local") -> None:
    """Publish an event from anywhere in palletd, e.g. the image service's
    ``emit(kernel, "image", "pull", "busybox:latest", {"name": "busybox:latest"})``
    or the network's ``emit(kernel, "network", "create", net_id, {"name": ..., "type":
    "bridge"})``."""
    bus_of(kernel).publish(type_, action, actor_id, attributes, scope=scope)


def container_attributes(c, **extra) -> dict:
    """image, name and the container's labels, as dockerd attaches them."""
    attrs = dict(c.data["Config"].get("Labels") or {})
    attrs["image"] = c.data["Config"].get("Image", "")
    attrs["name"] = c.name
    attrs.update({k: v for k, v in extra.items() if v is not None})
    return attrs


# --- filters -------------------------------------------------------------------

def check_filters(filters: dict) -> None:
    from pallet.core.errors import InvalidArgument

    for key, values in filters.items():
        if key not in FILTER_KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "type":
            for v in values:
                if v not in TYPES:
                    raise InvalidArgument(f"invalid filter 'type={v}'")


def matches(msg: dict, filters: dict) -> bool:
    """dockerd's event filter: every key given must match (values of one key are ORed)."""
    actor = msg["Actor"]
    attrs = actor.get("Attributes") or {}
    etype = msg["Type"]

    def one(key: str, pred) -> bool:
        values = filters.get(key)
        return not values or any(pred(v) for v in values)

    def named(kind: str):
        def pred(v: str) -> bool:
            return etype == kind and (actor["ID"].startswith(v) or attrs.get("name") == v)
        return pred

    action = msg["Action"]
    base_action = action.split(":", 1)[0].strip()

    def label_pred(v: str) -> bool:
        k, eq, val = v.partition("=")
        return k in attrs and (not eq or attrs[k] == val)

    def image_pred(v: str) -> bool:
        if etype == "image":
            return actor["ID"] == v or attrs.get("name") == v or \
                attrs.get("name", "").split(":")[0] == v
        img = attrs.get("image", "")
        return img == v or img.split(":")[0] == v or (":" not in v and img == v + ":latest")

    return (one("type", lambda v: etype == v)
            and one("event", lambda v: v in (action, base_action))
            and one("container", named("container"))
            and one("image", image_pred)
            and one("volume", named("volume"))
            and one("network", named("network"))
            and one("label", label_pred)
            and one("scope", lambda v: msg.get("scope") == v)
            and one("daemon", lambda v: etype == "daemon" and actor["ID"] == v)
            and all(not filters.get(k) for k in ("plugin", "node", "service", "secret",
                                                   "config")))
