"""What Kubernetes puts on top of SPDY and WebSocket for exec, attach and
port-forward (the protocols of k8s.io/apimachinery's remotecommand and
portforward packages, as kubelet's streaming server speaks them).

remotecommand: the client asks for a version (``X-Stream-Protocol-Version``
over SPDY, ``Sec-WebSocket-Protocol`` over WebSocket) and the server picks
the first one it also speaks.  Over SPDY the client opens one stream per
role, named by the ``streamtype`` header; over WebSocket each message
starts with the channel byte of its role.  From version 4 the error stream
carries a JSON ``Status`` (exit code included) instead of plain text; from
version 3 a resize stream carries terminal sizes as JSON objects; version 5
(WebSocket) adds channel 255, whose message ``[255, N]`` half-closes
channel N.

port-forward over SPDY: for each connection the client opens an error
stream and a data stream carrying the ``port`` and a shared ``requestid``.
Over WebSocket (``v4.channel.k8s.io``) the ports come in the query and
each gets two channels (data ``2i``, error ``2i+1``) whose first message
from the server is the port, little-endian.  Newer clients tunnel the SPDY
session itself in WebSocket binary messages (``SPDY/3.1+portforward.k8s.io``).
"""
from __future__ import annotations

import json
import struct

# --- remotecommand ------------------------------------------------------------------------

V1, V2, V3, V4, V5 = ("channel.k8s.io", "v2.channel.k8s.io", "v3.channel.k8s.io",
                      "v4.channel.k8s.io", "v5.channel.k8s.io")
#: what a server of each transport speaks, best first
SPDY_VERSIONS = (V5, V4, V3, V2, V1)
WEBSOCKET_VERSIONS = (V5, V4)

STREAM_TYPE = "streamtype"
ERROR, STDIN, STDOUT, STDERR, RESIZE = "error", "stdin", "stdout", "stderr", "resize"
#: WebSocket channel numbers of the roles
CHANNELS = {STDIN: 0, STDOUT: 1, STDERR: 2, ERROR: 3, RESIZE: 4}
CLOSE_CHANNEL = 255

# --- port-forward --------------------------------------------------------------------------

PORTFORWARD_V1 = "portforward.k8s.io"
PORT_HEADER, REQUEST_ID_HEADER = "port", "requestid"
DATA = "data"
#: the WebSocket subprotocol prefix of a SPDY session tunnelled in WebSocket messages
SPDY_TUNNEL_PREFIX = "SPDY/3.1+"
WEBSOCKET_PORTFORWARD_VERSIONS = (V4,)


def negotiate(offered, supported) -> str | None:
    """The first version the client offered that the server speaks (the
    client's order decides, as k8s.io/apimachinery's handshake does)."""
    for version in offered:
        if version in supported:
            return version
    return None


def version_number(version: str) -> int:
    """1 for ``channel.k8s.io``, N for ``vN.channel.k8s.io``."""
    head = version.split(".", 1)[0]
    return int(head[1:]) if head.startswith("v") and head[1:].isdigit() else 1


def exit_status(code: int, command=None) -> bytes:
    """The v4 error stream's document for a process that exited with ``code``."""
    if code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    what = f"error executing command {list(command)}, " if command else ""
    return json.dumps({
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: {what}exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}).encode()


def error_status(message: str) -> bytes:
    """The v4 error stream's document for a failure that is not an exit code."""
    return json.dumps({"metadata": {}, "status": "Failure", "message": message,
                       "reason": "InternalError", "code": 500}).encode()


def error_payload(version: str, *, code: int | None = None, message: str = "",
                  command=None) -> bytes:
    """What the error stream carries at the end of a session of ``version``:
    a ``Status`` from version 4, plain text (nothing on success) before."""
    if version_number(version) >= 4:
        return exit_status(code, command) if code is not None else error_status(message)
    if code is not None:
        return b"" if code == 0 else f"command terminated with exit code {code}".encode()
    return message.encode()


class SizeDecoder:
    """Terminal sizes from the resize stream: JSON objects one after another
    (``{"Width":80,"Height":24}``), possibly split across reads."""

    def __init__(self):
        self._buf = ""
        self._json = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self._buf += data.decode(errors="replace")
        out = []
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                return out
            try:
                obj, end = self._json.raw_decode(text)
            except ValueError:
                self._buf = text
                return out
            self._buf = text[end:]
            if isinstance(obj, dict):
                out.append((int(obj.get("Width") or 0), int(obj.get("Height") or 0)))


def port_prefix(port: int) -> bytes:
    """The first message of a WebSocket port-forward channel: the port, little-endian."""
    return struct.pack("<H", port)
