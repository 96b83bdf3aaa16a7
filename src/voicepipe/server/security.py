"""Who may open a session: the Origin check, the access token, and keeping the token
out of the logs.

Browsers apply no CORS to WebSockets, so the server itself must refuse pages
of other origins; a non-browser client is held back by the access token.
"""

from __future__ import annotations

import hmac
import logging
import re
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from voicepipe.server.settings import ServerSettings

__all__ = ["RedactToken", "origin_allowed", "redact_uvicorn_logs", "refusal"]


def refusal(settings: ServerSettings, connection: HTTPConnection) -> tuple[int, str] | None:
    """Why ``connection`` may not open a session (close code, reason), or None."""
    origin = connection.headers.get("origin")
    if origin is not None and not origin_allowed(
        settings.allowed_origins, origin, connection.headers.get("host")
    ):
        return 1008, f"origin {origin[:60]} is not allowed"
    expected = settings.access_token
    if expected is not None:
        given = connection.query_params.get("token", "")
        scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = credentials.strip()
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            return 1008, "missing or wrong access token"
    return None


def origin_allowed(allowed: tuple[str, ...], origin: str, host: str | None) -> bool:
    """Only the server's own page and the ``allowed`` origins (``*``: any) may open a session."""
    normalized = origin.strip().rstrip("/").lower()
    own = urlsplit(normalized).netloc == (host or "").lower()
    return "*" in allowed or normalized in allowed or own


class RedactToken(logging.Filter):
    """Hides ``token=...`` in log lines (uvicorn logs every request's query string)."""

    _TOKEN = re.compile(r"([?&]token=)[^&\s\"']*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._TOKEN.sub(r"\1[redacted]", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._TOKEN.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def redact_uvicorn_logs() -> None:
    """Put :class:`RedactToken` on uvicorn's loggers (once)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactToken) for f in logger.filters):
            logger.addFilter(RedactToken())
