"""A small Docker Engine API client: http.client over a unix or tcp socket.

Only the standard library: ``http.client`` (with an AF_UNIX subclass of
HTTPConnection), ``socket`` and ``json``, so that the CLI starts fast.  The
API version is negotiated once per process with ``/_ping``.
"""

import http.client
import json
import os
import socket
import struct
from urllib.parse import quote, urlencode

#: Highest API version this client speaks; servers below it are followed down.
MAX_API_VERSION = "1.43"
#: Used when the server does not say (no API-Version header on /_ping): our own
#: daemon is the one most likely to omit it, and it speaks the newest version.
FALLBACK_API_VERSION = MAX_API_VERSION
DEFAULT_HOST = "unix:///run/pallet/pallet.sock"


class DaemonError(Exception):
    """The daemon answered with an error status; ``message`` is its JSON message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self):
        return "Error response from daemon: " + self.message


class ConnectError(Exception):
    """The daemon's socket could not be reached."""

    def __init__(self, host, cause=None):
        self.host = host
        self.cause = cause
        if isinstance(cause, PermissionError):
            msg = ("permission denied while trying to connect to the Docker daemon socket at %s"
                   % host)
        else:
            msg = "Cannot connect to the Docker daemon at %s. Is the docker daemon running?" % host
        super().__init__(msg)


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection whose transport is an AF_UNIX stream socket."""

    def __init__(self, path, timeout=None):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.timeout is not None:
                sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def parse_host(host):
    """Split a ``-H`` value into (scheme, address): ('unix', path) or ('tcp', (host, port))."""
    if not host:
        host = DEFAULT_HOST
    if host.startswith("unix://"):
        path = host[len("unix://"):]
        if not path:
            raise ValueError("invalid host %r: no socket path" % host)
        return "unix", path
    if host.startswith("/"):
        return "unix", host
    if host.startswith(("tcp://", "http://", "https://")) or "://" not in host:
        rest = host.split("://", 1)[-1].split("/", 1)[0]
        if rest.startswith("["):
            hostpart, _, port = rest[1:].partition("]")
            port = port.lstrip(":")
        elif rest.count(":") == 1:
            hostpart, _, port = rest.partition(":")
        else:
            hostpart, port = rest, ""
        try:
            port = int(port) if port else 2375
        except ValueError:
            raise ValueError("invalid host %r: bad port" % host) from None
        return "tcp", (hostpart or "127.0.0.1", port)
    raise ValueError("invalid host %r: only unix:// and tcp:// are supported" % host)


class Response:
    """An HTTP response whose status was success; wraps http.client's response."""

    def __init__(self, conn, resp):
        self.conn = conn
        self.raw = resp
        self.status = resp.status
        self.headers = resp.headers

    def read(self, n=None):
        return self.raw.read() if n is None else self.raw.read(n)

    def read1(self, n=65536):
        return self.raw.read1(n)

    def json(self):
        data = self.raw.read()
        self.close()
        return json.loads(data) if data.strip() else None

    def readexactly(self, n):
        """Read exactly *n* bytes, or fewer only at end of stream."""
        buf = b""
        while len(buf) < n:
            chunk = self.raw.read(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return buf

    def json_stream(self):
        """Yield each JSON object of a newline-delimited (or concatenated) JSON stream."""
        import codecs
        decoder = json.JSONDecoder()
        text = codecs.getincrementaldecoder("utf-8")("replace")
        buf = ""
        while True:
            chunk = self.raw.read1(65536)
            if not chunk:
                break
            buf += text.decode(chunk)
            while True:
                buf = buf.lstrip()
                if not buf:
                    break
                try:
                    obj, end = decoder.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                yield obj
        buf = buf.strip()
        if buf:
            yield json.loads(buf)

    def close(self):
        try:
            self.raw.close()
        finally:
            self.conn.close()


class Hijacked:
    """A connection taken over after ``101 Switching Protocols`` (attach, exec start)."""

    def __init__(self, sock, buffered, content_type):
        self.sock = sock
        self._buf = buffered
        self.content_type = content_type

    def recv(self, n=65536):
        if self._buf:
            data, self._buf = self._buf[:n], self._buf[n:]
            return data
        try:
            return self.sock.recv(n)
        except ConnectionResetError:
            return b""

    def recvexactly(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.recv(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return buf

    def send(self, data):
        self.sock.sendall(data)

    def close_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.sock.close()


def iter_frames(read_exactly):
    """Yield (stream, payload) from docker's multiplexed stream.

    Each frame is an 8-byte header (stream type: 0 stdin, 1 stdout, 2 stderr,
    3 system error; three zero bytes; big-endian uint32 payload size) and the
    payload.
    """
    while True:
        header = read_exactly(8)
        if len(header) < 8:
            return
        stream, size = header[0], struct.unpack(">I", header[4:8])[0]
        payload = read_exactly(size) if size else b""
        yield stream, payload
        if len(payload) < size:
            return


class Client:
    """Talks to one daemon; every call opens its own connection (cheap on unix)."""

    def __init__(self, host=None, tls=None, api_version=None):
        self.host = host or DEFAULT_HOST
        self.scheme, self.address = parse_host(self.host)
        self.tls = tls  # None, or dict(ca=, cert=, key=, verify=)
        self._version = api_version
        self.server_api_version = None

    # -- transport --------------------------------------------------------------
    def _connection(self, timeout=None):
        if self.scheme == "unix":
            return UnixHTTPConnection(self.address, timeout=timeout)
        host, port = self.address
        if self.tls is not None:
            import ssl
            ctx = ssl.create_default_context(cafile=self.tls.get("ca") or None)
            if not self.tls.get("verify"):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if self.tls.get("cert"):
                ctx.load_cert_chain(self.tls["cert"], self.tls.get("key"))
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _send(self, method, path, body=None, headers=None, timeout=None):
        conn = self._connection(timeout)
        hdrs = {"User-Agent": "pallet-cli"}
        if headers:
            hdrs.update(headers)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=hdrs)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as e:
            conn.close()
            raise ConnectError(self.host, e) from None
        except socket.gaierror as e:
            conn.close()
            raise ConnectError(self.host, e) from None
        except BrokenPipeError:
            # the daemon may answer (e.g. an error) before reading a large body
            pass
        return conn

    def _receive(self, conn):
        try:
            resp = conn.getresponse()
        except (ConnectionResetError, http.client.RemoteDisconnected) as e:
            conn.close()
            raise ConnectError(self.host, e) from None
        if resp.status >= 400:
            data = resp.read()
            conn.close()
            raise DaemonError(resp.status, _error_message(resp, data))
        return Response(conn, resp)

    # -- version negotiation ----------------------------------------------------
    @property
    def version(self):
        if self._version is None:
            self._version = self.negotiate()
        return self._version

    def negotiate(self):
        """Ask /_ping for the server's API version and pick min(server, ours)."""
        env = os.environ.get("PALLET_API_VERSION") or os.environ.get("DOCKER_API_VERSION")
        if env:
            return env.lstrip("v")
        conn = self._send("GET", "/_ping")
        try:
            resp = conn.getresponse()
            resp.read()
            server = resp.headers.get("API-Version")
        except (ConnectionResetError, http.client.RemoteDisconnected) as e:
            raise ConnectError(self.host, e) from None
        finally:
            conn.close()
        self.server_api_version = server
        if not server:
            return FALLBACK_API_VERSION
        return server if _vtuple(server) < _vtuple(MAX_API_VERSION) else MAX_API_VERSION

    def url(self, path, params=None):
        """``/v{version}{path}?{params}``; params with None values are left out."""
        q = ""
        if params:
            items = []
            for k, v in params.items():
                if v is None:
                    continue
                if v is True:
                    v = "1"
                elif v is False:
                    v = "0"
                items.append((k, v))
            if items:
                q = "?" + urlencode(items)
        return "/v%s%s%s" % (self.version, path, q)

    # -- requests ---------------------------------------------------------------
    def request(self, method, path, params=None, body=None, headers=None, timeout=None):
        """Send a request; return a Response (status < 400) or raise DaemonError."""
        url = self.url(path, params)
        return self._receive(self._send(method, url, body, headers, timeout))

    def get(self, path, params=None):
        return self.request("GET", path, params).json()

    def post(self, path, params=None, body=None):
        return self.request("POST", path, params, body).json()

    def delete(self, path, params=None):
        return self.request("DELETE", path, params).json()

    def start_request(self, method, path, params=None, body=None, header_timeout=2.0):
        """Send a request now and return a callable that waits for its response.

        Used for ``/containers/{id}/wait``, which must be registered with the
        daemon before the container starts and answers only when it exits.
        dockerd sends the response headers as soon as the wait is registered;
        waiting for them (up to *header_timeout*) closes the race with a fast
        container, and a daemon that holds its headers back still works.
        """
        conn = self._send(method, self.url(path, params), body)
        ready = False
        if conn.sock is not None:
            import select
            ready = bool(select.select([conn.sock], [], [], header_timeout)[0])
        if ready:
            resp = self._receive(conn)
            return lambda: resp
        return lambda: self._receive(conn)

    def hijack(self, path, params=None, body=None):
        """POST with ``Upgrade: tcp`` and return the raw bidirectional stream."""
        url = self.url(path, params)
        conn = self._connection()
        try:
            conn.connect()
        except (FileNotFoundError, ConnectionRefusedError, PermissionError, socket.gaierror) as e:
            raise ConnectError(self.host, e) from None
        sock = conn.sock
        payload = json.dumps(body).encode() if body is not None else b""
        head = ["POST %s HTTP/1.1" % url, "Host: %s" % ("docker" if self.scheme == "unix" else
                                                         "%s:%d" % self.address),
                "User-Agent: pallet-cli", "Connection: Upgrade", "Upgrade: tcp"]
        if body is not None:
            head += ["Content-Type: application/json", "Content-Length: %d" % len(payload)]
        else:
            head += ["Content-Type: text/plain", "Content-Length: 0"]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                sock.close()
                raise ConnectError(self.host, ConnectionResetError("connection closed"))
            buf += chunk
        head_raw, _, rest = buf.partition(b"\r\n\r\n")
        lines = head_raw.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            sock.close()
            raise DaemonError(500, "bad response from daemon: %r" % lines[0]) from None
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        if status >= 400:
            body_bytes = rest
            length = int(headers.get("content-length", "0") or 0)
            chunked = headers.get("transfer-encoding", "").lower() == "chunked"
            sock.settimeout(10)
            try:
                while (chunked and not body_bytes.endswith(b"0\r\n\r\n")) or \
                        (not chunked and len(body_bytes) < length):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    body_bytes += chunk
            except OSError:
                pass
            sock.close()
            if chunked:
                body_bytes = _dechunk(body_bytes)
            raise DaemonError(status, _error_text(headers.get("content-type", ""), body_bytes))
        return Hijacked(sock, rest, headers.get("content-type", ""))


def _vtuple(v):
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


def _dechunk(data):
    out = b""
    while data:
        line, _, data = data.partition(b"\r\n")
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


def _error_text(content_type, data):
    if "json" in content_type:
        try:
            obj = json.loads(data)
            if isinstance(obj, dict) and "message" in obj:
                return str(obj["message"])
        except ValueError:
            pass
    text = data.decode("utf-8", "replace").strip()
    return text or "unknown error"


def _error_message(resp, data):
    return _error_text(resp.headers.get("Content-Type", "") or "json", data)


def quote_path(s):
    """Quote one path segment (container names, image references) for the URL."""
    return quote(s, safe="/:@")


def api_at_least(client, version):
    """True when the negotiated API version is *version* or newer."""
    return _vtuple(client.version) >= _vtuple(version)
