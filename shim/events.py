"""Task events sent back to containerd over ttrpc (``TTRPC_ADDRESS``), from the loop.

containerd 1.6 serves ``containerd.services.events.ttrpc.v1.Events/Forward``
on ``<its socket>.ttrpc`` for its shims (pallet-containerd too).  Events
go out in order on one connection; each stays queued until containerd has
acknowledged it, so that an event published while containerd is down (a
task exiting during a restart of pallet-containerd) is delivered when it
is back: the publisher retries with a growing delay while events are
pending.  The queue is bounded: the oldest events are dropped first
(containerd learns of exits through Wait and State anyway).
"""
from __future__ import annotations

import errno
import os
import socket
import time

from pallet.ttrpc import protocol as ttrpc
from pallet.proto.wire import Any, timestamp

from pallet.proto import shim_task as m

SERVICE = "containerd.services.events.ttrpc.v1.Events"
MAX_PENDING = 256
RETRY_MAX = 2.0


class Publisher:
    def __init__(self, loop, address: str, namespace: str, log=None):
        self.loop = loop
        self.path = ttrpc.socket_path_of(address)
        self.namespace = namespace
        self.log = log
        self.pending: list = []   # [stream id or 0, frame body] in publishing order
        self.sock = None
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.next_id = 1
        self.retry = None
        self.delay = 0.05

    def publish(self, topic: str, event) -> None:
        """Queue ``event`` (a messages.Task* instance) under ``topic``; never blocks."""
        env = m.Envelope(timestamp=timestamp(time.time_ns()), namespace=self.namespace,
                         topic=topic, event=Any(type_url=event.NAME, value=event.encode()))
        body = ttrpc.encode_request(SERVICE, "Forward", m.ForwardRequest(envelope=env).encode(),
                                    5_000_000_000)
        self.pending.append([0, body])
        if len(self.pending) > MAX_PENDING:
            del self.pending[0]
        self._send_pending()

    # -- connection
    def _connect(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC |
                             socket.SOCK_NONBLOCK)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            if e.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN):
                self._log(f"connect to {self.path}: {e.strerror}")
            return False
        self.sock = sock
        self.inbuf.clear()
        self.outbuf.clear()
        self.loop.add_reader(sock.fileno(), self._readable)
        return True

    def _drop(self) -> None:
        if self.sock is not None:
            self.loop.forget(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for entry in self.pending:
            entry[0] = 0  # resent on the next connection
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self.retry is None and self.pending:
            self.retry = self.loop.call_later(self.delay, self._retry)
            self.delay = min(self.delay * 2, RETRY_MAX)

    def _retry(self) -> None:
        self.retry = None
        self._send_pending()

    def _send_pending(self) -> None:
        if not self.pending:
            return
        if self.sock is None and not self._connect():
            self._schedule_retry()
            return
        for entry in self.pending:
            if entry[0]:
                continue
            entry[0] = self.next_id
            self.next_id += 2
            self.outbuf += ttrpc.HEADER.pack(len(entry[1]), entry[0], ttrpc.TYPE_REQUEST, 0)
            self.outbuf += entry[1]
        self._flush()

    def _flush(self) -> None:
        while self.outbuf:
            try:
                n = self.sock.send(self.outbuf)
            except (BlockingIOError, InterruptedError):
                self.loop.add_writer(self.sock.fileno(), self._flush)
                return
            except OSError:
                self._drop()
                return
            del self.outbuf[:n]
        if self.sock is not None:
            self.loop.remove_writer(self.sock.fileno())

    def _readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop()
            return
        self.inbuf += data
        while len(self.inbuf) >= 10:
            length, stream_id, mtype, _flags = ttrpc.HEADER.unpack_from(self.inbuf)
            if len(self.inbuf) < 10 + length:
                return
            body = bytes(self.inbuf[10:10 + length])
            del self.inbuf[:10 + length]
            if mtype != ttrpc.TYPE_RESPONSE:
                continue
            code, message, _ = ttrpc.decode_response(body)
            if code:
                self._log(f"forward event: {message}")
            # acknowledged (or refused for good): either way it is done
            self.pending = [e for e in self.pending if e[0] != stream_id]
            self.delay = 0.05

    def _log(self, text: str) -> None:
        if self.log is not None:
            self.log(text)


def open_publisher(loop, namespace: str, log=None):
    """The publisher for ``TTRPC_ADDRESS`` of the environment, or None without one."""
    address = os.environ.get("TTRPC_ADDRESS")
    if not address:
        return None
    return Publisher(loop, address, namespace, log)
