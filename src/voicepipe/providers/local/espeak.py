"""eSpeak NG text-to-speech, offline: a tiny, robotic fallback.

``espeakng-loader`` bundles ``libespeak-ng`` and its data (no apt needed); we
call it through ctypes. Synthesis is formant-based, so first audio comes in
well under a millisecond and a sentence takes a few milliseconds; it still
runs in a worker thread. The library keeps global state, so one lock
serialises every synthesis in the process (each is that short).

Install: ``pip install espeakng-loader`` (the ``local`` extra).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio

from voicepipe.audio import AudioFormat
from voicepipe.errors import ProviderError

__all__ = ["EspeakTTS"]

_SAMPLE_RATE = 22050  # what espeak-ng always produces
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE = 1  # espeakRATE, words per minute
_PITCH = 3  # espeakPITCH, 0-100
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_LOCK = threading.Lock()
_lib: Any = None
_callback: Any = None  # keeps the ctypes callback alive for the library's lifetime
_collected: list[bytes] = []  # audio of the synthesis in progress (guarded by _LOCK)


def _on_audio(wav: Any, samples: int, _events: Any) -> int:
    if wav and samples > 0:
        _collected.append(ctypes.string_at(wav, samples * 2))
    return 0


def _library() -> Any:
    """Load and initialise libespeak-ng once per process (call with _LOCK held)."""
    global _lib, _callback
    if _lib is None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise ProviderError(
                "tts", "eSpeak NG is not installed: pip install espeakng-loader", recoverable=False
            ) from exc
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, 0)
        if rate != _SAMPLE_RATE:
            raise ProviderError(
                "tts", f"eSpeak NG failed to initialise ({rate})", recoverable=False
            )
        _callback = _CALLBACK(_on_audio)
        lib.espeak_SetSynthCallback(_callback)
        _lib = lib
    return _lib


def _synthesize(text: str, voice: str, rate_wpm: int, pitch: int) -> bytes:
    with _LOCK:
        lib = _library()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ProviderError("tts", f"eSpeak NG has no voice {voice!r}", recoverable=False)
        lib.espeak_SetParameter(_RATE, rate_wpm, 0)
        lib.espeak_SetParameter(_PITCH, pitch, 0)
        data = text.encode() + b"\0"
        _collected.clear()
        try:
            status = lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
            if status != 0:
                raise ProviderError("tts", f"eSpeak NG synthesis failed ({status})")
            return b"".join(_collected)
        finally:
            _collected.clear()


class EspeakTTS:
    """Offline formant TTS at 22050 Hz mono. ``voice`` is an eSpeak NG voice name."""

    def __init__(self, voice: str = "en-us", *, rate_wpm: int = 175, pitch: int = 50) -> None:
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.pitch = pitch

    @property
    def output_format(self) -> AudioFormat:
        return AudioFormat(sample_rate=_SAMPLE_RATE, channels=1)

    async def load(self) -> None:
        """Load the library now (it takes a few milliseconds)."""
        await anyio.to_thread.run_sync(_load_locked)

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        if not text.strip():
            return
        pcm = await anyio.to_thread.run_sync(
            _synthesize, text, self.voice, self.rate_wpm, self.pitch
        )
        if pcm:
            yield pcm


def _load_locked() -> None:
    with _LOCK:
        _library()
