"""A real registry for the tests: Debian's ``docker-registry`` on 127.0.0.1.

:class:`RegistryServer` writes its own config (a free port, filesystem
storage under the test's directory, optional TLS and htpasswd or token
auth), starts the binary, waits for ``/v2/`` and stops it by pid.
:class:`TokenServer` is the small token service of distribution's token
spec that token auth needs: it checks basic credentials, grants scopes and
signs RS256 JWTs whose ``x5c`` header carries a self-signed certificate that
the registry trusts (``rootcertbundle``).  Keys and certificates come from
the ``openssl`` command; the RSA signature is computed here.
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo")
OPENSSL = shutil.which("openssl")

USERS = {"alice": "s3cret-pw", "bob": "hunter2"}

needs_registry = pytest.mark.skipif(not os.path.exists(REGISTRY_BIN),
                                    reason="needs Debian's docker-registry")
needs_skopeo = pytest.mark.skipif(not SKOPEO or not OPENSSL, reason="needs skopeo and openssl")
#: unpacking layers makes device nodes and sets owners: root, as in CI
needs_root = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def make_store(root: str, default_snapshotter: str = "native"):
    """An ImageStore laid out as pallet-containerd's under ``root``, with
    both plugins' snapshotters (``default_snapshotter`` first)."""
    from pallet.imagestore.store import ImageStore
    from pallet.plugins.store_native.native import NativeSnapshotter
    from pallet.plugins.store_overlay.overlay import OverlaySnapshotter

    classes = sorted((NativeSnapshotter, OverlaySnapshotter),
                     key=lambda cls: cls.name != default_snapshotter)
    return ImageStore(
        content_root=os.path.join(root, "io.containerd.content.v1.content"),
        metadata_db=os.path.join(root, "io.containerd.metadata.v1.pallet", "meta.db"),
        snapshotters=[(cls, os.path.join(root, f"io.containerd.snapshotter.v1.{cls.name}"))
                      for cls in classes])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(base: str, name: str, cn: str = "127.0.0.1") -> tuple[str, str]:
    """A self-signed RSA certificate (with 127.0.0.1 and localhost as SANs)."""
    key, cert = os.path.join(base, f"{name}.key"), os.path.join(base, f"{name}.crt")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return key, cert


def write_htpasswd(path: str, users: dict[str, str]) -> None:
    """An htpasswd file with bcrypt hashes (the only kind the registry reads);
    glibc's crypt(3) makes them (``$2b$``)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    with open(path, "w") as f:
        for user, pw in users.items():
            salt = "$2b$05$" + base64.b64encode(secrets.token_bytes(16)).decode()[:22] \
                .replace("+", ".")
            f.write(f"{user}:{crypt.crypt(pw, salt)}\n")


class RegistryServer:
    """One docker-registry process (``auth``: None, ``"htpasswd"`` or ``"token"``)."""

    def __init__(self, base: str, *, auth: str | None = None, tls: bool = False,
                 users: dict[str, str] | None = None, token_server: "TokenServer | None" = None):
        self.base = base
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.auth = auth
        self.tls = tls
        self.users = users or {}
        self.token_server = token_server
        self.proc: subprocess.Popen | None = None
        self.cert = self.key = None
        self.storage = os.path.join(base, "storage")

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def _config(self) -> str:
        lines = ["version: 0.1", "log:", "  level: warn", "  accesslog:", "    disabled: true",
                 "storage:", "  filesystem:", f"    rootdirectory: {self.storage}",
                 "  delete:", "    enabled: true", "  maintenance:", "    uploadpurging:",
                 "      enabled: false", "http:", f"  addr: {self.host}",
                 f"  secret: {secrets.token_hex(16)}", "  headers:",
                 "    X-Content-Type-Options: [nosniff]"]
        if self.tls:
            self.key, self.cert = make_cert(self.base, "registry")
            lines += ["  tls:", f"    certificate: {self.cert}", f"    key: {self.key}"]
        if self.auth == "htpasswd":
            path = os.path.join(self.base, "htpasswd")
            write_htpasswd(path, self.users)
            lines += ["auth:", "  htpasswd:", "    realm: pallet-test", f"    path: {path}"]
        elif self.auth == "token":
            ts = self.token_server
            lines += ["auth:", "  token:", f"    realm: {ts.url}/token",
                      f"    service: {ts.service}", f"    issuer: {ts.issuer}",
                      f"    rootcertbundle: {ts.cert}"]
        return "\n".join(lines) + "\n"

    def start(self) -> "RegistryServer":
        os.makedirs(self.storage, exist_ok=True)
        config = os.path.join(self.base, "registry.yml")
        with open(config, "w") as f:
            f.write(self._config())
        self.log = open(os.path.join(self.base, "registry.log"), "wb")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", config], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        import ssl
        ctx = ssl._create_unverified_context()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.logs()}")
            try:
                urllib.request.urlopen(self.url + "/v2/", timeout=1,
                                       context=ctx if self.tls else None)
                break
            except urllib.error.HTTPError:
                break  # 401: up, and asking for auth
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"docker-registry did not start: {self.logs()}")
                time.sleep(0.05)
        return self

    def logs(self) -> str:
        try:
            with open(os.path.join(self.base, "registry.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def blob_path(self, repo: str, digest: str) -> str:
        """Where the filesystem driver keeps a blob's bytes (to corrupt it)."""
        hexd = digest.partition(":")[2]
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256",
                            hexd[:2], hexd, "data")


