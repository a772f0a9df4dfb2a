"""The shim's ttrpc server (one thread, a poll loop) against ttrpc.Client, and raw frames."""
from __future__ import annotations

import os
import socket
import tempfile
import threading
import time

import pytest

from pallet.core import errors
from pallet.proto.containerd.task.v2 import shim_pb2 as pb
from pallet.ttrpc import protocol as ttrpc
from pallet.proto.wire import Empty
from pallet.proto import shim_task as m
from pallet.shim.loop import Deferred, Loop
from pallet.shim.main import bind_socket
from pallet.shim.server import AfterReply, Server

T = "containerd.task.v2.Task"


@pytest.fixture
def server():
    d = tempfile.mkdtemp(prefix="pl-ls", dir="/tmp")
    path = os.path.join(d, "s")
    loop = Loop()
    waiting: list[Deferred] = []
    done = threading.Event()

    def state(req):
        if req.id == "missing":
            raise errors.NotFound(f"task {req.id}: not found")
        if req.id == "boom":
            raise RuntimeError("something broke")
        if req.id == "later":
            d = Deferred()
            loop.call_later(0.05, lambda: d.resolve(m.StateResponse(id="later", pid=7)))
            return d
        return m.StateResponse(id=req.id, pid=42)

    def wait(req):
        d = Deferred()
        waiting.append(d)
        return d

    def shutdown(req):
        return AfterReply(Empty(), done.set)

    srv = Server(loop, bind_socket(path), {T: {
        "State": (m.StateRequest, state), "Wait": (m.WaitRequest, wait),
        "Shutdown": (m.ShutdownRequest, shutdown)}})
    srv.start()

    def release():
        for dd in waiting:
            dd.resolve(m.WaitResponse(exit_status=7))
        waiting.clear()

    stop, release_now = threading.Event(), threading.Event()

    def tick():
        if release_now.is_set():
            release_now.clear()
            release()
        if stop.is_set():
            loop.stop()
            return
        loop.call_later(0.02, tick)

    tick()
    t = threading.Thread(target=loop.run, daemon=True)
    t.start()
    srv.path, srv.release, srv.done = path, release_now, done
    yield srv
    stop.set()
    t.join(5)
    srv.close(path)
    os.rmdir(d)


def test_calls_errors_deferred_and_after_reply(server):
    with ttrpc.Client("unix://" + server.path) as c:
        assert c.call(T, "State", pb.StateRequest(id="a"), pb.StateResponse).pid == 42
        assert c.call(T, "State", pb.StateRequest(id="later"), pb.StateResponse).pid == 7
        with pytest.raises(errors.NotFound, match="missing"):
            c.call(T, "State", pb.StateRequest(id="missing"), pb.StateResponse)
        with pytest.raises(errors.PalletError, match="something broke"):
            c.call(T, "State", pb.StateRequest(id="boom"), pb.StateResponse)
        with pytest.raises(errors.NotImplementedYet):
            c.call(T, "Nope", pb.StateRequest(id="a"))
        with pytest.raises(errors.NotImplementedYet):
            c.call("other.Service", "State", pb.StateRequest(id="a"))
        with pytest.raises(errors.InvalidArgument):
            c.call(T, "State", b"\x0a\x10abc")
        c.call(T, "Shutdown", pb.ShutdownRequest(id="a"))
        assert server.done.wait(5)


def test_pending_wait_does_not_hold_up_other_calls(server):
    with ttrpc.Client(server.path) as c:
        got = {}
        t = threading.Thread(target=lambda: got.setdefault(
            "wait", c.call(T, "Wait", pb.WaitRequest(id="a"), pb.WaitResponse)))
        t.start()
        time.sleep(0.1)
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(c.call(
            T, "State", pb.StateRequest(id=f"x{i}"), pb.StateResponse).id)) for i in range(20)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(5)
        assert sorted(results) == sorted(f"x{i}" for i in range(20))
        assert t.is_alive()
        server.release.set()
        t.join(5)
        assert got["wait"].exit_status == 7


def test_raw_frames_oversized_even_stream_and_split_writes(server):
    s = socket.socket(socket.AF_UNIX)
    s.connect(server.path)
    try:
        big = ttrpc.MAX_MESSAGE_SIZE + 10
        s.sendall(ttrpc.HEADER.pack(big, 1, ttrpc.TYPE_REQUEST, 0) + b"\0" * big)
        sid, mtype, _, data = ttrpc.read_frame(s)
        assert (sid, mtype) == (1, ttrpc.TYPE_RESPONSE) and ttrpc.decode_response(data)[0] == 8
        body = ttrpc.encode_request(T, "State", pb.StateRequest(id="a").SerializeToString())
        s.sendall(ttrpc.frame(2, ttrpc.TYPE_REQUEST, 0, body))
        sid, _, _, data = ttrpc.read_frame(s)
        assert sid == 2 and ttrpc.decode_response(data)[0] == 3
        # a request written a byte at a time is still one request
        frame = ttrpc.frame(3, ttrpc.TYPE_REQUEST, 0, body)
        for i in range(len(frame)):
            s.send(frame[i:i + 1])
        sid, _, _, data = ttrpc.read_frame(s)
        code, _, payload = ttrpc.decode_response(data)
        assert sid == 3 and code == 0 and pb.StateResponse.FromString(payload).pid == 42
    finally:
        s.close()
