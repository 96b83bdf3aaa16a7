# mypy: allow-subclassing-any
"""voicepipe and Pipecat side by side: the same real-time sessions, one core each.

For each N (50 ... 1,000) it runs N concurrent sessions through voicepipe, then
through Pipecat (alternating which goes first), each in a fresh process pinned
to one CPU, and prints for each: p99 input lag, sessions answered, CPU per
audio chunk (all in: set-up, chunks, replies, collector) and per session, and
memory per session (the process's peak RSS over its RSS before the sessions,
divided by N).

The workload, on both sides: N sessions in one process, each pulling 4.5 s of
16 kHz PCM16 in 20 ms chunks paced by the clock (input lag: how late a chunk
is taken after its due time), speaking once (400 ms of a 300 Hz tone, then
silence) at a moment spread over its first 3 s, and answered once:

* STT: 20 ms windows, RMS >= 500 is speech; the first speech window starts
  the user's turn, every 100 ms of speech gives an interim transcript, 300 ms
  of silence ends the turn with the final transcript "hello there".
* LLM: echoes the user's last message word by word, no delay.
* TTS: a 200 Hz tone at 24 kHz, 50 ms per character, in 100 ms chunks, no delay.

voicepipe runs ``Pipeline(stt=FakeSTT(...), llm=FakeLLM(), tts=FakeTTS())``
with ``ConversationPolicy``. Pipecat (its current public API, 1.14) runs
``Pipeline([stt, user aggregator, llm, tts, sink, assistant aggregator])`` in a
``PipelineWorker`` under a ``WorkerRunner`` per session, with the same fakes
written as its services (``STTService``, ``LLMService``, ``TTSService``
subclasses), an ``LLMContextAggregatorPair`` whose turn strategies follow the
STT (``ExternalUserTurnStrategies``, as with an STT that detects turns), and
everything optional switched off: metrics, RTVI, tracing, turn tracking,
idle timeouts, heartbeats; loguru logs only warnings.

Where the two workloads differ:

* voicepipe pulls audio (the pipeline reads the caller's async iterator);
  Pipecat is pushed to (``worker.queue_frame``), as its transports do. Lag is
  taken at the same point: when the paced producer wakes up for the chunk.
* Pipecat's user aggregator waits for its external stop strategy's short
  timeout (0.5 s) before it runs the LLM; voicepipe answers at once. This
  moves Pipecat's reply later, not its CPU. An ``EndFrame`` would drop a turn
  still waiting there, so a Pipecat session whose reply has not come when its
  audio ends waits up to 2 s for it before ending (voicepipe answers the turn
  in progress when the input ends, by design).
* Pipecat's processors each run their own queue task; voicepipe runs two
  loops per session. That is the design difference being measured.
* Neither side paces the reply audio (no output transport clock in Pipecat,
  no ``realtime_lead`` in voicepipe): the sink just counts it.

Pipecat is not a dependency of voicepipe and this script is not run in CI.
Install it in a separate virtualenv and point ``--pipecat-python`` at it::

    python3 -m venv /tmp/pipecat-venv
    /tmp/pipecat-venv/bin/pip install 'pipecat-ai==1.14.0' numpy uvloop
    python benchmarks/vs_pipecat.py --pipecat-python /tmp/pipecat-venv/bin/python

``--sessions 50,100`` picks the sizes, ``--loop asyncio`` runs both on
asyncio's own loop instead of uvloop, ``--cpu 1`` picks the core.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
IN_RATE, OUT_RATE = 16000, 24000
CHUNK_MS, SECONDS, SPEAK_WITHIN_S, SPEECH_MS = 20, 4.5, 3.0, 400
CHUNKS = int(SECONDS * 1000 / CHUNK_MS)
SILENCE = bytes(IN_RATE * CHUNK_MS // 1000 * 2)
_t = np.arange(IN_RATE * CHUNK_MS // 1000) / IN_RATE
SPEECH = (5000 * np.sin(2 * np.pi * 300 * _t)).astype("<i2").tobytes()
TURN = "hello there"
THRESHOLD, SILENCE_MS, INTERIM_MS, MS_PER_CHAR, TTS_CHUNK_MS = 500.0, 300, 100, 50, 100
REPLY_GRACE_S = 2.0  # how long a Pipecat session waits for its reply after its audio
_TOKEN = re.compile(r"\s*\S+\s*$|\s*\S+")


class Pacer:
    """The paced producer both sides share: chunk ``i`` of session ``index`` is due when."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.lags = array.array("d")  # not tracked by the garbage collector
        self.start = time.monotonic() + 0.5

    def script(self, index: int) -> Callable[[int], bytes]:
        first = int(index / self.n * SPEAK_WITHIN_S * 1000 / CHUNK_MS)
        speaking = range(first, first + SPEECH_MS // CHUNK_MS)
        return lambda i: SPEECH if i in speaking else SILENCE

    async def chunks(self, index: int) -> AsyncIterator[bytes]:
        phase = (index % 97) / 97 * CHUNK_MS / 1000  # spread over a chunk period
        chunk = self.script(index)
        clock = time.monotonic
        for i in range(CHUNKS):
            due = self.start + phase + i * CHUNK_MS / 1000
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lags.append(clock() - due)
            yield chunk(i)


class EnergyTurns:
    """The fake STT's decisions, shared by both sides: feed 20 ms windows, get what happened."""

    def __init__(self) -> None:
        self.limit = THRESHOLD * THRESHOLD * (len(SILENCE) // 2)
        self.speech = self.silence = 0

    def feed(self, pcm: bytes) -> str | None:
        """'start', 'interim', 'end' or None for one 20 ms window."""
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        if float(samples.dot(samples)) >= self.limit:
            self.speech += 1
            self.silence = 0
            if self.speech == 1:
                return "start"
            return "interim" if self.speech % (INTERIM_MS // CHUNK_MS) == 0 else None
        if self.speech:
            self.silence += 1
            if self.silence >= SILENCE_MS // CHUNK_MS:
                self.speech = self.silence = 0
                return "end"
        return None


def _interim(speech_windows: int) -> str:
    words = TURN.split()
    return " ".join(words[: min(len(words), speech_windows // (INTERIM_MS // CHUNK_MS))])


# -- voicepipe ----------------------------------------------------------------------------


async def run_voicepipe(n: int) -> tuple[int, Pacer]:
    from voicepipe import AudioChunk, Pipeline
    from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS

    pacer = Pacer(n)
    answered = 0

    async def session(index: int) -> None:
        nonlocal answered
        pipeline = Pipeline(stt=FakeSTT([TURN]), llm=FakeLLM(), tts=FakeTTS())
        heard = False
        async with pipeline.run(pacer.chunks(index)) as events:
            async for event in events:
                heard = heard or isinstance(event, AudioChunk)
        answered += heard

    import anyio

    async with anyio.create_task_group() as tg:
        for index in range(n):
            tg.start_soon(session, index)
    return answered, pacer


# -- Pipecat ------------------------------------------------------------------------------


async def run_pipecat(n: int) -> tuple[int, Pacer]:
    from loguru import logger
    from pipecat.frames.frames import (
        EndFrame,
        Frame,
        InputAudioRawFrame,
        InterimTranscriptionFrame,
        LLMContextFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        TranscriptionFrame,
        TTSAudioRawFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.llm_service import LLMService
    from pipecat.services.settings import LLMSettings, STTSettings, TTSSettings
    from pipecat.services.stt_service import STTService
    from pipecat.services.tts_service import TTSService
    from pipecat.turns.user_turn_strategies import ExternalUserTurnStrategies
    from pipecat.utils.time import time_now_iso8601
    from pipecat.workers.runner import WorkerRunner

    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    class FakeSTT(STTService):
        """Energy-based turns, as voicepipe's FakeSTT: speech starts, interims, final."""

        def __init__(self) -> None:
            super().__init__(
                audio_passthrough=False,
                sample_rate=IN_RATE,
                ttfs_p99_latency=SILENCE_MS / 1000,  # its final comes after 300 ms of silence
                settings=STTSettings(model=None, language=None),
            )
            self.turns = EnergyTurns()
            self.said = False

        async def run_stt(self, audio: bytes) -> AsyncIterator[Frame | None]:
            happened = self.turns.feed(audio)
            if happened == "start":
                yield UserStartedSpeakingFrame()
            elif happened == "interim":
                text = _interim(self.turns.speech)
                yield InterimTranscriptionFrame(text, "", time_now_iso8601())
            elif happened == "end" and not self.said:
                self.said = True
                yield TranscriptionFrame(TURN, "", time_now_iso8601(), finalized=True)
                yield UserStoppedSpeakingFrame()

    class FakeLLM(LLMService):
        """Echoes the last user message word by word."""

        def __init__(self) -> None:
            unused = dict.fromkeys(
                [
                    "model",
                    "system_instruction",
                    "temperature",
                    "max_tokens",
                    "top_p",
                    "top_k",
                    "frequency_penalty",
                    "presence_penalty",
                    "seed",
                    "filter_incomplete_user_turns",
                    "user_turn_completion_config",
                ]
            )
            super().__init__(settings=LLMSettings(**unused))

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if not isinstance(frame, LLMContextFrame):
                await self.push_frame(frame, direction)
                return
            users = [m for m in frame.context.get_messages() if m.get("role") == "user"]
            text = str(users[-1]["content"]) if users else ""
            await self.push_frame(LLMFullResponseStartFrame())
            for token in _TOKEN.findall(text):
                await self.push_frame(LLMTextFrame(token))
            await self.push_frame(LLMFullResponseEndFrame())

    tone = (3000 * np.sin(2 * np.pi * 200 * np.arange(OUT_RATE) / OUT_RATE)).astype("<i2")
    tts_chunk = tone[: OUT_RATE * TTS_CHUNK_MS // 1000].tobytes()

    class FakeTTS(TTSService):
        """A 200 Hz tone, 50 ms per character, in 100 ms chunks."""

        def __init__(self) -> None:
            super().__init__(
                sample_rate=OUT_RATE, settings=TTSSettings(model=None, voice=None, language=None)
            )

        async def run_tts(self, text: str, context_id: str) -> AsyncIterator[Frame | None]:
            total = OUT_RATE * len(text) * MS_PER_CHAR // 1000 * 2
            for start in range(0, total, len(tts_chunk)):
                audio = tts_chunk[: min(len(tts_chunk), total - start)]
                yield TTSAudioRawFrame(audio, OUT_RATE, 1, context_id=context_id)

    class Sink(FrameProcessor):
        """Where a transport's output would be: notes that reply audio came."""

        def __init__(self) -> None:
            super().__init__()
            self.heard = asyncio.Event()

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TTSAudioRawFrame):
                self.heard.set()
            await self.push_frame(frame, direction)

    pacer = Pacer(n)
    answered = 0

    async def session(index: int) -> None:
        nonlocal answered
        context = LLMContext([{"role": "system", "content": "You are a helpful assistant."}])
        aggregators = LLMContextAggregatorPair(
            context,
            user_params=LLMUserAggregatorParams(user_turn_strategies=ExternalUserTurnStrategies()),
        )
        sink = Sink()
        pipeline = Pipeline(
            [FakeSTT(), aggregators.user(), FakeLLM(), FakeTTS(), sink, aggregators.assistant()]
        )
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=IN_RATE,
                audio_out_sample_rate=OUT_RATE,
                send_initial_empty_metrics=False,
            ),
            enable_rtvi=False,
            enable_tracing=False,
            enable_turn_tracking=False,
            idle_timeout_secs=None,
            cancel_on_idle_timeout=False,
            check_dangling_tasks=False,
        )
        runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
        await runner.add_workers(worker)

        async def produce() -> None:
            async for chunk in pacer.chunks(index):
                await worker.queue_frame(InputAudioRawFrame(chunk, IN_RATE, 1))
            # Ending now would drop a turn still waiting in the user aggregator (voicepipe
            # answers the turn in progress when the input ends): give the reply time to come.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sink.heard.wait(), REPLY_GRACE_S)
            await worker.queue_frame(EndFrame())

        await asyncio.gather(runner.run(), produce())
        answered += sink.heard.is_set()

    await asyncio.gather(*(session(index) for index in range(n)))
    return answered, pacer


# -- one measured run, in a child process ---------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(library: str, n: int, loop: str) -> None:
    """Run N sessions of ``library``; print one JSON line of figures."""
    runner = run_voicepipe if library == "voicepipe" else run_pipecat

    async def measured() -> dict[str, Any]:
        await runner(2)  # warm-up: imports, first-use caches
        rss = _status_kib("VmRSS")
        cpu = time.process_time()
        answered, pacer = await runner(n)
        cpu = time.process_time() - cpu
        return {
            "library": library,
            "sessions": n,
            "answered": answered,
            "p99_lag_ms": float(np.percentile(np.asarray(pacer.lags), 99)) * 1000,
            "cpu_us_per_chunk": cpu / len(pacer.lags) * 1e6,
            "cpu_ms_per_session": cpu / n * 1000,
            "kib_per_session": (_status_kib("VmHWM") - rss) / n,
        }

    if loop == "uvloop":
        import uvloop

        result = uvloop.run(measured())
    else:
        result = asyncio.run(measured())
    print(json.dumps(result), flush=True)


def measure(python: str, library: str, n: int, loop: str, cpu: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    command = ["taskset", "-c", str(cpu), python, __file__, "--child", library, str(n), loop]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"{library} at N={n} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="50,100,200,300,500,700,1000")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--cpu", type=int, default=1, help="the core both are pinned to")
    parser.add_argument("--voicepipe-python", default=sys.executable)
    parser.add_argument(
        "--pipecat-python", required=True, help="python of a venv with pipecat-ai installed"
    )
    args = parser.parse_args()
    pythons = {"voicepipe": args.voicepipe_python, "pipecat": args.pipecat_python}
    print(
        f"{N_HEAD:>5} {'library':>9} {'answered':>8} {'p99 lag ms':>10} {'µs/chunk':>8}"
        f" {'CPU ms/session':>14} {'KiB/session':>11}   (one core, {args.loop})"
    )
    for turn, n in enumerate(int(s) for s in args.sessions.split(",")):
        order = ["voicepipe", "pipecat"] if turn % 2 == 0 else ["pipecat", "voicepipe"]
        rows = {lib: measure(pythons[lib], lib, n, args.loop, args.cpu) for lib in order}
        for lib in ("voicepipe", "pipecat"):
            row = rows[lib]
            print(
                f"{n:>5} {lib:>9} {row['answered']:>4}/{n:<3} {row['p99_lag_ms']:>10.1f}"
                f" {row['cpu_us_per_chunk']:>8.1f} {row['cpu_ms_per_session']:>14.1f}"
                f" {row['kib_per_session']:>11.0f}"
            )
        vp, pc = rows["voicepipe"], rows["pipecat"]
        print(
            f"{'':>5} {'ratio':>9} {'':>8} {pc['p99_lag_ms'] / vp['p99_lag_ms']:>9.1f}×"
            f" {pc['cpu_us_per_chunk'] / vp['cpu_us_per_chunk']:>7.1f}×"
            f" {pc['cpu_ms_per_session'] / vp['cpu_ms_per_session']:>13.1f}×"
            f" {pc['kib_per_session'] / max(vp['kib_per_session'], 1):>10.1f}×"
        )


N_HEAD = "N"

if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
