"""The exceptions voicepipe raises. Each message says what to do about it."""

from __future__ import annotations

from typing import Literal

__all__ = [
    "AudioFormatError",
    "PolicyError",
    "ProtocolError",
    "ProviderError",
    "Stage",
    "VoicepipeError",
]

Stage = Literal["input", "stt", "llm", "tts", "policy", "store", "transport", "pipeline"]


class VoicepipeError(Exception):
    """Base class of every error voicepipe raises on purpose."""


class AudioFormatError(VoicepipeError, ValueError):
    """Audio that is not in the declared format (odd byte count, a WAV header, ...)."""


class ProtocolError(VoicepipeError, ValueError):
    """A client message that is not valid JSON or not a known control message."""


class ProviderError(VoicepipeError):
    """A provider failed in a way the pipeline can report.

    ``recoverable`` tells the pipeline whether the session can go on (a failed
    LLM call ends that turn only) or is useless now (bad credentials for the
    STT, the STT connection lost for good). Messages must never contain secrets.
    """

    def __init__(
        self, stage: Stage, message: str, *, recoverable: bool = True, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.stage: Stage = stage
        self.message = message
        self.recoverable = recoverable
        self.status = status


class PolicyError(VoicepipeError):
    """A policy cannot go on: with this turn, or (``recoverable=False``) with the session.

    The pipeline reports it as an ``error`` event with ``stage`` and the
    message. A recoverable one ends the turn only; a non-recoverable one
    (a form session id that belongs to another form, say) ends the session at
    once: ``error``, then ``finish`` with reason ``"error"``.
    """

    def __init__(self, message: str, *, stage: Stage = "policy", recoverable: bool = True) -> None:
        super().__init__(message)
        self.stage: Stage = stage
        self.message = message
        self.recoverable = recoverable
