"""Choosing, building and loading the providers of a command's session."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from rich.console import Console
from rich.live import Live
from rich.text import Text

from voicepipe.cli.options import LlmChoice, SttChoice, TtsChoice
from voicepipe.config import ProviderName, choose, load_settings, make_llm, make_stt, make_tts

if TYPE_CHECKING:
    from voicepipe.providers.base import LLM, STT, TTS


@dataclass
class Providers:
    names: tuple[ProviderName, ProviderName, ProviderName]
    stt: STT
    llm: LLM
    tts: TTS

    def all(self) -> list[tuple[str, str, Any]]:
        return [
            ("STT", self.names[0], self.stt),
            ("LLM", self.names[1], self.llm),
            ("TTS", self.names[2], self.tts),
        ]

    async def aclose(self) -> None:
        for _, _, provider in self.all():
            close = getattr(provider, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()


def build(
    stt: SttChoice | None,
    llm: LlmChoice | None,
    tts: TtsChoice | None,
    fake_turns: Sequence[str] | None,
) -> Providers:
    base = load_settings()
    settings = base.model_copy(
        update={k: v.value for k, v in (("stt", stt), ("llm", llm), ("tts", tts)) if v is not None}
    )
    names = choose(settings)
    return Providers(
        names,
        make_stt(names[0], settings, fake_turns=fake_turns or None),
        make_llm(names[1], settings),
        make_tts(names[2], settings),
    )


def describe(provider: object) -> str:
    return type(provider).__name__


async def load_models(providers: Providers, err: Console) -> None:
    """Load the offline models up front (in worker threads), showing progress on stderr."""
    todo = [
        (role, provider)
        for role, _, provider in providers.all()
        if callable(getattr(provider, "load", None))
    ]
    if not todo:
        return
    done: dict[str, float] = {}

    def render() -> Text:
        text = Text()
        for role, provider in todo:
            key = f"{role} {describe(provider)}"
            mark = f"loaded in {done[key]:.1f} s" if key in done else "loading ..."
            text.append(f"  {key}: {mark}\n", style="dim" if key in done else "")
        return text

    async def load(role: str, provider: Any, refresh: Callable[[], None]) -> None:
        started = time.perf_counter()
        await provider.load()
        key = f"{role} {describe(provider)}"
        done[key] = time.perf_counter() - started
        if not err.is_terminal:
            err.print(f"loaded {key} in {done[key]:.1f} s", style="dim")
        refresh()

    started = time.perf_counter()
    if err.is_terminal:
        with Live(render(), console=err, transient=False, refresh_per_second=8) as live:
            async with anyio.create_task_group() as tg:
                for role, provider in todo:
                    tg.start_soon(load, role, provider, lambda: live.update(render()))
    else:
        err.print("loading offline models ...", style="dim")
        async with anyio.create_task_group() as tg:
            for role, provider in todo:
                tg.start_soon(load, role, provider, lambda: None)
    err.print(f"models ready in {time.perf_counter() - started:.1f} s", style="dim")


def label(providers: Providers, index: int) -> str:
    name, provider = providers.names[index], providers.all()[index][2]
    return f"{name} ({describe(provider)})"
