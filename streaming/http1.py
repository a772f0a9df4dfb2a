"""The HTTP/1.1 request head that starts a streaming session, and the
answers to it (RFC 9112 for the syntax, RFC 9110 section 7.8 for Upgrade)."""
from __future__ import annotations

import urllib.parse

import attrs

#: the longest request head accepted
MAX_HEAD = 64 * 1024


class BadRequest(Exception):
    """The head is not HTTP/1.1; answer 400 and close."""


@attrs.frozen
class Request:
    method: str
    target: str
    #: header name (lower case) -> values in order
    headers: dict

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.target).query,
                                     keep_blank_values=True)

    def header(self, name: str) -> str:
        """The values of ``name`` joined by commas (RFC 9110 section 5.3)."""
        return ", ".join(self.headers.get(name.lower(), ()))

    def tokens(self, name: str) -> list[str]:
        """A comma-separated header as its list of tokens (stripped, in order)."""
        return [t.strip() for t in self.header(name).split(",") if t.strip()]

    def upgrade_to(self, protocol: str) -> bool:
        """Whether the client asks to switch to ``protocol`` (case-insensitive)."""
        return any(t.lower() == "upgrade" for t in self.tokens("connection")) and \
            any(t.lower() == protocol.lower() for t in self.tokens("upgrade"))


def head_end(buf: bytes) -> int:
    """Where the head ends in ``buf`` (after CRLF CRLF), or -1 if not yet."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        if len(buf) > MAX_HEAD:
            raise BadRequest("request head too long")
        return -1
    return i + 4


def parse_head(head: bytes) -> Request:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # latin-1 decodes every byte; kept for clarity
        raise BadRequest("undecodable head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"bad request line {lines[0][:80]!r}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"bad header line {line[:80]!r}")
        headers.setdefault(name.lower(), []).append(value.strip())
    return Request(parts[0], parts[1], headers)


_REASONS = {101: "Switching Protocols", 400: "Bad Request", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


def response(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """A response head (with ``body`` and its length unless it switches protocols)."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if status != 101:
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Content-Type: text/plain; charset=utf-8")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body if status != 101 else b"")
