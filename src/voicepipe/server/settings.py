"""The server's own settings, from ``VOICEPIPE_*`` environment variables or a ``.env`` file.

Provider keys and choices (``DEEPGRAM_API_KEY``, ``GROQ_API_KEY``,
``VOICEPIPE_STT``/``_LLM``/``_TTS``) are :class:`voicepipe.config.Settings`;
these are about serving: who may connect, how much a session may use, where
form answers are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ServerSettings"]


class ServerSettings(BaseSettings):
    """Every ``VOICEPIPE_*`` setting of the server, typed and defaulted.

    ``allowed_origins``: comma-separated origins (``https://example.org``)
    whose pages may open a session, besides the server's own; ``*`` allows
    any. ``allowed_hosts``: the names the server answers to in the ``Host``
    header (default: localhost names), besides the allowed origins' hosts; ``*``
    allows any. ``access_token``: when set, clients must send it (the
    ``voicepipe.token.*`` subprotocol, ``Authorization: Bearer``, or ``?token=``).
    ``session_secret`` signs form session ids (a random one per process if
    unset). The limits end or refuse sessions with a close reason that says
    which. Form answers go to the SQLite file
    ``form_store``, or to PostgreSQL when ``form_store_dsn`` is set (needed
    for a form session to resume on any worker); ``form_lease_seconds`` is
    how long a crashed process can keep a form session from being resumed.
    ``twilio_auth_token``: when set, ``/twilio`` checks each call's
    ``X-Twilio-Signature`` against ``twilio_public_url`` (the ``wss://`` base
    your TwiML names; else rebuilt from ``Host`` and ``X-Forwarded-Proto``).
    ``tools`` (``package.module:attribute``, a function or a list of them)
    gives the assistant on ``/listen`` tools to call.
    On SIGTERM the server drains (:mod:`voicepipe.server.drain`): sessions in
    progress go on for ``drain_seconds``, then end; one still busy
    ``drain_stop_seconds`` later is cut. ``send_timeout``: seconds one frame
    may wait for a client to read; a client that reads nothing for that long is
    dropped and its slot freed. ``gc_freeze``: after startup, move every object
    alive to the garbage collector's permanent generation (``gc.freeze()``), so
    collections during sessions walk only the sessions' objects (shorter pauses,
    a lower p99); ``voicepipe serve`` turns it on. ``gc_threshold``: the
    collector's generation-0 threshold from startup on (Python's default is
    700 allocations; a server of many sessions allocates that every few
    milliseconds, and each collection is a pause for every session);
    ``voicepipe serve`` sets 20000. ``None`` (an embedding app's default)
    leaves the process's collector alone.
    """

    model_config = SettingsConfigDict(
        env_prefix="VOICEPIPE_", env_file=".env", extra="ignore", frozen=True
    )

    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    access_token: SecretStr | None = None
    session_secret: SecretStr | None = None
    max_sessions: int = Field(default=50, ge=1)
    max_session_seconds: float = Field(default=600.0, gt=0)
    max_audio_bytes: int = Field(default=16000 * 2 * 600, ge=1)  # 10 min at 16 kHz
    max_frame_bytes: int = Field(default=1 << 20, ge=1024)
    sample_rate: int = Field(default=16000, ge=8000, le=48000)
    realtime_lead: float = Field(default=0.2, ge=0)
    forms_dir: Path = Path("forms")
    form_store: Path = Path("voicepipe-forms.db")
    form_store_dsn: SecretStr | None = None
    form_store_schema: str | None = None
    form_lease_seconds: float = Field(default=300.0, gt=0)
    twilio_auth_token: SecretStr | None = None
    twilio_public_url: str | None = None
    tools: str | None = None  # "module:attr": tools for /listen (docs/tools.md)
    drain_seconds: float = Field(default=30.0, ge=0)
    drain_stop_seconds: float = Field(default=10.0, ge=0)
    send_timeout: float = Field(default=10.0, gt=0)
    gc_freeze: bool = False
    gc_threshold: int | None = Field(default=None, ge=1)

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        return tuple(o.strip().rstrip("/").lower() for o in map(str, items) if o.strip())

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        return tuple(h.strip().strip("[]").lower() for h in map(str, items) if h.strip())

    @field_validator("access_token", "form_store_dsn", "session_secret", "twilio_auth_token")
    @classmethod
    def _no_empty_secret(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None
