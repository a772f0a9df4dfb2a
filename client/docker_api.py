"""A small Docker Engine API client: HTTP/1.1 over a unix or tcp socket.

Only ``socket`` and ``json`` (``ssl`` when TLS is asked for): ``http.client``
and ``urllib`` would cost the CLI about 40 ms of imports (email.*, ssl) on
every run, so the little HTTP it needs is written here: one request per
connection, answers framed by Content-Length, chunked encoding or the end of
the connection.  The API version is negotiated once per process with /_ping.
"""

import os

import _socket  # the C module: ``socket`` would import enum, selectors, functools

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
        elif _is_ssl_error(cause):
            msg = "error during connect: %s: %s" % (_http_url(host), _ssl_text(cause))
        else:
            msg = "Cannot connect to the Docker daemon at %s. Is the docker daemon running?" % host
        super().__init__(msg)


class TLSConfigError(Exception):
    """The TLS files given to the client cannot be loaded."""

    def __init__(self, cause):
        what = getattr(cause, "filename", None)
        reason = getattr(cause, "strerror", None) or getattr(cause, "reason", None) or cause
        super().__init__("could not read TLS files%s: %s" % (" (%s)" % what if what else "",
                                                            str(reason).lower()))


def _is_ssl_error(e):
    import sys
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(e, ssl.SSLError)


def _ssl_text(e):
    reason = getattr(e, "verify_message", None) or getattr(e, "reason", None) or str(e)
    reason = str(reason).lower().replace("_", " ")
    if "certificate" in reason or "verify" in reason:
        return "tls: failed to verify certificate: %s" % reason
    return "remote error: tls: %s" % reason


def _http_url(host):
    return host.replace("tcp://", "https://", 1)


class _ScanContext:
    """What the C JSON scanner reads from json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scanner = []


def loads(data):
    """json.loads without importing json (and re, which json imports): the C
    scanner of ``_json`` does the work; json itself reports malformed input."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8")
    try:
        if not _scanner:
            import _json
            _scanner.append(_json.make_scanner(_ScanContext()))
        text = data.strip()
        obj, end = _scanner[0](text, 0)
        if end == len(text):
            return obj
    except (ImportError, StopIteration, ValueError, KeyError):
        pass
    import json
    return json.loads(data)


class ProtocolError(OSError):
    """The daemon's answer is not HTTP as expected."""


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(s, safe="/"):
    """urllib.parse.quote: percent-encode UTF-8 bytes outside the unreserved set."""
    ok = _SAFE | frozenset(safe.encode())
    return "".join(chr(b) if b in ok else "%%%02X" % b for b in s.encode())


def urlencode(items):
    return "&".join("%s=%s" % (quote(str(k), ""), quote(str(v), "")) for k, v in items)


