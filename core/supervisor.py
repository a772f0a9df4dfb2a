"""Start, watch and restart the processes a daemon owns.

palletd starts pallet-containerd unless it is told where one runs
(``--containerd``).  Children are started with :mod:`subprocess` in a thread
(vfork and exec), never with the event loop's own fork: under uvloop that
runs every fork handler of a multi-threaded daemon (gRPC's among them) in the
child, which may crash before it execs.  The child runs in its own session so that a signal meant
for palletd (a terminal's ^C) does not reach it, and so that it survives
palletd: a restarted palletd adopts the pallet-containerd it finds alive
(its pid file and socket) instead of starting a second one.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time

from pallet.core.files import write_atomic

log = logging.getLogger("pallet.supervisor")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Supervisor:
    """Keep one child process running.

    ``argv`` is the command; ``ready()`` says whether the child serves yet
    (palletd asks whether its socket answers: the core touches no socket);
    ``pidfile`` where the child's pid is kept so that a restarted parent can
    adopt it.  Restarts back off from 0.1 s doubling to 10 s, and the backoff
    resets once the child has stayed up for 10 s.
    """

    MIN_BACKOFF = 0.1
    MAX_BACKOFF = 10.0
    READY_TIMEOUT = 30.0

    def __init__(self, argv: list[str], *, name: str, ready, pidfile: str,
                 env: dict | None = None, on_restart=None):
        self.argv = argv
        self.name = name
        self.ready = ready
        self.pidfile = pidfile
        self.env = env
        self.on_restart = on_restart
        self.pid: int | None = None
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    # --- public --------------------------------------------------------------
    async def start(self) -> None:
        """Adopt a live child from an earlier run, or start one; wait until ready."""
        adopted = self._adoptable()
        if adopted:
            self.pid = adopted
            log.info("adopted running %s (pid %d)", self.name, adopted)
        else:
            await self._spawn()
        await self._wait_ready()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the child: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        self._stopping = True
        if self._task:
            self._task.cancel()
        pid = self.pid
        if pid and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                await self._reap(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                await self._reap(1.0)
        self._remove_pidfile()

    def detach(self) -> None:
        """Leave the child running (live restore) and stop watching it."""
        self._stopping = True
        if self._task:
            self._task.cancel()

    # --- internals -------------------------------------------------------------
    def _adoptable(self) -> int | None:
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        if _alive(pid) and self.ready():
            return pid
        return None

    async def _spawn(self) -> None:
        os.makedirs(os.path.dirname(self.pidfile), exist_ok=True)
        self._proc = await asyncio.to_thread(
            subprocess.Popen, self.argv, env=self.env, start_new_session=True,
            stdin=subprocess.DEVNULL)
        self.pid = self._proc.pid
        write_atomic(self.pidfile, str(self.pid), fsync=False)
        log.info("started %s (pid %d)", self.name, self.pid)

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.READY_TIMEOUT
        while not self.ready():
            if self.pid is None or not _alive(self.pid):
                raise RuntimeError(f"{self.name} exited before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {self.READY_TIMEOUT:.0f}s")
            await asyncio.sleep(0.01)

    async def _reap(self, wait: float) -> None:
        if self._proc is not None and self._proc.poll() is None:
            await asyncio.sleep(wait)
            self._proc.poll()
        elif self._proc is None:
            await asyncio.sleep(wait)

    async def _exited(self) -> None:
        # a child of ours is polled too (reaped by poll()): a thread blocked in
        # wait() could not be cancelled when palletd stops
        while self.pid and (self._proc.poll() is None if self._proc is not None
                            else _alive(self.pid)):
            await asyncio.sleep(0.2)

    async def _watch(self) -> None:
        backoff = self.MIN_BACKOFF
        while not self._stopping:
            started = time.monotonic()
            await self._exited()
            if self._stopping:
                return
            code = self._proc.returncode if self._proc else None
            log.warning("%s (pid %s) exited (%s); restarting in %.1fs",
                        self.name, self.pid, code, backoff)
            if time.monotonic() - started > 10.0:
                backoff = self.MIN_BACKOFF
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.MAX_BACKOFF)
            try:
                await self._spawn()
                await self._wait_ready()
            except (OSError, RuntimeError) as e:
                log.error("restart of %s failed: %s", self.name, e)
                continue
            self.restarts += 1
            if self.on_restart:
                self.on_restart()

    def _remove_pidfile(self) -> None:
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass
