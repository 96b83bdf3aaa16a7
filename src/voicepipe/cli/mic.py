"""``--mic``: a live session through the microphone and the speaker (sounddevice)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from rich.console import Console

from voicepipe.audio import AudioFormat
from voicepipe.cli.audio import FEED_CHUNK_MS, STT_FORMAT
from voicepipe.cli.errors import EXIT_PROVIDER, CliError
from voicepipe.cli.loading import Providers
from voicepipe.cli.session import run_session
from voicepipe.cli.view import View
from voicepipe.events import AudioChunk, Event, Interrupted

if TYPE_CHECKING:
    from voicepipe.policies.base import Policy


MIC_LEAD_S = 0.3


@dataclass
class Devices:
    sd: Any
    output_format: AudioFormat


def open_devices(output_format: AudioFormat) -> Devices:
    """Check that sounddevice, PortAudio and both audio devices are there."""
    try:
        import sounddevice as sd
    except ImportError:
        raise CliError("--mic needs sounddevice: pip install sounddevice", EXIT_PROVIDER) from None
    except OSError as exc:  # sounddevice without the PortAudio library
        raise CliError(
            f"--mic needs PortAudio ({exc}): install it (e.g. apt-get install libportaudio2)",
            EXIT_PROVIDER,
        ) from None
    for kind in ("input", "output"):
        try:
            sd.query_devices(kind=kind)
        except Exception as exc:
            raise CliError(
                f"--mic: no audio {kind} device found ({exc}); use INPUT.wav instead",
                EXIT_PROVIDER,
            ) from None
    return Devices(sd, output_format)


async def mic_session(
    providers: Providers, policy: Policy, view: View, devices: Devices, err: Console
) -> None:
    """A live session: microphone in, speaker out, barge-in on, Ctrl-C to stop."""
    sd = devices.sd
    frames = STT_FORMAT.bytes_for(FEED_CHUNK_MS) // STT_FORMAT.frame_size
    fmt = devices.output_format
    mic = sd.RawInputStream(samplerate=STT_FORMAT.sample_rate, channels=1, dtype="int16")
    speaker = sd.RawOutputStream(samplerate=fmt.sample_rate, channels=fmt.channels, dtype="int16")
    play_send, play_receive = anyio.create_memory_object_stream[bytes](256)

    async def listen() -> AsyncIterator[bytes]:
        while True:
            data, _overflowed = await anyio.to_thread.run_sync(mic.read, frames)
            yield bytes(data)

    async def play() -> None:
        async with play_receive:
            async for data in play_receive:
                await anyio.to_thread.run_sync(speaker.write, data)

    async def on_event(event: Event) -> None:
        if isinstance(event, AudioChunk):
            await play_send.send(event.audio)
        elif isinstance(event, Interrupted):
            while True:  # drop what was queued, and what the device still holds
                try:
                    play_receive.receive_nowait()
                except anyio.WouldBlock:
                    break
            await anyio.to_thread.run_sync(speaker.abort)
            await anyio.to_thread.run_sync(speaker.start)

    err.print("listening: speak now (headphones avoid echo); Ctrl-C or 'goodbye' ends", style="dim")
    with mic, speaker:
        async with anyio.create_task_group() as tg:

            async def stop_on_ctrl_c() -> None:
                with anyio.open_signal_receiver(signal.SIGINT) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(stop_on_ctrl_c)
            tg.start_soon(play)
            async with play_send:
                await run_session(
                    providers,
                    policy,
                    listen(),
                    view,
                    barge_in=True,
                    realtime_lead=MIC_LEAD_S,
                    on_event=on_event,
                )
            tg.cancel_scope.cancel()