class Headers(dict):
    """Response headers; ``get`` ignores case (keys are stored lower-cased)."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())


class HTTPResponse:
    """The status, headers and body of one answer, read from ``fp``."""

    def __init__(self, fp, method):
        self.fp = fp
        line = fp.readline(65537)
        if not line:
            raise ConnectionResetError("the daemon closed the connection without answering")
        parts = line.decode("latin-1").rstrip("\r\n").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProtocolError("bad response from daemon: %r" % line[:80])
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers = Headers()
        while True:
            h = fp.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._chunk_left = 0
        self._done = False
        length = self.headers.get("content-length")
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self._left = 0
        elif self._chunked:
            self._left = None
        elif length is not None and length.isdigit():
            self._left = int(length)
        else:
            self._left = None  # until the connection ends
        if self._left == 0:
            self._done = True

    def getheaders(self):
        return list(self.headers.items())

    def _next_chunk(self):
        line = self.fp.readline(65537)
        try:
            size = int(line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            raise ProtocolError("bad chunk header from daemon: %r" % line[:40]) from None
        if size == 0:
            while self.fp.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            self._done = True
        self._chunk_left = size

    def read1(self, n=65536):
        """Up to ``n`` bytes, waiting only when nothing is buffered; b"" at the end."""
        if self._done or n == 0:
            return b""
        if self._chunked:
            if self._chunk_left == 0:
                self._next_chunk()
                if self._done:
                    return b""
            data = self.fp.read1(min(n, self._chunk_left))
            if not data:
                self._done = True
                return b""
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self.fp.readline(3)  # the CRLF after the chunk
            return data
        if self._left is not None:
            n = min(n, self._left)
        data = self.fp.read1(n)
        if not data:
            self._done = True
            return b""
        if self._left is not None:
            self._left -= len(data)
            if self._left == 0:
                self._done = True
        return data

    def read(self, n=None):
        if n is None:
            parts = []
            while True:
                b = self.read1(1 << 20)
                if not b:
                    return b"".join(parts)
                parts.append(b)
        out = bytearray()
        while len(out) < n:
            b = self.read1(n - len(out))
            if not b:
                break
            out += b
        return bytes(out)

    def close(self):
        self._done = True
        try:
            self.fp.close()
        except OSError:
            pass


class SockReader:
    """readline()/read1() over a socket's recv(), with its own buffer."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self, n=65536):
        data = self.sock.recv(n)
        self.buf += data
        return bool(data)

    def readline(self, limit=65537):
        while True:
            i = self.buf.find(b"\n", 0, limit)
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            if len(self.buf) >= limit or not self._fill():
                line, self.buf = self.buf[:limit], self.buf[limit:]
                return line

    def read1(self, n=65536):
        if not self.buf:
            self._fill(max(n, 65536))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def close(self):
        self.buf = b""


class Connection:
    """One HTTP/1.1 request and its answer on a fresh socket."""

    def __init__(self, client, timeout=None):
        self.client = client
        self.timeout = timeout
        self.sock = None
        self.fp = None
        self.method = "GET"

    def connect(self):
        c = self.client
        if c.scheme == "unix":
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(c.address)
            except BaseException:
                sock.close()
                raise
        else:
            import socket
            sock = socket.create_connection(c.address, self.timeout)
            if c.tls is not None:
                try:
                    sock = c._ssl_context().wrap_socket(sock, server_hostname=c.address[0])
                except BaseException:
                    sock.close()
                    raise
        self.sock = sock

    def request(self, method, path, body=None, headers=None):
        if self.sock is None:
            self.connect()
        self.method = method
        c = self.client
        host = "api.moby.localhost" if c.scheme == "unix" else "%s:%d" % c.address
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: " + host]
        chunked = False
        if isinstance(body, str):
            body = body.encode()
        if body is None:
            if method in ("POST", "PUT"):
                lines.append("Content-Length: 0")
        elif isinstance(body, (bytes, bytearray, memoryview)):
            lines.append("Content-Length: %d" % len(body))
        else:
            chunked = True
            lines.append("Transfer-Encoding: chunked")
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sock = self.sock
        if body is None or chunked:
            sock.sendall(head)
        else:
            sock.sendall(head + bytes(body) if len(body) < 65536 else head)
            if len(body) >= 65536:
                sock.sendall(body)
        if chunked:
            chunks = iter(body.read, b"") if hasattr(body, "read") else body
            for chunk in chunks:
                if chunk:
                    sock.sendall(b"%x\r\n" % len(chunk) + bytes(chunk) + b"\r\n")
            sock.sendall(b"0\r\n\r\n")

    def getresponse(self):
        if self.fp is None:
            self.fp = SockReader(self.sock)
        return HTTPResponse(self.fp, self.method)

    def close(self):
        for f in (self.fp, self.sock):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


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
        return loads(data) if data.strip() else None

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
        import json
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


