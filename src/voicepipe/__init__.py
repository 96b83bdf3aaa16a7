"""voicepipe: real-time voice agents with pluggable speech-to-text, LLM and text-to-speech.

The public surface is this module: the :class:`Pipeline`, the policies, the
provider protocols, audio formats and the events a session emits. Providers
live in :mod:`voicepipe.providers` (``fake``, ``deepgram``, ``groq``,
``local``); importing voicepipe never imports a vendor SDK.
"""

from voicepipe.audio import AudioFormat
from voicepipe.errors import AudioFormatError, ProtocolError, ProviderError, VoicepipeError
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
    Session,
    SpeechStarted,
    TranscriptFinal,
    TranscriptInterim,
    UserTurn,
)
from voicepipe.pipeline import Pipeline
from voicepipe.policies import ConversationPolicy, Policy, PolicyContext, Reply
from voicepipe.providers.base import LLM, STT, TTS, Message, Usage

__version__ = "0.1.0"

__all__ = [
    "LLM",
    "STT",
    "TTS",
    "AssistantDelta",
    "AssistantReply",
    "AudioChunk",
    "AudioFormat",
    "AudioFormatError",
    "ConversationPolicy",
    "ErrorEvent",
    "Event",
    "Finish",
    "FormComplete",
    "FormProgress",
    "Interrupted",
    "Message",
    "Metrics",
    "Pipeline",
    "Policy",
    "PolicyContext",
    "ProtocolError",
    "ProviderError",
    "Reply",
    "Session",
    "SpeechStarted",
    "TranscriptFinal",
    "TranscriptInterim",
    "Usage",
    "UserTurn",
    "VoicepipeError",
    "__version__",
]
