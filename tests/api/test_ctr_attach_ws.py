"""``GET /containers/{id}/attach/ws``: docker's attach over a websocket, driven
by aiohttp's websocket client (a real RFC 6455 client) on palletd's socket."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

pytestmark = pytest.mark.root


def _id(r) -> str:
    return r.stdout.decode().strip()


def _wait_for(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


async def _session(d):
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=d.sock))


async def _collect(ws, until: bytes, timeout: float = 10.0):
    """Messages until their bytes contain ``until``: (bytes, set of message types)."""
    got, kinds = b"", set()
    deadline = time.monotonic() + timeout
    while until not in got:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            break
        kinds.add(msg.type)
        got += msg.data if isinstance(msg.data, bytes) else msg.data.encode()
    return got, kinds


def test_ws_attach_stdin_stdout_and_detach(palletd):
    cid = _id(palletd.docker("run", "-d", "-i", "busybox", "cat"))
    try:
        async def run():
            async with await _session(palletd) as s:
                url = (f"http://docker/v1.43/containers/{cid}/attach/ws"
                       "?stream=1&stdin=1&stdout=1&stderr=1")
                async with s.ws_connect(url) as ws:
                    await ws.send_bytes(b"over the websocket\n")
                    got, kinds = await _collect(ws, b"over the websocket\n")
                    assert got == b"over the websocket\n"
                    assert kinds == {aiohttp.WSMsgType.BINARY}  # API >= 1.28
                    await ws.send_str("as text too\n")
                    got, _ = await _collect(ws, b"as text too\n")
                    assert got == b"as text too\n"
                    await ws.send_bytes(b"\x10\x11")  # ctrl-p ctrl-q: detach
                    msg = await ws.receive(timeout=10)
                    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        asyncio.run(run())
        # detaching leaves the container running, its stdin open
        info = json.loads(palletd.docker("inspect", cid).stdout)[0]
        assert info["State"]["Running"] is True
    finally:
        palletd.docker("rm", "-f", cid, check=False)


def test_ws_attach_logs_streams_and_versions(palletd):
    cid = _id(palletd.docker("run", "-d", "busybox", "sh", "-c",
                             "echo to-out; echo to-err >&2; sleep 300"))
    try:
        _wait_for(lambda: b"to-err" in palletd.docker("logs", cid).stderr)

        async def replay(version, query):
            async with await _session(palletd) as s:
                url = f"http://docker/{version}/containers/{cid}/attach/ws?logs=1&{query}"
                async with s.ws_connect(url) as ws:
                    got, kinds = b"", set()
                    while True:
                        try:
                            msg = await ws.receive(timeout=1.5)
                        except asyncio.TimeoutError:
                            break
                        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                            break
                        kinds.add(msg.type)
                        got += msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                    return got, kinds
        # API 1.42 and later: only the streams asked for, unframed
        got, kinds = asyncio.run(replay("v1.43", "stdout=1"))
        assert got == b"to-out\n" and kinds == {aiohttp.WSMsgType.BINARY}
        # before 1.42 the stream parameters are ignored; before 1.28 text messages
        got, kinds = asyncio.run(replay("v1.27", "stdout=1"))
        assert sorted(got.splitlines()) == [b"to-err", b"to-out"]
        assert kinds == {aiohttp.WSMsgType.TEXT}
    finally:
        palletd.docker("rm", "-f", cid, check=False)


def test_ws_attach_ends_with_the_container_and_refuses_before_upgrading(palletd):
    cid = _id(palletd.docker("run", "-d", "busybox", "sh", "-c", "sleep 1; echo bye"))
    try:
        async def run():
            async with await _session(palletd) as s:
                url = f"http://docker/v1.43/containers/{cid}/attach/ws?stream=1&stdout=1"
                async with s.ws_connect(url) as ws:
                    got, _ = await _collect(ws, b"bye\n")
                    assert got == b"bye\n"
                    msg = await ws.receive(timeout=15)  # the output ended: closed
                    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                # an unknown container: docker's JSON 404, no upgrade
                async with s.get("http://docker/v1.43/containers/pa-none/attach/ws?stream=1",
                                 headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                          "Sec-WebSocket-Version": "13",
                                          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
                                 ) as r:
                    assert r.status == 404
                    assert "No such container" in (await r.json())["message"]
                # not a websocket request at all: refused with a 4xx
                async with s.get(f"http://docker/v1.43/containers/{cid}/attach/ws") as r:
                    assert 400 <= r.status < 500
        asyncio.run(run())
        assert palletd.docker("wait", cid).stdout.strip() == b"0"
    finally:
        palletd.docker("rm", "-f", cid, check=False)