class BioTLS:
    """A TLS client stream over a blocking socket, with the records handled
    through memory BIOs so that the writing half can be closed alone.

    ``ssl.SSLSocket`` can neither send close_notify and keep reading, nor be
    read and written from two threads; a hijacked stream needs the first (the
    end of stdin is a close_notify, as the docker CLI sends it) and is driven
    by one thread with select() on ``fileno()``.
    """

    def __init__(self, raw, ctx, server_hostname):
        import ssl
        self._ssl = ssl
        self.raw = raw
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=False,
                                server_hostname=server_hostname)
        self._eof = False
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ssl.SSLEOFError("EOF occurred in violation of protocol")
        self._flush()

    def fileno(self):
        return self.raw.fileno()

    def settimeout(self, t):
        self.raw.settimeout(t)

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.raw.sendall(data)

    def _fill(self):
        data = self.raw.recv(65536)
        if not data:
            self.incoming.write_eof()
            self._eof = True
            return False
        self.incoming.write(data)
        return True

    def pending(self):
        """Bytes that can be had without reading the socket."""
        return self.obj.pending() + self.incoming.pending

    def sendall(self, data):
        view = memoryview(data)
        while view:
            n = self.obj.write(view)
            view = view[n:]
            self._flush()

    send = sendall

    def recv(self, n=65536):
        ssl = self._ssl
        while True:
            try:
                data = self.obj.read(n)
                self._flush()  # post-handshake messages (session tickets)
                return data
            except ssl.SSLWantReadError:
                self._flush()
                if self._eof or not self._fill():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def shutdown(self, how):
        """SHUT_WR sends our close_notify; reading goes on."""
        if how in (_socket.SHUT_WR, _socket.SHUT_RDWR):
            try:
                self.obj.unwrap()
            except (self._ssl.SSLWantReadError, self._ssl.SSLError):
                pass
            self._flush()

    def close(self):
        self.raw.close()


class Hijacked:
    """A connection taken over after ``101 Switching Protocols`` (attach, exec start)."""

    def __init__(self, sock, buffered, content_type):
        self.sock = sock
        self._buf = buffered
        self.content_type = content_type

    def fileno(self):
        return self.sock.fileno()

    def pending(self):
        """True when recv() can answer without waiting for the socket."""
        return bool(self._buf) or bool(getattr(self.sock, "pending", lambda: 0)())

    def recv(self, n=65536):
        if self._buf:
            data, self._buf = self._buf[:n], self._buf[n:]
            return data
        try:
            return self.sock.recv(n)
        except (ConnectionResetError, BrokenPipeError):
            return b""
        except OSError as e:
            if "SSL" in type(e).__name__:
                return b""
            raise

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
            self.sock.shutdown(_socket.SHUT_WR)
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
        stream, size = header[0], int.from_bytes(header[4:8], "big")
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
    def _ssl_context(self):
        import ssl
        try:
            ctx = ssl.create_default_context(cafile=self.tls.get("ca") or None)
            if not self.tls.get("verify"):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if self.tls.get("cert"):
                ctx.load_cert_chain(self.tls["cert"], self.tls.get("key"))
        except (OSError, ssl.SSLError) as e:
            raise TLSConfigError(e) from None
        return ctx

    def _connection(self, timeout=None):
        return Connection(self, timeout)

    def _raw_stream(self):
        """A connected socket (or BioTLS) for a hijacked request."""
        import ssl
        try:
            if self.scheme == "unix":
                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                try:
                    sock.connect(self.address)
                except BaseException:
                    sock.close()
                    raise
                return sock
            import socket
            sock = socket.create_connection(self.address)
            if self.tls is None:
                return sock
            try:
                return BioTLS(sock, self._ssl_context(), self.address[0])
            except BaseException:
                sock.close()
                raise
        except (OSError, ssl.SSLError) as e:
            raise ConnectError(self.host, e) from None

    def _send(self, method, path, body=None, headers=None, timeout=None):
        conn = self._connection(timeout)
        hdrs = {"User-Agent": "pallet-cli"}
        if headers:
            hdrs.update(headers)
        if isinstance(body, (dict, list)):
            import json
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=hdrs)
        except BrokenPipeError:
            # the daemon may answer (e.g. an error) before reading a large body
            pass
        except (FileNotFoundError, ConnectionRefusedError, PermissionError, _socket.gaierror,
                ConnectionResetError, OSError) as e:
            conn.close()
            raise ConnectError(self.host, e) from None
        return conn

    def _receive(self, conn):
        try:
            resp = conn.getresponse()
        except OSError as e:
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
        except OSError as e:
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
        sock = self._raw_stream()
        import json
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
            obj = loads(data)
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
