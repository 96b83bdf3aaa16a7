"""Running one session of a command: the pipeline's events to the view."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

from voicepipe.cli.audio import STT_FORMAT
from voicepipe.cli.loading import Providers
from voicepipe.cli.view import View
from voicepipe.events import Event

if TYPE_CHECKING:
    from voicepipe.policies.base import Policy


T = TypeVar("T")


async def run_session(
    providers: Providers,
    policy: Policy,
    audio: AsyncIterator[bytes],
    view: View,
    *,
    session_id: str | None = None,
    barge_in: bool = False,
    realtime_lead: float | None = None,
    on_event: Callable[[Event], Awaitable[None]] | None = None,
) -> None:
    from voicepipe.pipeline import Pipeline

    pipeline = Pipeline(
        stt=providers.stt,
        llm=providers.llm,
        tts=providers.tts,
        policy=policy,
        input_format=STT_FORMAT,
        barge_in=barge_in,
        realtime_lead=realtime_lead,
        session_id=session_id,
    )
    try:
        async with pipeline.run(audio) as events:
            async for event in events:
                view.show(event)
                if on_event is not None:
                    await on_event(event)
    finally:
        view.close()
        await providers.aclose()


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(fn)
