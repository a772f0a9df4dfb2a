"""A registry client following the OCI distribution spec (aiohttp).

One :class:`Registry` serves one operation or one process (it holds an
aiohttp session, tokens and the scheme that worked per host).  It speaks:

* ``GET /v2/`` (ping: scheme and auth challenge);
* manifests: ``GET``/``HEAD``/``PUT /v2/<name>/manifests/<reference>``, with
  the media types pallet reads in ``Accept`` (OCI index and manifest, Docker
  manifest list and schema 2; schema 1 is recognised and refused);
* blobs: ``GET`` (with ``Range`` to resume), ``HEAD``, uploads (``POST``,
  ``PATCH``, ``PUT ?digest=``) and cross-repository mounts (``POST
  ?mount=&from=``).

Hosts: ``docker.io`` goes to ``registry-1.docker.io`` after the configured
mirrors; every other host over HTTPS with the system CA store (plus
``<certs-dir>/<host>/ca.crt``, docker's ``certs.d``).  An insecure registry
(``insecure-registries``: host names or CIDRs; localhost and 127.0.0.0/8
always, as docker allows them) is tried over HTTPS without verification, then
plain HTTP.

Usable from asyncio code (palletd) directly, and from threads (pallet-containerd)
through :func:`run_sync`.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import random
import ssl
import urllib.parse
from typing import AsyncIterator, Awaitable, Callable, Iterable, Mapping, TypeVar

import attrs

from pallet.core.errors import InvalidArgument, NotFound, PalletError, Unavailable
from pallet.core.models import Descriptor

from pallet.distribution.auth import (
    DOCKER_IO,
    AuthConfigFile,
    Authenticator,
    Credentials,
    Denied,
    Unauthorized,
    pull_scope,
    push_scope)
from pallet.distribution.digests import parse_digest, sha256_digest
from pallet.distribution.mediatypes import (
    MT_DOCKER_MANIFEST,
    MT_DOCKER_MANIFEST_LIST,
    MT_OCI_INDEX,
    MT_OCI_MANIFEST)

log = logging.getLogger("pallet.store_overlay.registry")

MT_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MT_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MANIFEST_ACCEPT = (MT_OCI_INDEX, MT_DOCKER_MANIFEST_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST,
                   MT_SCHEMA1_SIGNED, MT_SCHEMA1)
#: manifests larger than this are refused (the distribution spec suggests 4 MiB)
MAX_MANIFEST = 4 << 20
DOCKER_HUB = "https://registry-1.docker.io"
USER_AGENT = "pallet/0.1"
_CHUNK = 1 << 20
_RETRY_STATUS = (408, 429, 500, 502, 503, 504)

T = TypeVar("T")


class RegistryError(PalletError):
    """A registry answered with an error status that has no better class."""


class TransientError(Unavailable):
    """A failure worth retrying: connection reset, timeout, 5xx, 429."""


def _as_tuple(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


@attrs.frozen
class RegistryOptions:
    """Where and how to reach registries (dockerd's registry options)."""

    insecure_registries: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)
    mirrors: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)
    certs_dirs: tuple[str, ...] = attrs.field(default=("/etc/docker/certs.d",
                                                       "/etc/pallet/certs.d"),
                                              converter=_as_tuple)
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    retries: int = 5
    #: seconds to connect, and without a byte while reading
    timeout: float = 60.0
    #: PATCH chunk size of chunked uploads (0: monolithic uploads)
    upload_chunk_size: int = 0

    @classmethod
    def from_config(cls, section: Mapping | None) -> "RegistryOptions":
        """From a TOML section or daemon.json-like mapping; keys as dockerd spells
        them (``insecure-registries``, ``registry-mirrors``,
        ``max-concurrent-downloads``...), dashes or underscores."""
        section = {str(k).replace("_", "-"): v for k, v in (section or {}).items()}
        kw = {}
        for key, attr in (("insecure-registries", "insecure_registries"),
                          ("registry-mirrors", "mirrors"), ("certs-dirs", "certs_dirs")):
            if key in section:
                kw[attr] = section[key]
        for key, attr, kind in (("max-concurrent-downloads", "max_concurrent_downloads", int),
                                ("max-concurrent-uploads", "max_concurrent_uploads", int),
                                ("registry-retries", "retries", int),
                                ("registry-timeout", "timeout", float),
                                ("upload-chunk-size", "upload_chunk_size", int)):
            if key in section:
                try:
                    kw[attr] = kind(section[key])
                except (TypeError, ValueError):
                    raise InvalidArgument(f"invalid {key}: {section[key]!r}") from None
        opts = cls(**kw)
        if opts.max_concurrent_downloads < 1 or opts.max_concurrent_uploads < 1:
            raise InvalidArgument("max-concurrent-downloads and -uploads must be at least 1")
        for m in opts.mirrors:
            if not m.startswith(("http://", "https://")):
                raise InvalidArgument(f"invalid mirror: unsupported scheme in {m!r}")
        return opts

    def is_insecure(self, host: str) -> bool:
        """Whether ``host`` may be reached over plain HTTP or unverified TLS."""
        name = _hostname(host)
        if name == "localhost" or name.endswith(".localhost"):
            return True
        ip = _ip(name)
        if ip is not None and ip.is_loopback:
            return True
        for entry in self.insecure_registries:
            entry = entry.strip()
            if "://" in entry:
                entry = urllib.parse.urlsplit(entry).netloc
            if entry == host or entry == name:
                return True
            if "/" in entry and ip is not None:
                try:
                    if ip in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
        return False


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _ip(name: str):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


