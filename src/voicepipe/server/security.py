"""Who may open a session, and what never reaches a log line.

Browsers apply no CORS to WebSockets, so the server itself must refuse pages
of other origins, and names it does not answer to (DNS rebinding: a page on
``evil.example`` whose name now resolves to this server sends
``Host: evil.example``). A non-browser client is held back by the access
token. A form session id is not a credential: resuming one takes an id the
server issued (signed with its secret) or the app's own check. ``docs/server.md``
("Security", "Threat model") has the model.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import unquote_plus, urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from voicepipe.server.settings import ServerSettings

__all__ = [
    "LOCAL_HOSTS",
    "SAFE_QUERY_NAMES",
    "SUBPROTOCOL",
    "TOKEN_SUBPROTOCOL",
    "RedactToken",
    "ResumeCheck",
    "SessionSigner",
    "TrustedHosts",
    "allowed_hosts",
    "host_allowed",
    "origin_allowed",
    "presented_token",
    "redact_uvicorn_logs",
    "refusal",
    "subprotocol",
]

SUBPROTOCOL = "voicepipe"
"""The WebSocket subprotocol the server selects when a client offers it."""

TOKEN_SUBPROTOCOL = "voicepipe.token."
"""Prefix of the subprotocol that carries the access token, base64url-encoded
(no padding): ``new WebSocket(url, ["voicepipe", "voicepipe.token." + b64url(token)])``."""

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Host names every server answers to unless ``allowed_hosts`` replaces them."""

SAFE_QUERY_NAMES = frozenset({"mode", "sample_rate", "channels", "input", "output", "language"})
"""Query parameters whose values may appear in a log line; every other value is redacted."""


# -- the checks ---------------------------------------------------------------------


def refusal(settings: ServerSettings, connection: HTTPConnection) -> tuple[int, str] | None:
    """Why ``connection`` may not open a session (close code, reason), or None."""
    host = connection.headers.get("host")
    if not host_allowed(settings, host):
        shown = (host or "")[:60]
        return 1008, f"host {shown!r} is not allowed; add it to VOICEPIPE_ALLOWED_HOSTS"
    origin = connection.headers.get("origin")
    if origin is not None and not origin_allowed(settings.allowed_origins, origin, host):
        return 1008, f"origin {origin[:60]} is not allowed"
    expected = settings.access_token
    if expected is not None:
        given = presented_token(connection) or ""
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            return 1008, "missing or wrong access token"
    return None


def origin_allowed(allowed: tuple[str, ...], origin: str, host: str | None) -> bool:
    """Only the server's own page and the ``allowed`` origins (``*``: any) may open a session."""
    normalized = origin.strip().rstrip("/").lower()
    own = urlsplit(normalized).netloc == (host or "").lower()
    return "*" in allowed or normalized in allowed or own


def allowed_hosts(settings: ServerSettings) -> frozenset[str]:
    """The host names the server answers to: ``allowed_hosts`` (default: the local
    names), plus the hosts of the allowed origins. ``*`` means any."""
    hosts = set(settings.allowed_hosts or LOCAL_HOSTS)
    for origin in settings.allowed_origins:
        name = _hostname(origin) if origin != "*" else None
        if name:
            hosts.add(name)
    return frozenset(hosts)


def host_allowed(settings: ServerSettings, host: str | None) -> bool:
    """Whether the ``Host`` header names this server (its port is not compared)."""
    hosts = allowed_hosts(settings)
    if "*" in hosts:
        return True
    name = _hostname(f"//{host}") if host else None
    return name is not None and name in hosts


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url.strip()).hostname  # lower-cased, IPv6 brackets and port removed
    except ValueError:
        return None


def presented_token(connection: HTTPConnection) -> str | None:
    """The access token the client sent: ``Authorization: Bearer``, else the
    ``voicepipe.token.*`` subprotocol (browsers), else ``?token=`` (fallback)."""
    scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    for offered in _subprotocols(connection):
        if offered.startswith(TOKEN_SUBPROTOCOL):
            encoded = offered[len(TOKEN_SUBPROTOCOL) :]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            except (binascii.Error, ValueError):
                return ""  # present, and wrong
    return connection.query_params.get("token")


def subprotocol(connection: HTTPConnection) -> str | None:
    """The subprotocol to accept the socket with: ``voicepipe`` if offered. (A browser
    that offered subprotocols drops a connection whose answer names none.)"""
    return SUBPROTOCOL if SUBPROTOCOL in _subprotocols(connection) else None


def _subprotocols(connection: HTTPConnection) -> list[str]:
    offered = connection.scope.get("subprotocols")
    if offered is not None:
        return list(offered)
    header = connection.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


class TrustedHosts:
    """ASGI middleware: an HTTP request for a host the server does not answer to gets
    400 (DNS rebinding). WebSockets pass on to :func:`refusal`, which closes them
    with a reason a client can show."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = HTTPConnection(scope).headers.get("host")
            if not host_allowed(self.settings, host):
                response = PlainTextResponse(
                    "host not allowed; add it to VOICEPIPE_ALLOWED_HOSTS", status_code=400
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- form sessions: an id is not a credential ------------------------------------------

ResumeCheck = Callable[[HTTPConnection, str, str], Awaitable[bool] | bool]
"""``check(connection, form_name, session_id)``: may this connection open that form
session? An app plugs in its own (its user's login) with ``create_app(may_resume=...)``."""


class SessionSigner:
    """Issues form session ids that prove who started them: ``<random>.<signature>``.

    The signature is an HMAC of the form name and the random part with the
    server's secret, so an id cannot be guessed, forged, or moved to another
    form; a client resumes with the whole id it was given in the ``session``
    event. Servers that share sessions (workers, restarts) share the secret
    (``VOICEPIPE_SESSION_SECRET``).
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._key = secret if secret else secrets.token_bytes(32)

    def new(self, form: str) -> str:
        """A fresh session id for ``form``."""
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(form, nonce)}"

    def valid(self, form: str, session_id: str) -> bool:
        """Whether ``session_id`` was issued by this secret for ``form``."""
        nonce, dot, signature = session_id.rpartition(".")
        if not dot or not nonce:
            return False
        return hmac.compare_digest(signature.encode(), self._sign(form, nonce).encode())

    def check(self, connection: HTTPConnection, form: str, session_id: str) -> bool:
        """The default :data:`ResumeCheck`: only ids this server issued."""
        return self.valid(form, session_id)

    def _sign(self, form: str, nonce: str) -> str:
        mac = hmac.new(self._key, f"{form}\x00{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode()


async def may_resume(
    check: ResumeCheck, connection: HTTPConnection, form: str, session_id: str
) -> bool:
    """Run a sync or async :data:`ResumeCheck`."""
    verdict = check(connection, form, session_id)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return verdict is True


# -- logs ------------------------------------------------------------------------------


class RedactToken(logging.Filter):
    """Keeps secrets out of log lines (uvicorn logs every request's path and query).

    In every query string of a record, only the values of
    :data:`SAFE_QUERY_NAMES` are kept: ``token`` in any spelling (``%74oken``)
    becomes ``token=[redacted]``, any other parameter ``name=[redacted]`` (or
    ``[redacted]`` when the name itself is odd). The ``secrets`` given (the
    access token) are removed wherever they appear, in any percent-encoding.
    """

    _QUERY = re.compile(r"\?([^\s\"'#]*)")
    _NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
    # Handshake headers (uvicorn's WebSocket protocol logs them all at debug level).
    _HEADER = re.compile(
        r"((?:proxy-)?authorization|cookie|x-twilio-signature)(\s*:\s*)[^\r\n]*", re.IGNORECASE
    )
    _TOKEN_PROTOCOL = re.compile(re.escape(TOKEN_SUBPROTOCOL) + r"[^\s,\"']*")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[re.Pattern[str]] = []
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: str) -> None:
        """Also remove ``secret`` (as it is, or percent-encoded in any case) from every line."""
        if secret and not any(p.pattern == _spellings(secret) for p in self._secrets):
            self._secrets.append(re.compile(_spellings(secret)))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # Its formatter unpacks the arguments: redact them one by one.
            record.msg = self.redact(str(record.msg))
            record.args = tuple(self.redact(a) if isinstance(a, str) else a for a in record.args)
        else:  # the whole line, so that a header's name and value are seen together
            record.msg, record.args = self.redact(record.getMessage()), None
        return True

    def redact(self, text: str) -> str:
        """``text`` with every secret this filter knows of replaced by ``[redacted]``."""
        text = self._QUERY.sub(self._redact_query, text)
        text = self._HEADER.sub(r"\1\2[redacted]", text)
        text = self._TOKEN_PROTOCOL.sub(TOKEN_SUBPROTOCOL + "[redacted]", text)
        for pattern in self._secrets:
            text = pattern.sub("[redacted]", text)
        return text

    def _redact_query(self, match: re.Match[str]) -> str:
        out = []
        for part in re.split(r"([&;])", match.group(1)):
            if part in ("", "&", ";"):
                out.append(part)
                continue
            name = _decoded(part.partition("=")[0])
            if name in SAFE_QUERY_NAMES:
                out.append(part)
            elif self._NAME.fullmatch(name):
                out.append(f"{name}=[redacted]")
            else:
                out.append("[redacted]")
        return "?" + "".join(out)


def _decoded(name: str) -> str:
    """A parameter name as a server would read it, however many times it was encoded."""
    for _ in range(4):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name.strip().lower()


def _spellings(secret: str) -> str:
    """A regex for ``secret`` with any of its characters percent-encoded (hex in any case)."""
    parts = []
    for char in secret:
        encoded = "".join(f"%{b:02x}" for b in char.encode())
        alternatives = [re.escape(char), f"(?i:{re.escape(encoded)})"]
        if char == " ":
            alternatives.append(r"\+")
        parts.append("(?:" + "|".join(alternatives) + ")")
    return "".join(parts)


def redact_uvicorn_logs(*secrets: str) -> None:
    """Put one :class:`RedactToken` on uvicorn's loggers, and teach it ``secrets``."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        existing = [f for f in logger.filters if isinstance(f, RedactToken)]
        if existing:
            for secret in secrets:
                existing[0].add_secret(secret)
        else:
            logger.addFilter(RedactToken(secrets))
