"""The streaming protocols (pallet.streaming) against their specifications:
RFC 6455's examples for WebSocket, the frame layouts of SPDY/3.1 and its
header dictionary, and Kubernetes' channel conventions.  Pure logic; the
same code talks to the real clients (crictl) in test_crictl_*.py."""
from __future__ import annotations

import json
import struct
import zlib

import pytest

from pallet.streaming import channels, http1, spdy, websocket


# --- WebSocket (RFC 6455) -----------------------------------------------------------------

def test_accept_key_of_section_1_3():
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_examples_of_section_5_7():
    r = websocket.Reader(require_mask=False)
    # a single-frame unmasked text message
    assert r.feed(bytes([0x81, 0x05]) + b"Hello") == [websocket.Message(websocket.TEXT, b"Hello")]
    # a single-frame masked text message
    masked = bytes([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])
    assert websocket.Reader().feed(masked) == [websocket.Message(websocket.TEXT, b"Hello")]
    # a fragmented unmasked text message, fed a byte at a time
    out = []
    for b in bytes([0x01, 0x03]) + b"Hel" + bytes([0x80, 0x02]) + b"lo":
        out += r.feed(bytes([b]))
    assert out == [websocket.Message(websocket.TEXT, b"Hello")]
    # unmasked ping, masked pong
    assert r.feed(bytes([0x89, 0x05]) + b"Hello") == [websocket.Message(websocket.PING, b"Hello")]
    pong = bytes([0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])
    assert websocket.Reader().feed(pong) == [websocket.Message(websocket.PONG, b"Hello")]
    # 256 bytes and 64 KiB in one unmasked binary frame: 16- and 64-bit lengths
    assert websocket.encode(websocket.BINARY, b"x" * 256)[:4] == bytes([0x82, 0x7E, 0x01, 0x00])
    big = websocket.encode(websocket.BINARY, b"y" * 65536)
    assert big[:10] == bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
    assert r.feed(big) == [websocket.Message(websocket.BINARY, b"y" * 65536)]


def test_control_frame_between_fragments_and_errors():
    mask = b"\x01\x02\x03\x04"
    data = (websocket.encode(websocket.BINARY, b"ab", fin=False, mask=mask) +
            websocket.encode(websocket.PING, b"p", mask=mask) +
            websocket.encode(websocket.CONTINUATION, b"cd", mask=mask))
    assert websocket.Reader().feed(data) == [websocket.Message(websocket.PING, b"p"),
                                             websocket.Message(websocket.BINARY, b"abcd")]
    with pytest.raises(websocket.ProtocolError, match="must be masked"):
        websocket.Reader().feed(websocket.encode(websocket.BINARY, b"x"))
    with pytest.raises(websocket.ProtocolError, match="continuation without"):
        websocket.Reader().feed(websocket.encode(websocket.CONTINUATION, b"x", mask=mask))
    close = websocket.Reader().feed(websocket.encode(websocket.CLOSE, struct.pack(">H", 1000),
                                                     mask=mask))
    assert close[0].close_code == 1000
    assert websocket.close_frame(1000, "bye") == bytes([0x88, 5, 0x03, 0xe8]) + b"bye"


# --- HTTP/1.1 head ---------------------------------------------------------------------------------

def test_request_head():
    raw = (b"POST /exec/abc?x=1&x=2 HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
           b"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
           b"X-Stream-Protocol-Version: v3.channel.k8s.io\r\n\r\nrest")
    end = http1.head_end(raw)
    assert raw[end:] == b"rest"
    req = http1.parse_head(raw[:end])
    assert (req.method, req.path, req.query) == ("POST", "/exec/abc", {"x": ["1", "2"]})
    assert req.upgrade_to("spdy/3.1") and not req.upgrade_to("websocket")
    assert req.tokens("x-stream-protocol-version") == ["v4.channel.k8s.io", "v3.channel.k8s.io"]
    with pytest.raises(http1.BadRequest):
        http1.parse_head(b"GARBAGE\r\n\r\n")
    assert http1.response(404, body=b"no").startswith(b"HTTP/1.1 404 Not Found\r\n")


# --- SPDY/3.1 ---------------------------------------------------------------------------------------

def test_dictionary_of_section_2_6_10_1():
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"utf-,*,enq=0.")
    # the dictionary id a zlib stream compressed with it carries (RFC 1950 DICTID)
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    compressed = spdy.HeaderCompressor().compress({"streamType": "stdout"})
    assert compressed[2:6] == struct.pack(">I", 0xE3C6A7C2)