@attrs.frozen
class Endpoint:
    """A base URL for one registry host and the TLS context to use (None for http)."""

    base: str
    ssl: object = attrs.field(eq=False, default=None)
    mirror: bool = False


def registry_error_text(body: bytes) -> str:
    """``code: message`` of a distribution error body, as docker prints it
    (``manifest unknown: manifest unknown``); "" if the body has none."""
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return ""
    errs = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errs, list) or not errs:
        return ""
    parts = []
    for e in errs:
        if isinstance(e, dict):
            code = str(e.get("code") or "unknown").lower().replace("_", " ")
            parts.append(f"{code}: {e.get('message') or code}")
    return ", ".join(parts)


def _error_codes(body: bytes) -> set[str]:
    try:
        doc = json.loads(body or b"{}")
        return {str(e.get("code")) for e in doc.get("errors") or [] if isinstance(e, dict)}
    except (ValueError, AttributeError):
        return set()


@attrs.frozen
class Manifest:
    """A manifest or index as fetched: its descriptor and bytes."""

    descriptor: Descriptor
    data: bytes = attrs.field(repr=False)

    def json(self) -> dict:
        try:
            doc = json.loads(self.data)
        except ValueError as e:
            raise InvalidArgument(f"manifest {self.descriptor.digest}: invalid JSON ({e})") \
                from None
        if not isinstance(doc, dict):
            raise InvalidArgument(f"manifest {self.descriptor.digest}: not a JSON object")
        return doc


def detect_manifest_type(data: bytes, content_type: str = "") -> str:
    """The media type of a manifest: its ``mediaType`` field, else the
    ``Content-Type`` header, else guessed from its shape (OCI allows none)."""
    try:
        doc = json.loads(data)
    except ValueError:
        doc = {}
    mt = doc.get("mediaType") if isinstance(doc, dict) else None
    if mt:
        return mt
    ct = content_type.split(";")[0].strip()
    if ct in MANIFEST_ACCEPT:
        return ct
    if isinstance(doc, dict):
        if doc.get("schemaVersion") == 1:
            return MT_SCHEMA1_SIGNED
        if "manifests" in doc:
            return MT_OCI_INDEX
        if "config" in doc:
            return MT_OCI_MANIFEST
    return ct or "application/octet-stream"


