"""palletd's bookkeeping of expected exits (pure logic; the stream itself is
exercised end to end in test_docker_run_path.py and tests/api/test_restart.py)."""
from __future__ import annotations

import asyncio

from pallet.engine.task_events import TaskEvents


def test_exits_reach_the_task_that_expects_them():
    async def body():
        ev = TaskEvents(ctrd=None)
        fut = ev.expect("c1", 100)
        ev._exited("c1", 99, 1)          # an earlier task of the container: not this one
        assert not fut.done()
        ev._exited("c1", 100, 3)
        assert fut.result() == 3
        # an exit that comes before it is expected (between Tasks.Get and expect)
        ev._exited("c2", 200, 137)
        assert ev.expect("c2", 200).result() == 137
        # ... but not one of another pid
        ev._exited("c3", 300, 1)
        assert not ev.expect("c3", 301).done()
        ev.forget("c3")
        assert "c3" not in ev._expected
    asyncio.run(body())
