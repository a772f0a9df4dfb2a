"""The sockets palletd serves the Docker Engine API on, chosen with ``-H`` as
in dockerd:

- ``unix:///path``: mode 0660, owned by root and the group ``pallet`` (made
  with ``groupadd --system`` when it is missing) or the ``--group`` given;
- ``tcp://host:port``: TLS, normally mutual (``--tlsverify`` with
  ``--tlscacert``, ``--tlscert``, ``--tlskey``: a client whose certificate is
  not signed by that CA is refused during the handshake).  Plain tcp gives
  root on this machine to anyone who can reach the port, so it is refused
  unless ``--tls=false`` is said explicitly, and even then it is warned about;
- ``fd://`` / ``fd://N`` / ``fd://NAME``: sockets handed over by systemd
  (socket activation, sd_listen_fds(3): fds 3.. counted by ``LISTEN_FDS``,
  meant for the pid in ``LISTEN_PID``, optionally named by ``LISTEN_FDNAMES``).

Every listener is bound before anything else starts, so that a bad ``-H``
fails palletd at once with a clear message.
"""
from __future__ import annotations

import grp
import logging
import os
import socket
import subprocess
import sys

from pallet.core import errors

log = logging.getLogger("pallet.api_rest")

DEFAULT_UNIX_GROUP = "pallet"
DEFAULT_TCP_PORT = 2375
DEFAULT_TLS_PORT = 2376
SD_LISTEN_FDS_START = 3  # sd_listen_fds(3): the first passed fd


class TLSOptions:
    """The daemon's TLS flags as given (``tls`` None = not said at all)."""

    def __init__(self, tls: bool | None = None, verify: bool = False, cacert: str | None = None,
                 cert: str | None = None, key: str | None = None):
        self.tls = tls
        self.verify = verify
        self.cacert = cacert
        self.cert = cert
        self.key = key

    @property
    def enabled(self) -> bool:
        """TLS is on when asked with --tls or implied by --tlsverify."""
        return bool(self.verify or self.tls)

    @property
    def explicitly_off(self) -> bool:
        return self.tls is False and not self.verify

    def _default(self, name: str) -> str:
        # dockerd's defaults: DOCKER_CERT_PATH, else ~/.docker
        base = os.environ.get("DOCKER_CERT_PATH") or os.path.join(
            os.path.expanduser("~"), ".docker")
        return os.path.join(base, name)

    def context(self):
        """The server-side ssl.SSLContext these options describe."""
        import ssl

        cert = self.cert or self._default("cert.pem")
        key = self.key or self._default("key.pem")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise errors.ConfigError(f"could not load x509 key pair (cert: {cert!r}, key: "
                                     f"{key!r}): {_reason(e)}") from None
        if self.verify:
            ca = self.cacert or self._default("ca.pem")
            try:
                ctx.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as e:
                raise errors.ConfigError(f"could not read CA certificate {ca!r}: "
                                         f"{_reason(e)}") from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def _reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(getattr(e, "reason", None) or e).lower()


class Listener:
    """One bound, listening socket; ``ssl`` is the context to serve it with.

    A TLS listener is not given to aiohttp as is: see :class:`TLSTerminator`.
    """

    def __init__(self, name: str, sock: socket.socket, ssl=None, unlink: str | None = None):
        self.name = name
        self.sock = sock
        self.ssl = ssl
        self.unlink = unlink  # a socket file palletd made and removes on exit
        self.terminator: TLSTerminator | None = None

    def __iter__(self):
        # (name, sock) unpacking, as the first listeners were plain pairs
        return iter((self.name, self.sock))

    def __repr__(self) -> str:
        return f"Listener({self.name}{', tls' if self.ssl else ''})"

    def serve_tls(self, loop, protocol_factory) -> None:
        """Start terminating TLS on this listener; each connection's plaintext
        goes to ``protocol_factory`` (aiohttp's server) on ``loop``."""
        self.terminator = TLSTerminator(self, loop, protocol_factory)
        self.terminator.start()

    def close(self) -> None:
        if self.terminator is not None:
            self.terminator.stop()
        try:
            self.sock.close()
        except OSError:
            pass


