"""Processes run in a running container: ExecSync, and the exec sessions of
the streaming server.

An exec is a process of the container's task (``Tasks.Exec`` with the
container's own process spec, other arguments, a terminal or not) whose
stdio are FIFOs of its own beside the container's.  ExecSync gathers its
output (at most 16 MiB of each stream, CVE-2022-1708) and, past the
timeout, kills it and answers DEADLINE_EXCEEDED as containerd does.  A
streaming exec whose client goes away is killed too.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal

from google.protobuf import any_pb2

from pallet.core import errors
from pallet.proto.containerd.services.tasks.v1 import tasks_pb2

from pallet.plugins.api_cri import logs
from pallet.plugins.api_cri.config import NAMESPACE
from pallet.plugins.api_cri.store import RUNNING

log = logging.getLogger("pallet.cri.exec")

PROCESS_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process"
MAX_OUTPUT = 16 << 20


class DeadlineExceeded(errors.PalletError):
    """An ExecSync that ran past its timeout (gRPC DEADLINE_EXCEEDED)."""

    grpc_code = "DEADLINE_EXCEEDED"


def check_running(c, prefix: str = "") -> None:
    """containerd's refusal of a container that does not run (UNKNOWN, these words)."""
    if c.state != RUNNING:
        from pallet.plugins.api_cri.container import STATE_NAMES
        raise errors.PalletError(f"{prefix}container is in {STATE_NAMES[c.state]} state")


class Exec:
    """One exec process: its FIFOs and its life in the task."""

    def __init__(self, cri_, c, cmd, *, tty: bool, stdin: bool):
        if not cmd:
            raise errors.InvalidArgument("cmd must not be empty")
        self.cri, self.c, self.cmd = cri_, c, list(cmd)
        self.tty, self.stdin = tty, stdin
        self.id = secrets.token_hex(16)
        self.pipes = logs.Pipes(cri_.io.loop, cri_.cfg.container_io(c.id), stdin=stdin, tty=tty,
                                prefix=f"exec-{self.id}-")

    @property
    def tasks(self):
        return self.cri.services.tasks

    def start(self) -> None:
        """Make the FIFOs, add the process to the task and start it (blocking:
        call it off the loop).  The pipes must be open already."""
        process = dict(self.cri.records.spec(self.c.id).get("process") or {})
        process["args"] = self.cmd
        process["terminal"] = self.tty
        process.pop("consoleSize", None)
        self.tasks.exec(NAMESPACE, tasks_pb2.ExecProcessRequest(
            container_id=self.c.id, exec_id=self.id, terminal=self.tty,
            stdin=self.pipes.uri(logs.STDIN), stdout=self.pipes.uri(logs.STDOUT),
            stderr=self.pipes.uri(logs.STDERR),
            spec=any_pb2.Any(type_url=PROCESS_TYPE, value=json.dumps(process).encode())))
        self.tasks.start(NAMESPACE, self.c.id, self.id)

    def wait(self) -> int:
        return int(self.tasks.wait(NAMESPACE, self.c.id, self.id).exit_status)

    def kill(self) -> None:
        try:
            self.tasks.kill(NAMESPACE, self.c.id, int(signal.SIGKILL), exec_id=self.id)
        except errors.PalletError:
            pass

    def close_stdin(self) -> None:
        try:
            self.tasks.close_io(NAMESPACE, tasks_pb2.CloseIORequest(
                container_id=self.c.id, exec_id=self.id, stdin=True))
        except errors.PalletError as e:
            log.debug("close stdin of exec %s: %s", self.id, e)

    def resize(self, width: int, height: int) -> None:
        try:
            self.tasks.resize_pty(NAMESPACE, tasks_pb2.ResizePtyRequest(
                container_id=self.c.id, exec_id=self.id, width=width, height=height))
        except errors.PalletError as e:
            log.debug("resize exec %s: %s", self.id, e)

    def cleanup(self) -> None:
        """Forget the process in the task and remove its FIFOs (blocking)."""
        try:
            self.tasks.delete_process(NAMESPACE, self.c.id, self.id)
        except errors.PalletError as e:
            log.debug("delete exec %s: %s", self.id, e)
        self.pipes.remove()


def exec_sync(cri_, cid: str, cmd, timeout: int) -> tuple[bytes, bytes, int]:
    """Run ``cmd`` in the container and return its stdout, stderr and exit code."""
    c = cri_.records.container(cid)
    check_running(c, "failed to exec in container: ")
    ex = Exec(cri_, c, cmd, tty=False, stdin=False)
    out = {logs.STDOUT: bytearray(), logs.STDERR: bytearray()}

    def collect(stream, data):
        if data:
            buf = out[stream]
            room = MAX_OUTPUT - len(buf)
            if room > 0:
                buf += data[:room]

    ex.pipes.create()
    ex.pipes.subscribers.append(collect)
    cri_.io.call(ex.pipes.open)
    try:
        ex.start()
        fut = cri_.workers.submit(ex.wait)
        try:
            code = fut.result(timeout if timeout > 0 else None)
        except TimeoutError:
            ex.kill()
            try:
                fut.result(30)
            except Exception:  # noqa: BLE001 — reported as the timeout below
                pass
            raise DeadlineExceeded(f"failed to exec in container: timeout {timeout}s exceeded: "
                                   "context deadline exceeded") from None
    finally:
        cri_.io.call(ex.pipes.drain)
        cri_.workers.submit(ex.cleanup)
    return bytes(out[logs.STDOUT]), bytes(out[logs.STDERR]), code


async def stdin_writer(fd_owner, queue: asyncio.Queue, on_eof) -> None:
    """Copy what the client sends into a stdin FIFO without blocking the loop;
    ``None`` in the queue is the end of stdin."""
    loop = asyncio.get_running_loop()
    while True:
        data = await queue.get()
        if data is None:
            await on_eof()
            return
        fd = fd_owner._fds.get(logs.STDIN)
        if fd is None:
            continue
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
            except OSError:
                view = view[:0]
