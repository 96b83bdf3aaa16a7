"""The example server's own settings, from the environment or a ``.env`` file.

Provider keys and choices (``DEEPGRAM_API_KEY``, ``GROQ_API_KEY``,
``VOICEPIPE_STT``/``_LLM``/``_TTS``) are :class:`voicepipe.config.Settings`;
these are about serving: who may connect, and how much a session may use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

HERE = Path(__file__).resolve().parent


class ServerSettings(BaseSettings):
    """Every ``VOICEPIPE_*`` setting of the server, typed and defaulted.

    ``allowed_origins``: comma-separated origins (``https://example.org``)
    whose pages may open a session, besides the server's own; ``*`` allows
    any. ``access_token``: when set, clients must send it (``?token=`` or
    ``Authorization: Bearer``). The limits end or refuse sessions with a
    close reason that says which.
    """

    model_config = SettingsConfigDict(
        env_prefix="VOICEPIPE_", env_file=".env", extra="ignore", frozen=True
    )

    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    access_token: SecretStr | None = None
    max_sessions: int = Field(default=50, ge=1)
    max_session_seconds: float = Field(default=600.0, gt=0)
    max_audio_bytes: int = Field(default=16000 * 2 * 600, ge=1)  # 10 min at 16 kHz
    max_frame_bytes: int = Field(default=1 << 20, ge=1024)
    sample_rate: int = Field(default=16000, ge=8000, le=48000)
    realtime_lead: float = Field(default=0.2, ge=0)
    forms_dir: Path = HERE.parent / "forms"
    form_store: Path = Path("voicepipe-forms.db")

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        return tuple(o.strip().rstrip("/").lower() for o in map(str, items) if o.strip())

    @field_validator("access_token")
    @classmethod
    def _no_empty_token(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None