def test_frame_layouts():
    # control frame: C bit, version 3, type; flags; 24-bit length
    ping = spdy.control_frame(spdy.PING, 0, struct.pack(">I", 7))
    assert ping == bytes([0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 7])
    # data frame: stream id without the C bit; FIN flag
    assert spdy.data_frame(5, b"hi", spdy.FLAG_FIN) == bytes([0, 0, 0, 5, 1, 0, 0, 2]) + b"hi"
    reader = spdy.FrameReader()
    rst = spdy.control_frame(spdy.RST_STREAM, 0, struct.pack(">II", 3, spdy.CANCEL))
    window = spdy.control_frame(spdy.WINDOW_UPDATE, 0, struct.pack(">II", 3, 1000))
    unknown = spdy.control_frame(0x99, 0, b"ignored")
    frames = reader.feed(rst + window + unknown + ping[:5])
    assert [(f.type, f.stream_id, f.value) for f in frames] == \
        [(spdy.RST_STREAM, 3, spdy.CANCEL), (spdy.WINDOW_UPDATE, 3, 1000)]
    assert [(f.type, f.value) for f in reader.feed(ping[5:])] == [(spdy.PING, 7)]
    with pytest.raises(spdy.ProtocolError, match="version 2"):
        spdy.FrameReader().feed(bytes([0x80, 0x02, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]))


def test_header_block_round_trip_with_a_shared_context():
    c, d = spdy.HeaderCompressor(), spdy.HeaderDecompressor()
    for headers in ({"StreamType": "error"}, {"streamtype": "stdin", "x": ["a", "b"]}, {}):
        got = d.decompress(c.compress(headers))
        want = {k.lower(): ([v] if isinstance(v, str) else v) for k, v in headers.items()}
        assert got == want
    with pytest.raises(spdy.ProtocolError, match="appears twice"):
        spdy.decode_headers(struct.pack(">I", 2) + (struct.pack(">I", 1) + b"a" +
                                                    struct.pack(">I", 1) + b"b") * 2)


def _pump(a: spdy.Session, b: spdy.Session) -> list:
    return b.receive(a.data_to_send())


def test_sessions_streams_data_and_close():
    client, server = spdy.Session(server=False), spdy.Session(server=True)
    sid = client.open_stream({"streamtype": "stdin"})
    [opened] = _pump(client, server)
    assert opened == spdy.StreamOpened(1, {"streamtype": ["stdin"]}, False)
    server.reply(sid)
    assert _pump(server, client) == []
    client.send(sid, b"x" * (spdy.MAX_SEND + 10), fin=True)
    events = _pump(client, server)
    assert b"".join(e.data for e in events if isinstance(e, spdy.StreamData)) == \
        b"x" * (spdy.MAX_SEND + 10)
    assert events[-1] == spdy.StreamEnded(1)
    server.close_stream(sid)
    assert _pump(server, client) == [spdy.StreamEnded(1)]
    assert sid not in server.open and sid not in client.open
    # the peer's pings are echoed, ours are not
    client.ping(9)
    assert _pump(client, server) == [] and server.data_to_send() == \
        spdy.control_frame(spdy.PING, 0, struct.pack(">I", 9))
    server.go_away()
    assert _pump(server, client) == [spdy.GoAway(1, spdy.GOAWAY_OK)]


def test_session_refuses_bad_stream_ids_and_honours_reset():
    server = spdy.Session()
    client = spdy.Session(server=False)
    client.open_stream({"a": "1"})
    client._next_local = 1  # the same id again: a protocol error
    client.open_stream({"a": "2"})
    events = _pump(client, server)
    assert len(events) == 1
    [rst] = spdy.FrameReader().feed(server.data_to_send())
    assert (rst.type, rst.stream_id, rst.value) == (spdy.RST_STREAM, 1, spdy.PROTOCOL_ERROR)
    client._next_local = 3
    sid = client.open_stream({"a": "3"})
    assert _pump(client, server) == [spdy.StreamOpened(3, {"a": ["3"]}, False)]
    client.reset(sid)
    assert _pump(client, server) == [spdy.StreamReset(3, spdy.CANCEL)]
    assert 3 not in server.open


# --- Kubernetes' conventions ------------------------------------------------------------------

def test_negotiation_and_status_documents():
    offered = ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
    assert channels.negotiate(offered, channels.SPDY_VERSIONS) == channels.V5
    assert channels.negotiate(["v3.channel.k8s.io"], channels.WEBSOCKET_VERSIONS) is None
    assert channels.version_number(channels.V1) == 1
    assert channels.version_number(channels.V4) == 4
    assert json.loads(channels.exit_status(0)) == {"metadata": {}, "status": "Success"}
    doc = json.loads(channels.exit_status(3, ["sh", "-c", "exit 3"]))
    assert doc["reason"] == "NonZeroExitCode"
    assert doc["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert channels.error_payload(channels.V2, code=0) == b""
    assert channels.error_payload(channels.V2, message="boom") == b"boom"
    assert json.loads(channels.error_payload(channels.V4, message="boom"))["message"] == "boom"


def test_size_decoder_across_reads():
    d = channels.SizeDecoder()
    assert d.feed(b'{"Width":80,') == []
    assert d.feed(b'"Height":24}{"Width":100,"Height":50}\n{"Wid') == [(80, 24), (100, 50)]
    assert d.feed(b'th":1,"Height":2}') == [(1, 2)]
    assert channels.port_prefix(8080) == b"\x90\x1f"