class TLSTerminator:
    """Terminates TLS in threads and hands the plaintext to the event loop
    through a socketpair.

    asyncio's TLS transport cannot half-close: when a client sends its
    close_notify (the docker CLI does, right after the request of ``attach``
    or ``exec start`` when it has no stdin to send), asyncio shuts the whole
    connection down and the container's output is lost (sslproto:
    "returning true from eof_received() has no effect when using ssl").  Go's
    TLS, as dockerd uses it, keeps writing after the peer's close_notify.  So
    the TLS records are handled here with the blocking ``ssl`` module, one
    thread per connection (the API's connections are few), and a client's
    close_notify becomes a plain ``shutdown(SHUT_WR)`` on the socketpair,
    which the hijack code already treats as end of stdin.
    """

    HANDSHAKE_TIMEOUT = 10.0
    BUFFER_LIMIT = 1 << 20

    def __init__(self, listener: Listener, loop, protocol_factory):
        self.listener = listener
        self.loop = loop
        self.factory = protocol_factory
        self._stop_r, self._stop_w = os.pipe()
        self._stopped = False
        self._thread = None

    def start(self) -> None:
        import threading

        self.listener.sock.setblocking(False)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"tls-accept {self.listener.name}")
        self._thread.start()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5)
        for fd in (self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _accept_loop(self) -> None:
        import select
        import threading

        lsock = self.listener.sock
        while not self._stopped:
            try:
                ready, _, _ = select.select([lsock, self._stop_r], [], [])
            except (OSError, ValueError):
                return
            if self._stop_r in ready or self._stopped:
                return
            try:
                conn, peer = lsock.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                log.warning("accept on %s: %s", self.listener.name, _reason(e))
                continue
            threading.Thread(target=self._connection, args=(conn, peer), daemon=True,
                             name=f"tls {peer}").start()

    def _connection(self, raw: socket.socket, peer) -> None:
        import asyncio
        import ssl

        raw.setblocking(True)
        raw.settimeout(self.HANDSHAKE_TIMEOUT)
        try:
            tls = self.listener.ssl.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            # a client without a certificate signed by the CA ends here
            log.info("TLS handshake with %s on %s failed: %s", _peer(peer), self.listener.name,
                     _reason(e))
            raw.close()
            return
        ours, theirs = socket.socketpair()
        try:
            fut = asyncio.run_coroutine_threadsafe(
                self.loop.connect_accepted_socket(self.factory, sock=theirs), self.loop)
            fut.result(self.HANDSHAKE_TIMEOUT)
        except Exception as e:  # noqa: BLE001 — the loop is stopping, or gone
            log.debug("could not hand a TLS connection to the server: %s", e)
            for s in (tls, ours, theirs):
                s.close()
            return
        try:
            self._relay(tls, ours)
        finally:
            ours.close()
            _close_tls(tls)

    def _relay(self, tls, plain: socket.socket) -> None:
        import select
        import ssl

        tls.setblocking(False)
        plain.setblocking(False)
        to_plain, to_tls = bytearray(), bytearray()
        tls_eof = plain_eof = shut = False
        while True:
            rlist = []
            if not tls_eof and len(to_plain) < self.BUFFER_LIMIT:
                rlist.append(tls)
            if not plain_eof and len(to_tls) < self.BUFFER_LIMIT:
                rlist.append(plain)
            wlist = ([plain] if to_plain else []) + ([tls] if to_tls else [])
            if plain_eof and not to_tls:
                return  # the server is done: close the TLS connection
            if not rlist and not wlist:
                return
            # decrypted bytes may wait inside the ssl object: do not block then
            buffered = tls in rlist and tls.pending() > 0
            try:
                r, w, _ = select.select(rlist + [self._stop_r], wlist, [], 0 if buffered else None)
            except (OSError, ValueError):
                return
            if self._stop_r in r:
                return
            if tls in r or buffered:
                try:
                    data = tls.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    data = None
                except (ssl.SSLError, OSError):
                    data = b""
                if data == b"":
                    tls_eof = True
                elif data:
                    to_plain += data
            if plain in r:
                try:
                    data = plain.recv(65536)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    plain_eof = True
                elif data:
                    to_tls += data
            if plain in w and to_plain:
                try:
                    del to_plain[:plain.send(to_plain)]
                except BlockingIOError:
                    pass
                except OSError:
                    return
            if tls in w and to_tls:
                try:
                    del to_tls[:tls.send(to_tls)]
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except (ssl.SSLError, OSError):
                    return
            if tls_eof and not to_plain and not shut:
                # the client's close_notify (or FIN): end of its input only
                shut = True
                try:
                    plain.shutdown(socket.SHUT_WR)
                except OSError:
                    pass


def _close_tls(tls) -> None:
    """Send our close_notify without waiting for the peer's, then close."""
    import ssl

    try:
        tls.setblocking(False)
        tls.unwrap()
    except (ssl.SSLError, OSError, ValueError):
        pass
    try:
        tls.close()
    except OSError:
        pass


def _peer(peer) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    return str(peer)


# --- -H parsing -------------------------------------------------------------------

def parse_host(spec: str, default_socket: str, *, tls: bool = False) -> tuple[str, str]:
    """``-H`` values as dockerd reads them: ``unix:///path`` (``unix://`` alone is
    the default socket), ``tcp://host:port`` (port 2375, or 2376 with TLS),
    ``fd://`` and ``fd://N``; a bare ``/path`` is a unix socket."""
    spec = spec.strip()
    if not spec or spec == "unix://":
        return "unix", default_socket
    if spec.startswith("unix://"):
        return "unix", spec[len("unix://"):]
    if spec.startswith("/"):
        return "unix", spec
    if spec.startswith("tcp://") or spec.startswith(":"):
        rest = spec[len("tcp://"):] if spec.startswith("tcp://") else spec
        rest = rest.rstrip("/")
        if "/" in rest:
            raise errors.ConfigError(f"invalid -H {spec!r}: a tcp address has no path")
        host, port = _split_hostport(rest, spec)
        if port is None:
            port = DEFAULT_TLS_PORT if tls else DEFAULT_TCP_PORT
        return "tcp", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if spec.startswith("fd://"):
        return "fd", spec[len("fd://"):]
    raise errors.ConfigError(f"invalid -H {spec!r}: want unix://PATH, tcp://HOST:PORT or "
                             "fd://[N]")


def _split_hostport(rest: str, spec: str) -> tuple[str, int | None]:
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port[1:] if port.startswith(":") else port
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    elif rest.count(":") > 1:
        raise errors.ConfigError(f"invalid -H {spec!r}: put an IPv6 address in brackets")
    else:
        host, port = rest, ""
    host = host or "127.0.0.1"
    if port == "":
        return host, None
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise errors.ConfigError(f"invalid -H {spec!r}: bad port {port!r}")
    return host, int(port)


# --- unix -------------------------------------------------------------------------

def socket_group(group: str | None) -> int | None:
    """The gid the unix sockets get: ``--group`` (name or number), else ``pallet``,
    made with ``groupadd --system`` when it is missing.  An explicit group that
    does not exist is an error; a failure to make the default one only a warning."""
    if group is not None and group.isdigit():
        return int(group)
    name = group or DEFAULT_UNIX_GROUP
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        pass
    if group:
        raise errors.ConfigError(f"group {group!r} not found: create it (groupadd {group}) or "
                                 "choose another with --group")
    try:
        r = subprocess.run(["groupadd", "--system", name], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("could not create group %s for the API socket: %s", name, e)
        return None
    if r.returncode not in (0, 9):  # 9: the name is taken (made meanwhile)
        log.warning("could not create group %s for the API socket: %s", name,
                    r.stderr.strip() or f"groupadd exited {r.returncode}")
        return None
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        return None
    log.info("created group %s (gid %d) for the API socket", name, gid)
    return gid


def unix_listener(path: str, gid: int | None) -> Listener:
    """Bind ``path`` with mode 0660, owner root, group ``gid``."""
    if len(path.encode()) >= 108:
        raise errors.ConfigError(f"listen unix {path}: socket path longer than 107 bytes")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bind under umask 0177 so the file is never wider than 0600 before its
    # group is set (start-up is single-threaded: the umask change is safe)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    try:
        if gid is not None:
            os.chown(path, 0, gid)
        os.chmod(path, 0o660)
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return Listener(f"unix://{path}", sock, unlink=path)


# --- tcp --------------------------------------------------------------------------

def _plain_tcp(where: str, tls: TLSOptions) -> None:
    """Plain tcp only when --tls=false was said, and then with a warning line."""
    if not tls.explicitly_off:
        raise errors.ConfigError(
            f"listen {where}: refusing to serve the API on tcp without TLS, which would give "
            "root on this machine to anyone who can reach the port: use --tlsverify "
            "--tlscacert CA --tlscert CERT --tlskey KEY, or say --tls=false to accept an "
            "unencrypted, unauthenticated listener")
    warning = (f"WARNING: API listening on {where} without TLS: anyone who can reach it has "
               "root on this machine")
    print(f"palletd: {warning}", file=sys.stderr, flush=True)
    log.warning(warning)


def tcp_listener(hostport: str, tls: TLSOptions, ssl_ctx) -> Listener:
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    if ssl_ctx is None:
        _plain_tcp(f"tcp://{hostport}", tls)
    elif not tls.verify:
        log.warning("API listening on tcp://%s with TLS but without --tlsverify: clients are "
                    "not authenticated", hostport)
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (ValueError, OSError) as e:
        raise errors.ConfigError(f"listen tcp://{hostport}: {_reason(e)}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    name = f"tcp://{hostport}"
    if port == "0":  # an ephemeral port: name the one the kernel chose
        bound = sock.getsockname()
        name = f"tcp://{hostport.rpartition(':')[0]}:{bound[1]}"
    return Listener(name, sock, ssl=ssl_ctx)


# --- fd:// (systemd socket activation) ---------------------------------------------

class _Activated:
    """The fds passed by the service manager, taken once (sd_listen_fds with
    unset_environment: children such as pallet-containerd must not see them)."""

    def __init__(self):
        self.socks: list[tuple[socket.socket, str]] | None = None

    def take(self) -> list[tuple[socket.socket, str]]:
        if self.socks is not None:
            return self.socks
        pid = os.environ.get("LISTEN_PID", "")
        nfds = os.environ.get("LISTEN_FDS", "")
        names = os.environ.get("LISTEN_FDNAMES", "")
        for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(var, None)
        if not pid or not nfds:
            raise errors.ConfigError("fd://: no sockets found via socket activation (LISTEN_FDS "
                                     "and LISTEN_PID are not set): make sure the service was "
                                     "started by systemd")
        if pid != str(os.getpid()):
            raise errors.ConfigError(f"fd://: the activated sockets are for pid {pid} "
                                     f"(LISTEN_PID), not this process ({os.getpid()})")
        try:
            n = int(nfds)
        except ValueError:
            raise errors.ConfigError(f"fd://: bad LISTEN_FDS {nfds!r}") from None
        if n <= 0:
            raise errors.ConfigError("fd://: no sockets found via socket activation")
        labels = names.split(":") if names else []
        out = []
        for i in range(n):
            fd = SD_LISTEN_FDS_START + i
            try:
                os.set_inheritable(fd, False)
                sock = socket.socket(fileno=fd)
            except OSError as e:
                raise errors.ConfigError(f"fd://{fd}: not a socket: {_reason(e)}") from None
            if sock.type != socket.SOCK_STREAM:
                raise errors.ConfigError(f"fd://{fd}: not a stream socket")
            out.append((sock, labels[i] if i < len(labels) else ""))
        self.socks = out
        return out


def fd_listeners(which: str, activated: _Activated, tls: TLSOptions, ssl_ctx) -> list[Listener]:
    """``fd://`` (every passed socket), ``fd://N`` (that fd), ``fd://NAME`` (by
    FileDescriptorName=)."""
    socks = activated.take()
    if which:
        if which.isdigit():
            picked = [(s, lbl) for s, lbl in socks if s.fileno() == int(which)]
            if not picked:
                raise errors.ConfigError(
                    f"fd://{which}: too few sockets passed by socket activation (fds "
                    f"{SD_LISTEN_FDS_START}..{SD_LISTEN_FDS_START + len(socks) - 1} were)")
        else:
            picked = [(s, lbl) for s, lbl in socks if lbl == which]
            if not picked:
                raise errors.ConfigError(f"fd://{which}: no activated socket of that name")
    else:
        picked = socks
    out = []
    for sock, _label in picked:
        sock.setblocking(False)
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        where = _describe(sock)
        if inet and ssl_ctx is None:
            # a tcp socket from a .socket unit is no safer than -H tcp://
            _plain_tcp(where, tls)
        out.append(Listener(f"fd://{sock.fileno()} ({where})", sock,
                            ssl=ssl_ctx if inet else None))
    return out


def _describe(sock: socket.socket) -> str:
    try:
        addr = sock.getsockname()
    except OSError:
        return "?"
    if sock.family == socket.AF_UNIX:
        return f"unix://{addr.decode() if isinstance(addr, bytes) else addr}"
    host, port = addr[0], addr[1]
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


# --- all of them ----------------------------------------------------------------

def open_listeners(hosts: list[str], default_socket: str, *, group: str | None = None,
                   tls: TLSOptions | None = None) -> list[Listener]:
    """Bind every ``-H`` (several are fine); on any failure close what was bound
    and raise ConfigError naming the address."""
    tls = tls or TLSOptions()
    ssl_ctx = None
    activated = _Activated()
    out: list[Listener] = []
    gid: int | None = None
    gid_known = False
    try:
        for spec in hosts or ["unix://" + default_socket]:
            kind, where = parse_host(spec, default_socket, tls=tls.enabled)
            if kind != "unix" and tls.enabled and ssl_ctx is None:
                ssl_ctx = tls.context()
            try:
                if kind == "unix":
                    if not gid_known:
                        gid, gid_known = socket_group(group), True
                    out.append(unix_listener(where, gid))
                elif kind == "tcp":
                    out.append(tcp_listener(where, tls, ssl_ctx))
                else:
                    out.extend(fd_listeners(where, activated, tls, ssl_ctx))
            except OSError as e:
                raise errors.ConfigError(f"listen {spec}: {_reason(e)}") from None
    except BaseException:
        close_listeners(out)
        raise
    return out


def close_listeners(listeners) -> None:
    """Close the sockets and remove the unix socket files palletd made (never
    those systemd passed)."""
    for item in listeners:
        if isinstance(item, Listener):
            unlink = item.unlink
            item.close()
        else:  # a plain (name, sock) pair
            name, sock = item
            unlink = name[len("unix://"):] if name.startswith("unix://") else None
            try:
                sock.close()
            except OSError:
                pass
        if unlink:
            try:
                os.unlink(unlink)
            except OSError:
                pass