# --- skopeo ------------------------------------------------------------------------------

def skopeo(*args: str, timeout: float = 120) -> str:
    r = subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def skopeo_copy(src: str, dst: str, *extra: str) -> None:
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
           *extra, src, dst)


# --- token server ------------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


class _RsaKey:
    """Just enough RSA to sign: n and d read from ``openssl rsa -text``."""

    def __init__(self, key_path: str):
        text = subprocess.run([OPENSSL, "rsa", "-in", key_path, "-noout", "-text"],
                              capture_output=True, text=True, check=True).stdout

        def field(name: str) -> int:
            m = re.search(rf"^{name}:\s*\n((?:\s+[0-9a-f:]+\n)+)", text, re.M)
            return int(re.sub(r"[\s:]", "", m.group(1)), 16)
        self.n = field("modulus")
        self.d = field("privateExponent")
        self.size = (self.n.bit_length() + 7) // 8

    def sign(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 section 8.2)."""
        t = _SHA256_PREFIX + hashlib.sha256(data).digest()
        em = b"\x00\x01" + b"\xff" * (self.size - len(t) - 3) + b"\x00" + t
        return pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(self.size, "big")


class TokenServer:
    """distribution's token service, for tests.

    ``users``: name -> password.  An authenticated user gets every action asked
    for on every repository; an anonymous client gets ``pull`` on repositories
    under ``public/`` and nothing else.  Each request is recorded in
    ``requests`` (query and whether it was authenticated).
    """

    def __init__(self, base: str, users: dict[str, str]):
        self.base = base
        self.users = users
        self.service = f"pallet-test-{secrets.token_hex(3)}"
        self.issuer = "pallet-test-issuer"
        self.key, self.cert = make_cert(base, "token", cn="pallet token signer")
        self._rsa = _RsaKey(self.key)
        der = subprocess.run([OPENSSL, "x509", "-in", self.cert, "-outform", "DER"],
                             capture_output=True, check=True).stdout
        self._x5c = base64.b64encode(der).decode()
        self.requests: list[dict] = []
        self._server = None
        self._thread = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, subject: str, access: list[dict], ttl: int = 300) -> str:
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self._x5c]}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + ttl,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing = _b64url(json.dumps(header).encode()) + "." + \
            _b64url(json.dumps(claims).encode())
        return signing + "." + _b64url(self._rsa.sign(signing.encode()))

    def _grant(self, user: str | None, scopes: list[str]) -> list[dict]:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
            if user is None:
                actions = [a for a in actions if a == "pull" and name.startswith("public/")]
            if actions:
                access.append({"type": "repository", "name": name, "actions": actions})
        return access

    def start(self) -> "TokenServer":
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                from urllib.parse import parse_qs, urlsplit
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    try:
                        name, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                    except ValueError:
                        name, pw = "", None
                    if outer.users.get(name) != pw:
                        outer.requests.append({"query": query, "auth": "bad"})
                        body = json.dumps({"details": "incorrect username or password"})
                        self.send_response(401)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body.encode())
                        return
                    user = name
                outer.requests.append({"query": query, "auth": user})
                scopes = []
                for s in query.get("scope", []):
                    scopes.extend(s.split(" "))
                tok = outer.token(user or "", outer._grant(user, scopes))
                body = json.dumps({"token": tok, "access_token": tok, "expires_in": 300,
                                   "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                              time.gmtime())}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="token-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# --- test images ---------------------------------------------------------------------------

def layer_tar(files: dict[str, bytes], mode: int = 0o755) -> bytes:
    """An uncompressed layer tar holding ``files`` (path -> content; directories made)."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = set()
        for path in sorted(files):
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_000_000_000
                    tf.addfile(ti)
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode, ti.mtime = len(files[path]), mode, 1_000_000_000
            tf.addfile(ti, io.BytesIO(files[path]))
    return buf.getvalue()


