"""The providers every session of a server process shares."""

from __future__ import annotations

from dataclasses import dataclass

from voicepipe.providers.base import LLM, STT, TTS

__all__ = ["Providers"]


@dataclass(slots=True)
class Providers:
    """The providers every session shares, built once per process."""

    stt: STT
    llm: LLM
    tts: TTS | None
    names: tuple[str, str, str] = ("custom", "custom", "custom")

    @classmethod
    def from_env(cls) -> Providers:
        """What ``VOICEPIPE_STT``/``_LLM``/``_TTS`` and the keys choose (see voicepipe.config)."""
        from voicepipe.config import choose, load_settings, make_llm, make_stt, make_tts

        settings = load_settings()
        stt, llm, tts = choose(settings)
        return cls(
            make_stt(stt, settings),
            make_llm(llm, settings),
            make_tts(tts, settings),
            (stt, llm, tts),
        )

    async def aclose(self) -> None:
        for provider in (self.stt, self.llm, self.tts):
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()
