"""The streaming protocols of Kubernetes' exec, attach and port-forward, as a
library: sans-I/O codecs a server drives over any byte stream.

* :mod:`.spdy` — SPDY/3.1 framing and sessions (draft-mbelshe-httpbis-spdy-00
  as "SPDY Protocol - Draft 3.1"): control and data frames, zlib-compressed
  header blocks with the protocol's dictionary, streams opened by the
  client and replied to by the server, PING echo, GOAWAY;
* :mod:`.websocket` — RFC 6455 framing for a server: the opening handshake's
  accept key, masked client frames, fragmentation, ping/pong and close;
* :mod:`.http1` — the HTTP/1.1 request head and the 101/4xx answers that
  start both upgrades;
* :mod:`.channels` — what Kubernetes puts on top: the remotecommand stream
  types and versions (``channel.k8s.io`` to ``v5.channel.k8s.io``), the
  WebSocket channel bytes, the exit status document of the error stream,
  the terminal size messages, and port-forward's stream headers and
  WebSocket port prefixes.

pallet-containerd's CRI plugin runs the server (plugins/api_cri/streaming.py).
"""