def compress(data: bytes, kind: str | None) -> bytes:
    if kind == "gzip":
        import gzip
        return gzip.compress(data, compresslevel=1, mtime=0)
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=1).compress(data)
    return data


_LAYER_MT = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
             "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
             None: "application/vnd.oci.image.layer.v1.tar"}


def _blob(layout: str, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest[7:])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def oci_image(layout: str, layers: list[dict[str, bytes]], *, compression: str | None = "gzip",
              arch: str = "amd64", variant: str = "", cmd=("sh",), extra_config=None) -> dict:
    """Write one image's blobs into an OCI layout; return its manifest descriptor
    (with ``platform``)."""
    diff_ids, layer_descs = [], []
    for files in layers:
        raw = layer_tar(files)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        layer_descs.append(_blob(layout, compress(raw, compression), _LAYER_MT[compression]))
    config = {"architecture": arch, "os": "linux",
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                 "/sbin:/bin"], "Cmd": list(cmd)},
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "created": "2020-01-01T00:00:00Z",
              "history": [{"created": "2020-01-01T00:00:00Z", "created_by": f"layer {i}"}
                          for i in range(len(layers))]}
    if variant:
        config["variant"] = variant
    config.update(extra_config or {})
    cfg = _blob(layout, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg, "layers": layer_descs}
    desc = _blob(layout, json.dumps(manifest).encode(),
                 "application/vnd.oci.image.manifest.v1+json")
    desc["platform"] = {"architecture": arch, "os": "linux", **({"variant": variant}
                                                                 if variant else {})}
    return desc


def oci_layout(layout: str, manifests: list[dict], tag: str = "latest",
               index: bool = False) -> str:
    """Finish an OCI layout: ``index.json`` naming one manifest, or (``index``)
    an image index of all of them, under ``tag``."""
    os.makedirs(layout, exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    if index:
        idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": manifests}
        top = _blob(layout, json.dumps(idx).encode(), "application/vnd.oci.image.index.v1+json")
    else:
        top = {k: v for k, v in manifests[0].items() if k != "platform"}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [top]}, f)
    return layout


def busybox_files() -> dict[str, bytes]:
    with open("/bin/busybox", "rb") as f:
        return {"bin/busybox": f.read()}


# --- a throttling, cutting TCP proxy ----------------------------------------------------------

class Proxy:
    """A TCP proxy on 127.0.0.1 to ``port``, in its own thread: ``rate`` limits
    bytes/s from the server; ``cut_after`` closes the first ``cuts`` responses
    carrying more than that many bytes (to test resumes)."""

    def __init__(self, port: int, rate: float | None = None, cut_after: int | None = None,
                 cuts: int = 1):
        import asyncio
        self.target_port = port
        self.rate = rate
        self.cut_after = cut_after
        self.cuts = cuts
        self.cut_count = 0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._server = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="test-proxy")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Proxy":
        import asyncio
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        fut.result(10)
        return self

    async def _start(self):
        import asyncio
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer):
        import asyncio
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def client_to_server():
            try:
                while data := await reader.read(65536):
                    up_w.write(data)
                    await up_w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                up_w.close()

        async def server_to_client():
            sent = 0
            start = time.monotonic()
            cut = False
            try:
                while data := await up_r.read(65536):
                    sent += len(data)
                    if self.cut_after is not None and sent > self.cut_after \
                            and self.cut_count < self.cuts:
                        self.cut_count += 1
                        cut = True
                        break
                    writer.write(data)
                    await writer.drain()
                    if self.rate:
                        ahead = sent / self.rate - (time.monotonic() - start)
                        if ahead > 0:
                            await asyncio.sleep(ahead)
            except (ConnectionError, OSError):
                pass
            finally:
                if cut:
                    writer.transport.abort()
                else:
                    writer.close()
                up_w.close()
        await asyncio.gather(client_to_server(), server_to_client())

    def stop(self) -> None:
        import asyncio

        async def close():
            self._server.close()
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
