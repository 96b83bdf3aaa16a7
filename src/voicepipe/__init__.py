"""voicepipe: real-time voice agents with pluggable speech-to-text, LLM and text-to-speech.

The public surface is this module: the :class:`Pipeline`, the policies, the
provider protocols, audio formats and the events a session emits. Providers
live in :mod:`voicepipe.providers` (``fake``, ``deepgram``, ``groq``,
``local``); importing voicepipe never imports a vendor SDK.
"""

from typing import TYPE_CHECKING, Any

from voicepipe.audio import AudioFormat
from voicepipe.errors import (
    AudioFormatError,
    PolicyError,
    ProtocolError,
    ProviderError,
    VoicepipeError,
)
from voicepipe.events import (
    AssistantDelta,
    AssistantReply,
    AudioChunk,
    ErrorEvent,
    Event,
    Finish,
    FormComplete,
    FormProgress,
    Interrupted,
    Metrics,
    Paused,
    Resumed,
    Session,
    SpeechStarted,
    ToolCallEvent,
    ToolResultEvent,
    TranscriptFinal,
    TranscriptInterim,
    UserTurn,
)
from voicepipe.pipeline import Pipeline
from voicepipe.policies import ConversationPolicy, Policy, PolicyContext, Reply
from voicepipe.providers.base import LLM, STT, TTS, Message, ToolCall, ToolLLM, ToolSpec, Usage
from voicepipe.turns import BargeIn, LocalTurnDetector, TurnDetector

if TYPE_CHECKING:
    from voicepipe.forms.schema import Form
    from voicepipe.policies.form import FormPolicy

__version__ = "0.1.0"

# Forms pull in pydantic and validators; they load on first use so that
# ``import voicepipe`` stays fast.
_LAZY = {"Form": "voicepipe.forms.schema", "FormPolicy": "voicepipe.policies.form"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'voicepipe' has no attribute {name!r}")


__all__ = [
    "LLM",
    "STT",
    "TTS",
    "AssistantDelta",
    "AssistantReply",
    "AudioChunk",
    "AudioFormat",
    "AudioFormatError",
    "BargeIn",
    "ConversationPolicy",
    "ErrorEvent",
    "Event",
    "Finish",
    "Form",
    "FormComplete",
    "FormPolicy",
    "FormProgress",
    "Interrupted",
    "LocalTurnDetector",
    "Message",
    "Metrics",
    "Paused",
    "Pipeline",
    "Policy",
    "PolicyContext",
    "PolicyError",
    "ProtocolError",
    "ProviderError",
    "Reply",
    "Resumed",
    "Session",
    "SpeechStarted",
    "ToolCall",
    "ToolCallEvent",
    "ToolLLM",
    "ToolResultEvent",
    "ToolSpec",
    "TranscriptFinal",
    "TranscriptInterim",
    "TurnDetector",
    "Usage",
    "UserTurn",
    "VoicepipeError",
    "__version__",
]
