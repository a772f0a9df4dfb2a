"""Registry credentials and authentication.

* :class:`Credentials` and their two travelling forms: docker's
  ``config.json`` (``{"auths": {"HOST": {"auth": base64("user:password")}}}``,
  docker.io under ``https://index.docker.io/v1/``) and the API's
  ``X-Registry-Auth`` header (base64url of a JSON AuthConfig).
* :class:`Authenticator`: answers a registry's ``WWW-Authenticate``
  challenge (distribution's token spec): ``Basic`` sends the credentials on
  every request; ``Bearer realm=...,service=...,scope=...`` gets a token from
  the realm (anonymously, or with the credentials as basic auth, or with an
  identity token as an OAuth2 refresh token) and caches it per scope set.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
import urllib.parse
from typing import Callable, Iterable, Mapping

import attrs

from pallet.core.errors import InvalidArgument, PalletError
from pallet.core.files import write_atomic

#: the key docker.io's credentials are stored under in config.json
INDEX_SERVER = "https://index.docker.io/v1/"
DOCKER_IO = "docker.io"


class Unauthorized(PalletError):
    """The registry refused the credentials (docker answers 401)."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"


class Denied(PalletError):
    """The registry refused access to a repository (docker answers 403/404)."""

    http_status = 403
    grpc_code = "PERMISSION_DENIED"


@attrs.frozen
class Credentials:
    """What a client proves itself with: user and password, or an identity token."""

    username: str = ""
    password: str = attrs.field(default="", repr=False)
    identity_token: str = attrs.field(default="", repr=False)
    registry_token: str = attrs.field(default="", repr=False)

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token or self.registry_token)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


# --- config.json -----------------------------------------------------------------------

def default_config_path() -> str:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (docker's rule)."""
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def config_key(host: str) -> str:
    """The ``auths`` key a registry host is stored under."""
    return INDEX_SERVER if host in (DOCKER_IO, "index.docker.io", "registry-1.docker.io") \
        else host


def normalize_server(server: str | None) -> str:
    """A registry host from what ``docker login`` accepts (``https://host:5000/v2/``,
    ``host:5000``, empty for docker.io)."""
    server = (server or "").strip()
    if not server or server.rstrip("/") in (INDEX_SERVER.rstrip("/"), "https://index.docker.io",
                                            "index.docker.io", DOCKER_IO,
                                            "registry-1.docker.io"):
        return DOCKER_IO
    if "://" in server:
        server = urllib.parse.urlsplit(server).netloc
    return server.split("/", 1)[0]


class AuthConfigFile:
    """docker's ``config.json``: read, store and erase credentials.

    Other keys of the file (``credsStore``, ``psFormat``...) are kept as they
    are.  Written temp-then-rename with mode 0600, as docker does.
    """

    def __init__(self, path: str | None = None):
        self.path = path or default_config_path()

    def _load(self) -> dict:
        try:
            with open(self.path) as f:
                doc = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"read {self.path}: {e}") from None
        if not isinstance(doc, dict):
            raise InvalidArgument(f"read {self.path}: not a JSON object")
        return doc

    def get(self, host: str) -> Credentials | None:
        """The stored credentials of ``host`` (None when there are none)."""
        auths = self._load().get("auths") or {}
        key = config_key(host)
        entry = auths.get(key)
        if entry is None:  # docker also finds entries stored as URLs
            for k, v in auths.items():
                if normalize_server(k) == host or (key == INDEX_SERVER
                                                   and normalize_server(k) == DOCKER_IO):
                    entry = v
                    break
        if not isinstance(entry, dict):
            return None
        user, password = entry.get("username", ""), entry.get("password", "")
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidArgument(f"read {self.path}: invalid auth for {key}") from None
        creds = Credentials(user, password, entry.get("identitytoken", ""))
        return creds if creds else None

    def store(self, host: str, creds: Credentials) -> None:
        """Save ``creds`` for ``host`` (the password goes in ``auth``, as docker writes it)."""
        doc = self._load()
        entry: dict = {"auth": base64.b64encode(
            f"{creds.username}:{creds.password}".encode()).decode()}
        if creds.identity_token:
            entry = {"auth": base64.b64encode(f"{creds.username}:".encode()).decode(),
                     "identitytoken": creds.identity_token}
        doc.setdefault("auths", {})[config_key(host)] = entry
        self._write(doc)

    def erase(self, host: str) -> bool:
        """Forget ``host``'s credentials; False when there were none."""
        doc = self._load()
        auths = doc.get("auths") or {}
        key = config_key(host)
        found = [k for k in auths if k == key or normalize_server(k) == host]
        for k in found:
            del auths[k]
        if found:
            self._write(doc)
        return bool(found)

    def _write(self, doc: dict) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        # the docker CLI's layout; 0600, for it holds credentials
        write_atomic(self.path, json.dumps(doc, indent="\t") + "\n", fsync=False, mode=0o600)


