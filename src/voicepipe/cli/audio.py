"""Recorded audio in: a WAV file read, converted for the STT, and fed in chunks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel

from voicepipe.audio import AudioFormat, chunk_pcm, read_wav, resample
from voicepipe.cli.errors import CliError
from voicepipe.errors import AudioFormatError
from voicepipe.events import AssistantReply, ErrorEvent, Event, Finish, UserTurn

STT_FORMAT = AudioFormat(16000, 1)
"""What recorded audio is converted to before the STT: every STT takes 16 kHz mono."""
FEED_CHUNK_MS = 100


def read_input(path: Path) -> tuple[bytes, float]:
    """The WAV at ``path`` as 16 kHz mono PCM16, and its duration in seconds."""
    if not path.exists():
        raise CliError(f"{path}: no such file")
    if path.is_dir():
        raise CliError(f"{path}: is a directory, not a WAV file")
    try:
        pcm, fmt = read_wav(path)
    except AudioFormatError as exc:
        raise CliError(f"{path}: {exc}") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not pcm:
        raise CliError(f"{path}: the WAV file holds no audio")
    if fmt != STT_FORMAT:
        pcm = resample(pcm, fmt, STT_FORMAT)
    return pcm, STT_FORMAT.duration(len(pcm))


class TurnGate:
    """Holds a recording fed faster than real time after each user turn until the reply to
    it is out (or ``timeout`` seconds pass), and at the start until the opening line is.

    A caller answers after hearing the question; a file fed at full speed does not wait,
    so its next answer could be judged before the policy has said what it expects (a
    phone number held as an unfinished e-mail address and joined with the next turn).
    Feed it :meth:`on_event` with the session's events.
    """

    def __init__(self, *, closed: bool = False, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._open = anyio.Event()
        if not closed:
            self._open.set()

    async def on_event(self, event: Event) -> None:
        if isinstance(event, UserTurn):
            if self._open.is_set():
                self._open = anyio.Event()
        elif isinstance(event, AssistantReply | ErrorEvent | Finish):
            self._open.set()

    async def wait(self) -> None:
        with anyio.move_on_after(self.timeout):
            await self._open.wait()
        self._open.set()


async def recorded(
    pcm: bytes, *, realtime: bool = False, gate: TurnGate | None = None
) -> AsyncIterator[bytes]:
    """Recorded audio, fed as fast as the STT takes it (held by ``gate`` between a turn
    and its reply), or at its own pace with ``realtime``."""
    started = time.perf_counter()
    sent = 0.0
    for chunk in chunk_pcm(pcm, STT_FORMAT, FEED_CHUNK_MS):
        if gate is not None:
            await gate.wait()
        if realtime:
            await anyio.sleep(max(0.0, started + sent - time.perf_counter()))
            sent += STT_FORMAT.duration(len(chunk))
        yield chunk
        await anyio.lowlevel.checkpoint()
