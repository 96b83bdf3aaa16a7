"""Providers: speech-to-text, language models and text-to-speech behind small protocols.

Vendor modules (``deepgram``, ``groq``, ``local``) import their SDKs, and
nothing else does: importing this package never imports a vendor SDK.
"""

from voicepipe.providers.base import LLM, STT, TTS, Emit, Message, STTEvent, Usage

__all__ = ["LLM", "STT", "TTS", "Emit", "Message", "STTEvent", "Usage"]