# --- X-Registry-Auth -------------------------------------------------------------------

def encode_registry_auth(creds: Credentials | None, server: str = "") -> str:
    """The ``X-Registry-Auth`` header value a client sends with pull or push."""
    doc = {}
    if creds:
        doc = {"username": creds.username, "password": creds.password,
               "serveraddress": server}
        if creds.identity_token:
            doc["identitytoken"] = creds.identity_token
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def decode_registry_auth(value: str | None) -> Credentials | None:
    """Credentials from an ``X-Registry-Auth`` header (None when empty).

    docker sends base64url; older clients sent standard base64 or even plain
    JSON, which are accepted too.  An undecodable header is ignored, as
    dockerd does (the pull then runs anonymously).
    """
    value = (value or "").strip()
    if not value:
        return None
    doc = None
    if value.startswith("{"):
        candidates = [value.encode()]
    else:
        padded = value + "=" * (-len(value) % 4)
        candidates = []
        for decode in (base64.urlsafe_b64decode, base64.b64decode):
            try:
                candidates.append(decode(padded))
            except (binascii.Error, ValueError):
                continue
    for raw in candidates:
        try:
            doc = json.loads(raw)
            break
        except ValueError:
            continue
    if not isinstance(doc, dict):
        return None
    creds = Credentials(doc.get("username") or "", doc.get("password") or "",
                        doc.get("identitytoken") or "", doc.get("registrytoken") or "")
    return creds if creds else None


def auth_config_from_body(body: Mapping) -> tuple[str, Credentials]:
    """``(host, credentials)`` from the body of ``POST /auth`` (docker's AuthConfig)."""
    if not isinstance(body, Mapping):
        raise InvalidArgument("auth config must be a JSON object")
    server = normalize_server(body.get("serveraddress") or "")
    return server, Credentials(body.get("username") or "", body.get("password") or "",
                               body.get("identitytoken") or "")


# --- challenges ------------------------------------------------------------------------

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_challenges(header: str | Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """``[(scheme, params)]`` of ``WWW-Authenticate`` values (RFC 7235),
    schemes lower-cased: ``Bearer realm="...",service="...",scope="..."``."""
    values = [header] if isinstance(header, str) else list(header)
    out = []
    for value in values:
        rest = value.strip()
        while rest:
            m = re.match(r"([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s*", rest)
            if not m:
                break
            scheme, rest = m.group(1).lower(), rest[m.end():]
            params: dict[str, str] = {}
            while True:
                pm = _PARAM.match(rest)
                if not pm:
                    break
                value_ = pm.group(2) if pm.group(2) is not None else pm.group(3)
                params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value_)
                rest = rest[pm.end():]
            out.append((scheme, params))
            rest = rest.lstrip(", ")
    return out


def pull_scope(path: str) -> str:
    return f"repository:{path}:pull"


def push_scope(path: str) -> str:
    return f"repository:{path}:pull,push"


@attrs.frozen
class _Token:
    value: str
    expires: float


