"""The event exchange of pallet-containerd: publish, forward, subscribe.

Events are containerd's: an Envelope (timestamp, namespace, topic, event as
Any whose type_url is the event's full message name).  Task events may reach
the exchange twice, from the task service itself and forwarded by the shim
(as containerd's shims do); the second copy is dropped, so subscribers see
each once whichever source was first.
"""
from __future__ import annotations

import collections
import queue
import threading

from google.protobuf import any_pb2

from pallet.proto.containerd.services.events.v1 import events_pb2

from pallet.containerd_services import convert
from pallet.containerd import filters

_DEDUP_TOPICS = {"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete",
                 "/tasks/exec-added", "/tasks/exec-started", "/tasks/oom"}
_SUBSCRIBER_BACKLOG = 4096


def _adapt(env: events_pb2.Envelope, path: tuple) -> tuple:
    if path == ("topic",):
        return True, env.topic
    if path == ("namespace",):
        return True, env.namespace
    return False, ""


def _dedup_key(env: events_pb2.Envelope):
    if env.topic not in _DEDUP_TOPICS:
        return None
    from pallet.containerd.client import decode_event

    ev = decode_event(env)
    if isinstance(ev, any_pb2.Any):
        return None
    fields = tuple(getattr(ev, f, None) for f in ("container_id", "id", "exec_id", "pid"))
    return env.namespace, env.topic, fields


class Fanout:
    """Items handed to every subscriber's bounded queue from any thread;
    publishing never blocks: a subscriber that does not keep up loses items,
    the publisher does not stall.  Each subscriber may carry a ``key`` (its
    filters) that ``publish``'s ``wants`` is asked about."""

    def __init__(self, backlog: int):
        self._backlog = backlog
        self._lock = threading.Lock()
        self._subscribers: list[tuple[queue.Queue, object]] = []

    def publish(self, item, wants=None) -> None:
        """Queue ``item`` for each subscriber (whose key ``wants`` accepts, if given)."""
        with self._lock:
            subs = list(self._subscribers)
        for q, key in subs:
            if wants is None or wants(key):
                try:
                    q.put_nowait(item)
                except queue.Full:
                    pass

    def subscribe(self, is_active, key=None, poll: float = 0.5):
        """Yield the items published from the first ``next()`` on, until
        ``is_active()`` turns false (asked every ``poll`` seconds at least)."""
        q: queue.Queue = queue.Queue(self._backlog)
        entry = (q, key)
        with self._lock:
            self._subscribers.append(entry)
        try:
            while is_active():
                try:
                    yield q.get(timeout=poll)
                except queue.Empty:
                    continue
        finally:
            with self._lock:
                self._subscribers.remove(entry)


class Exchange:
    """Fan-out of envelopes to subscribers; publishing never blocks."""

    def __init__(self):
        self._lock = threading.Lock()
        self._fanout = Fanout(_SUBSCRIBER_BACKLOG)
        self._recent: collections.OrderedDict = collections.OrderedDict()

    def publish(self, namespace: str, topic: str, event) -> None:
        """Publish an event message in ``namespace`` under ``topic``."""
        env = events_pb2.Envelope(timestamp=convert.now_ts(), namespace=namespace, topic=topic)
        if isinstance(event, any_pb2.Any):
            env.event.CopyFrom(event)
        else:
            env.event.CopyFrom(any_pb2.Any(type_url=event.DESCRIPTOR.full_name,
                                           value=event.SerializeToString()))
        self.forward(env)

    def forward(self, env: events_pb2.Envelope) -> None:
        """Hand a complete envelope to every subscriber whose filters match."""
        key = _dedup_key(env)
        with self._lock:
            if key is not None:
                if key in self._recent:
                    return
                self._recent[key] = True
                while len(self._recent) > 2048:
                    self._recent.popitem(last=False)
        self._fanout.publish(env, lambda parsed: filters.matches(parsed, env, _adapt))

    def subscribe(self, filter_strings, is_active=lambda: True, poll: float = 0.5):
        """Yield envelopes matching the filters until ``is_active()`` turns false."""
        parsed = filters.parse(list(filter_strings))
        yield from self._fanout.subscribe(is_active, parsed, poll)
