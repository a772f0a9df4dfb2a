"""ttrpc framing, server and client, against each other and byte for byte."""
from __future__ import annotations

import os
import socket
import tempfile
import threading
import time

import pytest

from pallet.core import errors
from pallet.proto import ttrpc_pb2
from pallet.proto.containerd.task.v2 import shim_pb2 as pb
from pallet.ttrpc import protocol as ttrpc


def test_envelopes_match_the_generated_messages():
    raw = ttrpc.encode_request("containerd.task.v2.Task", "State", b"\x0a\x01x", 5_000_000_000,
                               (("containerd-namespace-ttrpc", "default"),))
    msg = ttrpc_pb2.Request()
    msg.ParseFromString(raw)
    assert (msg.service, msg.method, msg.payload, msg.timeout_nano) == \
        ("containerd.task.v2.Task", "State", b"\x0a\x01x", 5_000_000_000)
    assert [(kv.key, kv.value) for kv in msg.metadata] == [("containerd-namespace-ttrpc", "default")]
    back = ttrpc.decode_request(msg.SerializeToString())
    assert (back.service, back.method, back.payload, back.timeout_nano, back.metadata) == \
        ("containerd.task.v2.Task", "State", b"\x0a\x01x", 5_000_000_000,
         (("containerd-namespace-ttrpc", "default"),))

    resp = ttrpc_pb2.Response()
    resp.ParseFromString(ttrpc.encode_response(5, "task x: not found", b""))
    assert (resp.status.code, resp.status.message) == (5, "task x: not found")
    ok = ttrpc_pb2.Response(payload=b"abc")
    assert ttrpc.decode_response(ok.SerializeToString()) == (0, "", b"abc")


def test_header_layout():
    data = ttrpc.frame(3, ttrpc.TYPE_REQUEST, 0, b"hello")
    assert data[:10] == bytes([0, 0, 0, 5, 0, 0, 0, 3, 1, 0])
    with pytest.raises(errors.PalletError):
        ttrpc.frame(1, ttrpc.TYPE_REQUEST, 0, b"x" * (ttrpc.MAX_MESSAGE_SIZE + 1))


@pytest.fixture
def server():
    d = tempfile.mkdtemp(prefix="pl-tt", dir="/tmp")
    path = os.path.join(d, "s")
    release = threading.Event()

    def state(req):
        if req.id == "missing":
            raise errors.NotFound(f"task {req.id}: not found")
        if req.id == "dup":
            raise errors.AlreadyExists("task dup: already exists")
        if req.id == "busy":
            raise errors.FailedPrecondition("task busy: running")
        if req.id == "bad":
            raise errors.InvalidArgument("bad id")
        if req.id == "boom":
            raise RuntimeError("something broke")
        return pb.StateResponse(id=req.id, pid=42)

    def wait(req):
        release.wait(10)
        return pb.WaitResponse(exit_status=7)

    srv = ttrpc.Server(path, {"containerd.task.v2.Task": {
        "State": (pb.StateRequest, state), "Wait": (pb.WaitRequest, wait),
        "Pause": (None, lambda _: (_ for _ in ()).throw(errors.NotImplementedYet("no pause"))),
    }}).start()
    srv.release = release
    yield srv
    release.set()
    srv.close()
    os.rmdir(d)


def test_call_and_error_mapping(server):
    with ttrpc.Client("unix://" + server.socket_path) as c:
        resp = c.call("containerd.task.v2.Task", "State", pb.StateRequest(id="a"), pb.StateResponse)
        assert (resp.id, resp.pid) == ("a", 42)
        for tid, cls in (("missing", errors.NotFound), ("dup", errors.AlreadyExists),
                         ("busy", errors.FailedPrecondition), ("bad", errors.InvalidArgument)):
            with pytest.raises(cls) as info:
                c.call("containerd.task.v2.Task", "State", pb.StateRequest(id=tid), pb.StateResponse)
            assert tid in str(info.value) or "bad id" in str(info.value)
        with pytest.raises(errors.PalletError, match="something broke"):
            c.call("containerd.task.v2.Task", "State", pb.StateRequest(id="boom"), pb.StateResponse)
        with pytest.raises(errors.NotImplementedYet, match="no pause"):
            c.call("containerd.task.v2.Task", "Pause", pb.PauseRequest(id="a"))
        with pytest.raises(errors.NotImplementedYet):
            c.call("containerd.task.v2.Task", "Nope", pb.PauseRequest(id="a"))
        with pytest.raises(errors.NotImplementedYet):
            c.call("other.Service", "State", pb.StateRequest(id="a"))


def test_long_call_does_not_block_others(server):
    c = ttrpc.Client(server.socket_path)
    try:
        got = {}
        t = threading.Thread(target=lambda: got.setdefault(
            "wait", c.call("containerd.task.v2.Task", "Wait", pb.WaitRequest(id="a"),
                           pb.WaitResponse)))
        t.start()
        time.sleep(0.1)
        # several callers share the connection while Wait is pending
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(c.call(
            "containerd.task.v2.Task", "State", pb.StateRequest(id=f"x{i}"),
            pb.StateResponse).id)) for i in range(20)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(5)
        assert sorted(results) == sorted(f"x{i}" for i in range(20))
        assert t.is_alive()
        server.release.set()
        t.join(5)
        assert got["wait"].exit_status == 7
    finally:
        c.close()


def test_timeout_and_closed_connection(server):
    c = ttrpc.Client(server.socket_path)
    with pytest.raises(errors.PalletError, match="deadline exceeded"):
        c.call("containerd.task.v2.Task", "Wait", pb.WaitRequest(id="a"), pb.WaitResponse,
               timeout=0.2)
    box = {}

    def waiter():
        try:
            c.call("containerd.task.v2.Task", "Wait", pb.WaitRequest(id="a"), pb.WaitResponse)
        except errors.PalletError as e:
            box["err"] = e

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.1)
    server.close()
    t.join(5)
    assert isinstance(box.get("err"), errors.Unavailable)
    with pytest.raises(errors.Unavailable):
        c.call("containerd.task.v2.Task", "State", pb.StateRequest(id="a"), pb.StateResponse)
    c.close()


def test_raw_frames_oversized_and_even_stream(server):
    s = socket.socket(socket.AF_UNIX)
    s.connect(server.socket_path)
    try:
        # a frame longer than 4 MiB is skipped and answered RESOURCE_EXHAUSTED
        big = ttrpc.MAX_MESSAGE_SIZE + 10
        s.sendall(ttrpc.HEADER.pack(big, 1, ttrpc.TYPE_REQUEST, 0) + b"\0" * big)
        sid, mtype, _, data = ttrpc.read_frame(s)
        assert (sid, mtype) == (1, ttrpc.TYPE_RESPONSE)
        assert ttrpc.decode_response(data)[0] == 8
        # an even (server-side) stream id is refused
        body = ttrpc.encode_request("containerd.task.v2.Task", "State",
                                    pb.StateRequest(id="a").SerializeToString())
        s.sendall(ttrpc.frame(2, ttrpc.TYPE_REQUEST, 0, body))
        sid, _, _, data = ttrpc.read_frame(s)
        assert sid == 2 and ttrpc.decode_response(data)[0] == 3
        # and the connection still serves
        s.sendall(ttrpc.frame(3, ttrpc.TYPE_REQUEST, 0, body))
        sid, _, _, data = ttrpc.read_frame(s)
        code, _, payload = ttrpc.decode_response(data)
        assert sid == 3 and code == 0
        assert pb.StateResponse.FromString(payload).pid == 42
    finally:
        s.close()