class Authenticator:
    """Authorization headers for one client of one or more registries.

    ``credentials(host)`` gives the credentials to use for a host (or None:
    anonymous).  ``fetch_token(url, params, headers, method, form)`` does the
    HTTP request to a token realm and returns ``(status, json body)``; the
    registry client passes its own (so that the same TLS and timeouts apply).
    """

    def __init__(self, credentials: Callable[[str], Credentials | None] | None = None):
        self._credentials = credentials or (lambda host: None)
        self._challenges: dict[str, tuple[str, dict[str, str]]] = {}
        self._tokens: dict[tuple[str, tuple[str, ...]], _Token] = {}

    def credentials(self, host: str) -> Credentials | None:
        return self._credentials(host)

    def knows(self, host: str) -> bool:
        return host in self._challenges

    def learn(self, host: str,
              www_authenticate: Iterable[str]) -> tuple[str, dict[str, str]] | None:
        """Remember the challenge a host answered 401 with; return the one chosen
        (Bearer preferred over Basic), or None if no usable scheme was offered."""
        chosen = None
        for scheme, params in parse_challenges(list(www_authenticate)):
            if scheme == "bearer" and params.get("realm"):
                chosen = (scheme, params)
                break
            if scheme == "basic" and chosen is None:
                chosen = (scheme, params)
        if chosen is not None:
            self._challenges[host] = chosen
        return chosen

    def forget_tokens(self, host: str, scopes: Iterable[str]) -> None:
        self._tokens.pop((host, tuple(sorted(scopes))), None)

    async def header(self, host: str, scopes: Iterable[str], fetch_token) -> str | None:
        """The ``Authorization`` value for a request to ``host`` needing ``scopes``."""
        challenge = self._challenges.get(host)
        if challenge is None:
            return None
        scheme, params = challenge
        creds = self.credentials(host)
        if scheme == "basic":
            if creds and creds.username:
                return creds.basic()
            return None
        if creds and creds.registry_token:
            return "Bearer " + creds.registry_token
        key = (host, tuple(sorted(set(scopes))))
        tok = self._tokens.get(key)
        if tok is None or tok.expires <= time.monotonic():
            tok = await self._fetch(host, params, list(key[1]), creds, fetch_token)
            self._tokens[key] = tok
        return "Bearer " + tok.value

    async def _fetch(self, host: str, params: dict[str, str], scopes: list[str],
                     creds: Credentials | None, fetch_token) -> _Token:
        realm = params["realm"]
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        for scope in scopes:
            query.append(("scope", scope))
        headers: dict[str, str] = {}
        if creds and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": "pallet", "service": params.get("service", ""),
                    "scope": " ".join(scopes)}
            status, body = await fetch_token(realm, [], headers, "POST", form)
        else:
            if creds and creds.username:
                headers["Authorization"] = creds.basic()
                query.append(("account", creds.username))
            status, body = await fetch_token(realm, query, headers, "GET", None)
        if status in (401, 403):
            detail = _token_error(body) or "authentication required"
            raise Unauthorized(f"get token from {realm} for {host}: unauthorized: {detail}")
        if status != 200 or not isinstance(body, dict):
            raise Unauthorized(f"get token from {realm} for {host}: unexpected status {status}")
        value = body.get("token") or body.get("access_token")
        if not value:
            raise Unauthorized(f"get token from {realm} for {host}: no token in the answer")
        try:
            expires_in = int(body.get("expires_in") or 60)
        except (TypeError, ValueError):
            expires_in = 60
        # renew a little before it lapses; the spec's minimum lifetime is 60 s
        return _Token(value, time.monotonic() + max(expires_in - 10, 5))


def _token_error(body) -> str:
    if isinstance(body, dict):
        if isinstance(body.get("errors"), list) and body["errors"]:
            e = body["errors"][0]
            if isinstance(e, dict):
                return str(e.get("message") or e.get("code") or "")
        return str(body.get("details") or body.get("error") or "")
    return ""
