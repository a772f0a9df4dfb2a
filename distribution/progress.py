"""Docker's JSON progress messages for pull and push.

``docker pull`` and ``docker push`` answer with newline-delimited JSON
objects (moby's ``jsonmessage.JSONMessage``): ``status``, an optional
``id`` (12 hex digits of a layer, or the tag), ``progressDetail``
(``current``/``total``) and ``progress``, a rendered bar such as
``[=====>        ]  1.23MB/4.56MB``, which the server renders because the
client may not have a terminal.  The pull and push code report through a
:class:`Progress`; each frontend turns the dicts into its own stream.
"""
from __future__ import annotations

import inspect
import time
from typing import Any, Awaitable, Callable

from pallet.units.size import human_size

#: progress updates of one id are sent at most this often (seconds), as
#: moby's progress reader does
UPDATE_INTERVAL = 0.1


def progress_bar(current: int, total: int) -> str:
    """moby's ``JSONProgress.String`` for a wide (non-terminal) output."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    percentage = min(int(current / total * 100) // 2, 50)
    bar = f"[{'=' * percentage}>{' ' * (50 - percentage)}] "
    numbers = f"{human_size(current):>8}/{human_size(total)}"
    if current > total:
        numbers = f"{human_size(current):>8}"
    return bar + numbers


def short_id(digest: str) -> str:
    """The 12 hex digits docker shows for a layer."""
    return digest.partition(":")[2][:12] or digest[:12]


def message(status: str, id: str | None = None, current: int | None = None,
            total: int | None = None, detail: bool = True) -> dict:
    """One JSON message: ``{"status", "progressDetail", "progress", "id"}``."""
    msg: dict[str, Any] = {"status": status}
    if current is not None:
        pd: dict[str, int] = {"current": int(current)}
        if total:
            pd["total"] = int(total)
        msg["progressDetail"] = pd
        msg["progress"] = progress_bar(int(current), int(total or 0))
    elif detail and id is not None:
        msg["progressDetail"] = {}
    if id is not None:
        msg["id"] = id
    return msg


def error_message(text: str) -> dict:
    """The message that ends a stream with an error."""
    return {"errorDetail": {"message": text}, "error": text}


ProgressCallback = Callable[[dict], Awaitable[None] | None]


class Progress:
    """Sends progress messages to a callback (sync or async, or None).

    Per-id byte counts are throttled to one message per
    :data:`UPDATE_INTERVAL`; status changes always go through.  A callback
    that raises (a client that went away) is forgotten, so that the
    operation itself runs to completion, as dockerd does.
    """

    def __init__(self, callback: ProgressCallback | None = None):
        self._callback = callback
        self._last: dict[str, float] = {}
        self.messages = 0

    async def send(self, msg: dict) -> None:
        if self._callback is None:
            return
        self.messages += 1
        try:
            result = self._callback(msg)
            if inspect.isawaitable(result):
                await result
        except (ConnectionError, RuntimeError, OSError):
            self._callback = None

    async def status(self, status: str, id: str | None = None) -> None:
        await self.send(message(status, id))

    async def update(self, status: str, id: str, current: int, total: int,
                     force: bool = False) -> None:
        """A byte count (``Downloading``, ``Extracting``, ``Pushing``), throttled."""
        now = time.monotonic()
        if not force and now - self._last.get(id, 0.0) < UPDATE_INTERVAL and current < total:
            return
        self._last[id] = now
        await self.send(message(status, id, current, total))
