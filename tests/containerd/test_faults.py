"""Fault tolerance at containerd level: pallet-containerd killed with 20 running
containers, and a shim killed after that.

The test is the client: it holds the read ends of the containers' stdout FIFOs
(a log collector) and the write end of one container's stdin (an attached
client) across the restart, as palletd does with its containers' FIFOs."""
from __future__ import annotations

import asyncio
import os
import secrets
import select
import signal
import threading
import time

import pytest

import cd_image
from cd_util import PALLET_RUNTIME, mounted_under, pid_alive, pid_exists, wait_for
from pallet.core import errors
from pallet.containerd.client import Containerd
from test_containerd_client import load_image, minimal_spec

pytestmark = pytest.mark.root
COUNT = 20
TICKER = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done"
ECHO = "while read l; do echo echo-$l; done"
EXITER = "trap 'exit 42' USR1; while true; do sleep 0.1; done"


class Collector:
    """Reads a FIFO in a thread for as long as it has writers, keeping every line."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.data = b""
        self.lock = threading.Lock()
        self.done = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            poller.poll(200)
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                break
            if not chunk:
                break
            with self.lock:
                self.data += chunk
        self.done = True

    def lines(self) -> list[bytes]:
        with self.lock:
            return self.data.splitlines()

    def close(self):
        try:
            os.close(self.fd)
        except OSError:
            pass


def test_pallet_containerd_killed_with_running_containers(pallet_containerd, tmp_path):
    d = pallet_containerd
    img = cd_image.build()
    ns = "f-" + secrets.token_hex(3)
    ids = [f"c{i:02d}-{secrets.token_hex(2)}" for i in range(COUNT)]
    echo_id, exit_id = ids[-2], ids[-1]
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    collectors: dict[str, Collector] = {}
    pids: dict[str, int] = {}

    async def create_all():
        async with Containerd(d.address, ns) as c:
            await load_image(c, "docker.io/library/bb:1", img)
            top = await c.unpack("docker.io/library/bb:1")
            for cid in ids:
                script = ECHO if cid == echo_id else EXITER if cid == exit_id else TICKER
                mounts = await c.snapshot_prepare(cid, top)
                await c.container_create(cid, spec=minimal_spec(cid, ["sh", "-c", script]),
                                         snapshot_key=cid, runtime=PALLET_RUNTIME)
                out = str(fifo_dir / f"{cid}.out")
                os.mkfifo(out)
                collectors[cid] = Collector(out)
                stdin = ""
                if cid == echo_id:
                    stdin = str(fifo_dir / f"{cid}.in")
                    os.mkfifo(stdin)
                pids[cid] = await c.task_create(cid, rootfs=mounts, stdout=out, stdin=stdin)
                await c.task_start(cid)

    asyncio.run(create_all())
    # an attached client of the echo container: its writer stays open across the restart
    stdin_w = os.open(str(fifo_dir / f"{echo_id}.in"), os.O_WRONLY)
    try:
        os.write(stdin_w, b"before\n")
        assert wait_for(lambda: b"echo-before" in collectors[echo_id].lines(), 10)
        assert wait_for(lambda: all(len(collectors[c].lines()) >= 2 for c in ids[:-2]), 10)

        # kill -9 of pallet-containerd
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        time.sleep(0.5)
        assert all(pid_alive(pids[c]) for c in ids), "every container outlives pallet-containerd"
        # one ends during the outage
        os.kill(pids[exit_id], signal.SIGUSR1)
        assert wait_for(lambda: not pid_alive(pids[exit_id]), 10)
        # the logs go on meanwhile
        during = {c: len(collectors[c].lines()) for c in ids[:-2]}
        time.sleep(1.0)
        assert all(len(collectors[c].lines()) > during[c] for c in ids[:-2])

        d.restart()

        async def after():
            async with Containerd(d.address, ns) as c:
                tasks = {t.id: t for t in await c.tasks()}
                assert set(tasks) == set(ids)
                running = [t for t in tasks.values() if t.status == 2]
                assert len(running) == COUNT - 1
                assert all(tasks[cid].pid == pids[cid] for cid in ids[:-1])
                # its true exit status, as the shim recorded it
                stopped = tasks[exit_id]
                assert (stopped.status, stopped.exit_status) == (3, 42)
                status, exited_at = await c.task_wait(exit_id)
                assert status == 42 and exited_at > 0
                assert (await c.task_delete(exit_id)).exit_status == 42
                # the others are still driven: kill, wait
                status_before = {cid: (await c.task_get(cid)).status for cid in ids[:3]}
                assert set(status_before.values()) == {2}
        asyncio.run(after())
        # the logs and the attached client go on after the restart
        counts = {c: len(collectors[c].lines()) for c in ids[:-2]}
        time.sleep(1.0)
        assert all(len(collectors[c].lines()) > counts[c] for c in ids[:-2])
        os.write(stdin_w, b"after\n")
        assert wait_for(lambda: b"echo-after" in collectors[echo_id].lines(), 10)
        # a client that attaches anew finds the same FIFOs
        late = os.open(str(fifo_dir / f"{echo_id}.in"), os.O_WRONLY)
        os.write(late, b"late\n")
        os.close(late)
        assert wait_for(lambda: b"echo-late" in collectors[echo_id].lines(), 10)
        ticks = [line for line in collectors[ids[0]].lines() if line.startswith(b"tick-")]
        numbers = [int(line.split(b"-")[1]) for line in ticks]
        assert numbers == list(range(len(numbers))), "no line lost across the restart"

        # now a shim is killed (its zygote was found again by the new pallet-containerd)
        victim = ids[0]
        bundle = os.path.join(d.state, "io.containerd.runtime.v2.task", ns, victim)
        with open(os.path.join(bundle, "shim.pid")) as f:
            shim = int(f.read())
        os.kill(shim, signal.SIGKILL)

        async def after_shim():
            async with Containerd(d.address, ns) as c:
                status, _ = await asyncio.wait_for(c.task_wait(victim), 30)
                assert status == 137
                p = await c.task_get(victim)
                assert (p.status, p.exit_status) == (3, 137)
                assert wait_for(lambda: not pid_exists(pids[victim]), 10), "not reaped"
                assert not mounted_under(os.path.join(bundle, "rootfs"))
                assert collectors[victim].done or wait_for(lambda: collectors[victim].done, 5)
                for cid in ids[1:-1]:
                    assert pid_alive(pids[cid]) and (await c.task_get(cid)).status == 2
                # and everything goes away cleanly
                for cid in ids:
                    try:
                        await c.task_kill(cid, 9, all=True)
                    except errors.PalletError:
                        pass
                for cid in ids:
                    try:
                        await c.task_wait(cid, timeout=20)
                        await c.task_delete(cid)
                    except errors.NotFound:
                        pass
                    await c.container_delete(cid)
                    await c.snapshot_remove(cid)
                assert await c.tasks() == []
        asyncio.run(after_shim())
        assert all(not pid_exists(pids[c]) for c in ids)
    finally:
        os.close(stdin_w)
        for col in collectors.values():
            col.close()
