"""A fake transport core for dialect unit tests: records what a dialect does with its link."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from anyio.abc import TaskGroup

from voicepipe.audio import AudioFormat
from voicepipe.errors import Stage


@dataclass
class FakePipeline:
    """The parts of a Pipeline that dialects touch, with the hooks recorded."""

    input_format: AudioFormat = field(default_factory=lambda: AudioFormat(16000))
    output_format: AudioFormat | None = field(default_factory=lambda: AudioFormat(24000))
    stt: Any = None
    session_id: str = "s1"
    playback: Any = None
    injected: list[str] = field(default_factory=list)

    async def inject_turn(self, text: str) -> None:
        self.injected.append(text)


@dataclass
class FakeLink:
    """Implements the transport core's ``Link`` by recording every call."""

    tg: TaskGroup
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    pipeline: Any = field(default_factory=FakePipeline)
    input_ended: bool = False
    pcm: bytearray = field(default_factory=bytearray)
    texts: list[str] = field(default_factory=list)
    sent: list[str | bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    as_is: bool = False  # the dialect called audio_as_is()
    audio_budget: int | None = None  # spend_audio's limit (the core's max_audio_bytes)
    spent: int = 0

    async def audio(self, pcm: bytes) -> None:
        if not self.input_ended:
            self.pcm += pcm

    def audio_nowait(self, pcm: bytes) -> bool:
        if self.input_ended:
            return False
        self.pcm += pcm
        return True

    async def spend_audio(self, size: int) -> bool:
        self.spent += size
        if self.audio_budget is not None and self.spent > self.audio_budget:
            self.failed.append("audio budget")
            return False
        return True

    def audio_as_is(self) -> None:
        self.as_is = True

    async def text(self, content: str) -> None:
        self.texts.append(content)

    async def end_input(self) -> None:
        self.input_ended = True

    async def send(self, frame: str | bytes) -> None:
        self.sent.append(frame)

    async def error(self, message: str, *, stage: Stage = "input") -> None:
        self.errors.append(message)

    async def fail(self, message: str, *, stage: Stage = "input") -> None:
        self.failed.append(message)

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        self.tg.start_soon(func, *args)

    def json(self) -> list[dict[str, Any]]:
        """The JSON text frames sent so far."""
        return [json.loads(f) for f in self.sent if isinstance(f, str)]