class BlobStream:
    """An open blob download: ``offset`` is where its bytes start (0 when the
    registry ignored the Range asked for), ``total`` the whole blob's size."""

    def __init__(self, resp, offset: int, total: int, chunk: int, url: str):
        self._resp = resp
        self.offset = offset
        self.total = total
        self._chunk = chunk
        self.url = url

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body in pieces of about ``chunk`` bytes (network errors become
        :class:`TransientError`)."""
        import aiohttp

        buf = bytearray()
        try:
            async for data in self._resp.content.iter_any():
                buf += data
                if len(buf) >= self._chunk:
                    out = bytes(buf)
                    buf.clear()
                    yield out
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as e:
            raise TransientError(f"read {self.url}: {_reason(e)}") from None
        if buf:
            yield bytes(buf)

    def close(self) -> None:
        self._resp.release()


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "i/o timeout"
    text = str(e) or type(e).__name__
    import aiohttp
    if isinstance(e, aiohttp.ClientConnectorError) and e.os_error is not None:
        err = e.os_error
        if isinstance(err, ConnectionRefusedError):
            return f"dial tcp {e.host}:{e.port}: connect: connection refused"
        if isinstance(err, ssl.SSLError) or "SSL" in type(err).__name__:
            return f"tls: {err}"
        if getattr(err, "strerror", None):
            return f"dial tcp {e.host}:{e.port}: {err.strerror.lower()}"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "connection reset by peer"
    return text.lower() if text[:1].isupper() and not text[1:2].isupper() else text


class Registry:
    """A client of one or more registries.

    ``credentials`` is a :class:`Credentials` (used for every host), a
    callable ``host -> Credentials | None``, or None; with ``auth_file``
    (a docker ``config.json``), hosts without given credentials use the
    stored ones.
    """

    def __init__(self, options: RegistryOptions | None = None,
                 credentials: Credentials | Callable[[str], Credentials | None] | None = None,
                 *, auth_file: str | None = None, user_agent: str = USER_AGENT):
        self.options = options or RegistryOptions()
        if isinstance(credentials, Credentials) or credentials is None:
            fixed = credentials
            getter = (lambda host: fixed)
        else:
            getter = credentials
        stored = AuthConfigFile(auth_file) if auth_file else None

        def lookup(host: str) -> Credentials | None:
            creds = getter(host)
            if not creds and stored is not None:
                try:
                    creds = stored.get(host)
                except PalletError as e:
                    log.warning("%s", e)
            return creds
        self.auth = Authenticator(lookup)
        self.user_agent = user_agent
        self._session = None
        self._scheme: dict[str, Endpoint] = {}
        self._pinged: set[str] = set()
        self._ssl_verify: dict[str, ssl.SSLContext] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def given_or_own(cls, registry: "Registry | None", options: RegistryOptions | None,
                           credentials, auth_file: str | None = None):
        """``registry`` when one is given (its owner closes it), otherwise one
        made for this call from the options and credentials, closed after it."""
        if registry is not None:
            yield registry
            return
        async with cls(options, credentials, auth_file=auth_file) as own:
            yield own

    # --- session and endpoints -------------------------------------------------------

    async def __aenter__(self) -> "Registry":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self):
        import aiohttp

        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, connect=self.options.timeout,
                                            sock_read=self.options.timeout)
            connector = aiohttp.TCPConnector(limit=64, limit_per_host=16,
                                             enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                timeout=timeout, connector=connector, read_bufsize=4 << 20,
                headers={"User-Agent": self.user_agent}, auto_decompress=False,
                trust_env=False)
        return self._session

    def _verify_context(self, host: str) -> ssl.SSLContext:
        ctx = self._ssl_verify.get(host)
        if ctx is None:
            ctx = ssl.create_default_context()
            for d in self.options.certs_dirs:
                hostdir = os.path.join(d, host.replace(":", ":"))
                ca = os.path.join(hostdir, "ca.crt")
                if os.path.isfile(ca):
                    ctx.load_verify_locations(ca)
                cert, key = os.path.join(hostdir, "client.cert"), os.path.join(hostdir,
                                                                                "client.key")
                if os.path.isfile(cert) and os.path.isfile(key):
                    ctx.load_cert_chain(cert, key)
            self._ssl_verify[host] = ctx
        return ctx

    def endpoints(self, host: str, *, push: bool = False) -> list[Endpoint]:
        """The base URLs to try for ``host``, in order."""
        if host in (DOCKER_IO, "index.docker.io"):
            out = []
            if not push:
                for m in self.options.mirrors:
                    m = m.rstrip("/")
                    mhost = urllib.parse.urlsplit(m).netloc
                    if m.startswith("http://"):
                        out.append(Endpoint(m, None, True))
                    elif self.options.is_insecure(mhost):
                        out.append(Endpoint(m, False, True))
                    else:
                        out.append(Endpoint(m, self._verify_context(mhost), True))
            out.append(Endpoint(DOCKER_HUB, self._verify_context("registry-1.docker.io")))
            return out
        if self.options.is_insecure(host):
            return [Endpoint(f"https://{host}", False), Endpoint(f"http://{host}", None)]
        return [Endpoint(f"https://{host}", self._verify_context(host))]

    async def ping(self, host: str, *, push: bool = False) -> Endpoint:
        """``GET /v2/`` on each endpoint until one answers as a registry; learn its
        auth challenge.  The endpoint found is used by the later requests."""
        import aiohttp

        if host in self._scheme and host in self._pinged:
            return self._scheme[host]
        session = self._get_session()
        errors = []
        for ep in self.endpoints(host, push=push):
            url = ep.base + "/v2/"
            try:
                async with session.get(url, ssl=ep.ssl, allow_redirects=True) as resp:
                    await resp.read()
                    if resp.status == 401:
                        self.auth.learn(host, resp.headers.getall("WWW-Authenticate", []))
                    elif resp.status >= 400 and resp.status != 404:
                        raise RegistryError(f"ping {url}: unexpected status {resp.status}")
                    if ep.mirror and resp.status == 404:
                        continue
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ssl.SSLError) as e:
                reason = _reason(e)
                if (isinstance(e, aiohttp.ClientConnectorSSLError)
                        or "SSL" in type(e).__name__ or "ssl" in reason.lower()) \
                        and not self.options.is_insecure(host):
                    reason = "http: server gave HTTP response to HTTPS client" \
                        if "WRONG_VERSION_NUMBER" in reason or "record layer" in reason \
                        else reason
                errors.append(f'Get "{url}": {reason}')
                continue
            self._scheme[host] = ep
            self._pinged.add(host)
            return ep
        raise TransientError(errors[-1] if errors else f"no endpoint for {host}")

    # --- requests ----------------------------------------------------------------------

    async def _fetch_token(self, url: str, query, headers, method: str, form):
        """What the Authenticator calls to ask a token realm."""
        import aiohttp

        session = self._get_session()
        parsed = urllib.parse.urlsplit(url)
        ssl_ctx = None
        if parsed.scheme == "https":
            ssl_ctx = False if self.options.is_insecure(parsed.netloc) \
                else self._verify_context(parsed.netloc)
        try:
            if method == "POST":
                async with session.post(url, data=form, headers=headers, ssl=ssl_ctx) as r:
                    body = await r.read()
                    status = r.status
            else:
                async with session.get(url, params=query, headers=headers, ssl=ssl_ctx) as r:
                    body = await r.read()
                    status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise TransientError(f'Get "{url}": {_reason(e)}') from None
        try:
            doc = json.loads(body or b"null")
        except ValueError:
            doc = None
        return status, doc

    async def request(self, method: str, host: str, path: str, scopes: Iterable[str], *,
                      headers: Mapping[str, str] | None = None, data=None,
                      params: Mapping[str, str] | None = None, absolute: str | None = None,
                      allow_redirects: bool = True, push: bool = False, retry: bool = True):
        """One request to ``host`` (``absolute``: an upload Location URL),
        authorised for ``scopes``; a 401 is answered once with the challenge it
        carries.  Returns the aiohttp response, to be released by the caller.

        Connection failures and 5xx/429 are retried for idempotent methods
        (``retry``), up to ``options.retries`` times with backoff.
        """
        import aiohttp

        scopes = list(scopes)
        ep = await self.ping(host, push=push)
        session = self._get_session()
        url = absolute or ep.base + path
        if absolute and absolute.startswith("/"):
            url = ep.base + absolute
        attempts = self.options.retries + 1 if retry else 1
        attempt = 0
        tried_auth = False
        while True:
            hdrs = dict(headers or {})
            auth = await self.auth.header(host, scopes, self._fetch_token)
            if auth:
                hdrs["Authorization"] = auth
            try:
                resp = await session.request(method, url, headers=hdrs, data=data,
                                             params=params, ssl=ep.ssl,
                                             allow_redirects=allow_redirects)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                attempt += 1
                if attempt < attempts:
                    await _backoff(attempt)
                    continue
                raise TransientError(f'{method.capitalize()} "{url}": {_reason(e)}') from None
            if resp.status == 401 and not tried_auth:
                challenges = resp.headers.getall("WWW-Authenticate", [])
                resp.release()
                tried_auth = True
                chosen = self.auth.learn(host, challenges)
                self.auth.forget_tokens(host, scopes)
                if chosen and chosen[0] == "bearer" and chosen[1].get("scope"):
                    for s in chosen[1]["scope"].split(" "):
                        if s and s not in scopes:
                            scopes.append(s)
                if chosen is None:
                    raise Unauthorized(f"{method} {url}: unauthorized: no supported "
                                       "authentication scheme offered")
                if hasattr(data, "__aiter__"):
                    raise Unauthorized(f"{method} {url}: unauthorized: authentication required")
                continue
            if resp.status in _RETRY_STATUS and attempt + 1 < attempts:
                resp.release()
                attempt += 1
                await _backoff(attempt, resp.headers.get("Retry-After"))
                continue
            return resp

    async def _error(self, resp, what: str, repo: str = "", pull: bool = True) -> PalletError:
        """The error for a failed response (read and released here)."""
        try:
            body = await resp.read()
        except Exception:  # the body of an error is only a detail
            body = b""
        finally:
            resp.release()
        text = registry_error_text(body)
        codes = _error_codes(body)
        status = resp.status
        if status == 401 or "UNAUTHORIZED" in codes:
            if pull and repo:
                return Denied(f"pull access denied for {repo}, repository does not exist or "
                              f"may require 'docker login': {text or 'unauthorized'}")
            return Unauthorized(f"{what}: {text or 'unauthorized: authentication required'}")
        if status == 403 or "DENIED" in codes:
            if pull and repo:
                return Denied(f"pull access denied for {repo}, repository does not exist or "
                              f"may require 'docker login': {text or 'denied'}")
            return Denied(f"{what}: {text or 'denied: requested access to the resource is denied'}")
        if status == 404:
            return NotFound(f"{what}: {text or 'not found'}")
        if status in _RETRY_STATUS:
            return TransientError(f"{what}: unexpected status {status}"
                                  + (f": {text}" if text else ""))
        return RegistryError(f"{what}: unexpected status {status}" + (f": {text}" if text else ""))

    # --- manifests -----------------------------------------------------------------------

    async def get_manifest(self, host: str, path: str, reference: str, *,
                           scopes: Iterable[str] | None = None,
                           display: str | None = None) -> Manifest:
        """Fetch a manifest or index by tag or digest, checked against the digest
        asked for (or the ``Docker-Content-Digest`` the registry sent)."""
        scopes = list(scopes or [pull_scope(path)])
        display = display or f"{host}/{path}:{reference}"
        resp = await self.request("GET", host, f"/v2/{path}/manifests/{reference}", scopes,
                                  headers={"Accept": ", ".join(MANIFEST_ACCEPT)})
        if resp.status != 200:
            err = await self._error(resp, f"manifest for {display}", repo=f"{host}/{path}")
            if isinstance(err, NotFound):
                err = NotFound(f"manifest for {display} not found: "
                               + (err.message.split(": ", 1)[1] if ": " in err.message
                                  else "manifest unknown"))
            raise err
        try:
            length = int(resp.headers.get("Content-Length") or 0)
            if length > MAX_MANIFEST:
                raise InvalidArgument(f"manifest for {display}: too large ({length} bytes)")
            data = await resp.content.read(MAX_MANIFEST + 1)
            if len(data) > MAX_MANIFEST:
                raise InvalidArgument(f"manifest for {display}: larger than {MAX_MANIFEST} bytes")
            content_type = resp.headers.get("Content-Type", "")
            header_digest = resp.headers.get("Docker-Content-Digest", "")
        finally:
            resp.release()
        digest = sha256_digest(data)
        media_type = detect_manifest_type(data, content_type)
        if media_type in (MT_SCHEMA1, MT_SCHEMA1_SIGNED):
            raise InvalidArgument(
                f"{display}: Docker Image manifest version 2, schema 1 is not supported; "
                "the image must be pushed again in the OCI format or Docker schema 2")
        if reference.startswith("sha256:"):
            if digest != reference:
                raise InvalidArgument(f"manifest for {display}: digest mismatch: got {digest}")
        elif header_digest.startswith("sha256:") and header_digest != digest:
            raise InvalidArgument(f"manifest for {display}: content digest {digest} does not "
                                  f"match Docker-Content-Digest {header_digest}")
        return Manifest(Descriptor(media_type, digest, len(data)), data)

    async def put_manifest(self, host: str, path: str, reference: str, media_type: str,
                           data: bytes) -> str:
        """PUT a manifest under a tag or its digest; return its digest."""
        resp = await self.request("PUT", host, f"/v2/{path}/manifests/{reference}",
                                  [push_scope(path)], headers={"Content-Type": media_type},
                                  data=data, push=True)
        if resp.status not in (200, 201, 202):
            raise await self._error(resp, f"put manifest {host}/{path}:{reference}", pull=False)
        resp.release()
        return sha256_digest(data)

    # --- blobs ------------------------------------------------------------------------------

    async def open_blob(self, host: str, path: str, desc: Descriptor, offset: int = 0,
                        *, scopes: Iterable[str] | None = None, chunk: int = _CHUNK) -> BlobStream:
        """Start downloading a blob, from ``offset`` when the registry honours Range."""
        headers = {"Accept-Encoding": "identity"}
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
        resp = await self.request("GET", host, f"/v2/{path}/blobs/{desc.digest}",
                                  scopes or [pull_scope(path)], headers=headers)
        if resp.status == 206 and offset > 0:
            start = offset
            cr = resp.headers.get("Content-Range", "")
            if cr.startswith("bytes "):
                try:
                    start = int(cr[6:].split("-", 1)[0])
                except ValueError:
                    start = offset
            return BlobStream(resp, start, desc.size, chunk, str(resp.url))
        if resp.status == 200:
            return BlobStream(resp, 0, desc.size, chunk, str(resp.url))
        if resp.status == 416 and offset > 0:
            resp.release()
            return await self.open_blob(host, path, desc, 0, scopes=scopes, chunk=chunk)
        raise await self._error(resp, f"fetch blob {desc.digest} from {host}/{path}",
                                repo=f"{host}/{path}")

    async def blob_size(self, host: str, path: str, digest: str, *,
                        push: bool = False) -> int | None:
        """The size of a blob the repository has, None if it has not."""
        scopes = [push_scope(path)] if push else [pull_scope(path)]
        resp = await self.request("HEAD", host, f"/v2/{path}/blobs/{digest}", scopes, push=push)
        try:
            if resp.status == 200:
                return int(resp.headers.get("Content-Length") or 0)
            if resp.status == 404:
                return None
        finally:
            resp.release()
        raise await self._error(resp, f"check blob {digest} in {host}/{path}", pull=False)

    async def start_upload(self, host: str, path: str, *, mount: str | None = None,
                           mount_from: str | None = None) -> tuple[bool, str]:
        """POST an upload session; with ``mount``/``mount_from``, ask for a
        cross-repository mount.  Returns ``(mounted, location)``."""
        scopes = [push_scope(path)]
        params = None
        if mount and mount_from:
            params = {"mount": mount, "from": mount_from}
            scopes.append(pull_scope(mount_from))
        resp = await self.request("POST", host, f"/v2/{path}/blobs/uploads/", scopes,
                                  params=params, headers={"Content-Length": "0"}, data=b"",
                                  push=True)
        try:
            if resp.status == 201 and mount:
                return True, resp.headers.get("Location", "")
            if resp.status == 202:
                loc = resp.headers.get("Location")
                if not loc:
                    raise RegistryError(f"start upload to {host}/{path}: no Location")
                return False, loc
        finally:
            if resp.status in (201, 202):
                resp.release()
        raise await self._error(resp, f"start upload to {host}/{path}", pull=False)

    async def upload_blob(self, host: str, path: str, desc: Descriptor,
                          reader: Callable[[], AsyncIterator[bytes]], *,
                          location: str | None = None,
                          chunk_size: int | None = None) -> None:
        """Upload a blob: monolithic (one PUT with the body) or, with a chunk
        size, chunked (PATCH with Content-Range per chunk, then PUT).
        ``reader()`` yields the blob's bytes."""
        if location is None:
            _, location = await self.start_upload(host, path)
        chunk_size = self.options.upload_chunk_size if chunk_size is None else chunk_size
        scopes = [push_scope(path)]
        if chunk_size and chunk_size > 0:
            offset = 0
            async for data in _rechunk(reader(), chunk_size):
                end = offset + len(data) - 1
                resp = await self.request(
                    "PATCH", host, "", scopes, absolute=location, data=data, push=True,
                    retry=False,
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{end}",
                             "Content-Length": str(len(data))})
                if resp.status not in (202, 204):
                    raise await self._error(resp, f"upload blob {desc.digest} to "
                                            f"{host}/{path}", pull=False)
                location = resp.headers.get("Location") or location
                resp.release()
                offset += len(data)
            resp = await self.request("PUT", host, "", scopes,
                                      absolute=_with_query(location, digest=desc.digest),
                                      data=b"", push=True, retry=False,
                                      headers={"Content-Length": "0"})
        else:
            resp = await self.request(
                "PUT", host, "", scopes, absolute=_with_query(location, digest=desc.digest),
                data=reader(), push=True, retry=False,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Length": str(desc.size)})
        if resp.status not in (201, 204):
            raise await self._error(resp, f"upload blob {desc.digest} to {host}/{path}",
                                    pull=False)
        resp.release()

    async def tags(self, host: str, path: str) -> list[str]:
        """The tags of a repository (``GET /v2/<name>/tags/list``, following the
        ``Link`` header of paginated answers), for ``docker pull --all-tags``."""
        out: list[str] = []
        url: str | None = None
        for _ in range(1000):
            if url is None:
                resp = await self.request("GET", host, f"/v2/{path}/tags/list",
                                          [pull_scope(path)], params={"n": "1000"})
            else:
                resp = await self.request("GET", host, "", [pull_scope(path)], absolute=url)
            if resp.status != 200:
                raise await self._error(resp, f"list tags of {host}/{path}",
                                        repo=f"{host}/{path}")
            try:
                doc = json.loads(await resp.read() or b"{}")
                link = resp.headers.get("Link", "")
            finally:
                resp.release()
            out.extend(t for t in (doc.get("tags") or []) if isinstance(t, str))
            if not link.startswith("<"):
                break
            url = link[1:link.index(">")]
        return out

    # --- login -------------------------------------------------------------------------------

    async def check_login(self, host: str) -> None:
        """Check the credentials of ``host`` as ``docker login`` does: ping, then
        answer the challenge (a token without scope, or basic auth)."""
        ep = await self.ping(host)
        if not self.auth.knows(host):
            return  # the registry asks for nothing
        session = self._get_session()
        auth = await self.auth.header(host, [], self._fetch_token)
        url = ep.base + "/v2/"
        async with session.get(url, headers={"Authorization": auth} if auth else {},
                               ssl=ep.ssl) as resp:
            await resp.read()
            if resp.status == 401:
                raise Unauthorized(f"login attempt to {url} failed with status: "
                                   "401 Unauthorized")
            if resp.status >= 400:
                raise RegistryError(f"login attempt to {url} failed with status: "
                                    f"{resp.status} {resp.reason}")


async def _backoff(attempt: int, retry_after: str | None = None) -> None:
    delay = min(0.1 * (2 ** attempt), 5.0) * (0.5 + random.random())
    if retry_after:
        try:
            delay = min(float(retry_after), 30.0)
        except ValueError:
            pass
    await asyncio.sleep(delay)


def _with_query(location: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(location)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query.extend(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


async def _rechunk(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    buf = bytearray()
    async for data in chunks:
        buf += data
        while len(buf) >= size:
            out = bytes(buf[:size])
            del buf[:size]
            yield out
    if buf:
        yield bytes(buf)


def run_sync(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``coro_fn()`` from a plain thread (pallet-containerd's gRPC workers,
    command-line tools): a fresh event loop in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_fn())
    raise RuntimeError("run_sync called from a running event loop: await the coroutine")


def verify_digest(digest: str) -> str:
    parse_digest(digest)
    return digest
