"""Turn any batch speech-to-text into a streaming one, with a voice activity detector.

A batch STT (Groq Whisper, a local engine) transcribes a finished piece of
audio. A voice pipeline needs more: to know *when* the user starts speaking
(to barge in) and when their turn is over. :class:`SegmentedSTT` adds that:

1. every chunk is converted to mono at ``sample_rate`` and cut into VAD frames;
2. a :class:`VAD` says per frame "speech or not";
3. after ``min_speech_ms`` of speech it emits ``SpeechStarted``; after
   ``silence_ms`` of silence the segment (with ``pre_roll_ms`` of audio
   before the speech and up to ``post_roll_ms`` after it) ends the turn;
   a segment reaching ``max_segment_s`` is cut and the turn goes on;
4. each segment is handed to the batch STT in a background task, so audio
   keeps being read (and the next turn detected) while a slow transcription
   runs; its text comes out as ``TranscriptFinal`` and, at the end of the
   turn, ``UserTurn`` with the whole turn's text.

Segments are transcribed one at a time, in order, so texts and turns never
come out shuffled. The VAD is cheap (microseconds a frame) and runs on the
event loop.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio

from voicepipe.audio import AudioFormat, Resampler, pcm16_rms
from voicepipe.errors import ProviderError
from voicepipe.events import ErrorEvent, SpeechStarted, TranscriptFinal, UserTurn

if TYPE_CHECKING:
    from anyio.abc import ObjectReceiveStream

    from voicepipe.providers.base import Emit

__all__ = ["VAD", "BatchSTT", "EnergyVAD", "SegmentedSTT", "WebRtcVAD", "default_vad"]

WEBRTC_RATES = (8000, 16000, 32000, 48000)


@runtime_checkable
class BatchSTT(Protocol):
    """Speech-to-text for one finished piece of speech."""

    async def transcribe_segment(self, pcm: bytes, format: AudioFormat) -> str:
        """Return the text spoken in ``pcm`` (mono PCM16 in ``format``), "" if none.

        Raise :class:`ProviderError` on failure; ``recoverable=False`` stops
        the session, anything else is reported and the next segment is tried.
        """
        ...


@runtime_checkable
class VAD(Protocol):
    """Frame-level voice activity: is this frame speech?

    Frames are ``frame_ms`` long, mono PCM16. A VAD may keep state between
    frames (webrtcvad adapts to the noise floor), so use one per audio stream.
    """

    frame_ms: int

    def is_speech(self, frame: bytes, sample_rate: int) -> bool: ...


def _dbfs_to_rms(dbfs: float) -> float:
    return 32768.0 * 10 ** (dbfs / 20)


class EnergyVAD:
    """Speech is any frame louder than ``threshold_dbfs`` (RMS, dB below full scale).

    Crude but dependency-free: right for clean input (a headset, synthesized
    audio, tests); background noise above the threshold counts as speech.
    """

    def __init__(self, *, threshold_dbfs: float = -40.0, frame_ms: int = 20) -> None:
        self.frame_ms = frame_ms
        self.threshold_dbfs = threshold_dbfs
        self._threshold = _dbfs_to_rms(threshold_dbfs)

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        return pcm16_rms(frame) >= self._threshold

    def __repr__(self) -> str:
        return f"EnergyVAD(threshold_dbfs={self.threshold_dbfs}, frame_ms={self.frame_ms})"


class WebRtcVAD:
    """The WebRTC voice activity detector (``webrtcvad-wheels``), plus an energy gate.

    ``aggressiveness`` 0-3: higher rejects more non-speech. webrtcvad calls
    very quiet frames speech (digital silence at the start of a stream, a
    faint hiss), so frames below ``min_dbfs`` are silence whatever it says.
    Frames must be 10, 20 or 30 ms at 8, 16, 32 or 48 kHz.
    """

    sample_rates = WEBRTC_RATES

    def __init__(
        self, aggressiveness: int = 2, *, frame_ms: int = 20, min_dbfs: float = -50.0
    ) -> None:
        import webrtcvad

        if frame_ms not in (10, 20, 30):
            raise ValueError(f"webrtcvad frames are 10, 20 or 30 ms, got {frame_ms}")
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"webrtcvad aggressiveness is 0-3, got {aggressiveness}")
        self.frame_ms = frame_ms
        self.aggressiveness = aggressiveness
        self.min_dbfs = min_dbfs
        self._gate = _dbfs_to_rms(min_dbfs)
        self._vad: Any = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        if pcm16_rms(frame) < self._gate:
            return False
        return bool(self._vad.is_speech(frame, sample_rate))

    def __repr__(self) -> str:
        return f"WebRtcVAD(aggressiveness={self.aggressiveness}, frame_ms={self.frame_ms})"


def default_vad() -> VAD:
    """A fresh :class:`WebRtcVAD` if ``webrtcvad-wheels`` is installed, else :class:`EnergyVAD`."""
    try:
        return WebRtcVAD()
    except ImportError:
        return EnergyVAD()


@dataclass(frozen=True, slots=True)
class _Segment:
    """Audio to transcribe; ``end_of_turn`` closes the user's turn after it.

    ``pcm`` is empty when a turn ends with nothing left to transcribe (the
    speech was all in segments cut at the maximum length before).
    """

    pcm: bytes
    end_of_turn: bool
    trailing_ms: float = 0.0  # the silence after the last speech frame that ended it


_START = object()  # the "speech started" action


class _Segmenter:
    """The VAD state machine: frames and their speech flags in, actions out.

    Plain synchronous code, one per audio stream. States: idle (keeping the
    pre-roll), candidate (speech seen, not yet ``min_speech`` of it) and
    speaking. All lengths are in frames.
    """

    def __init__(
        self,
        *,
        frame_ms: int,
        silence_ms: int,
        min_speech_ms: int,
        max_segment_ms: float,
        pre_roll_ms: int,
        post_roll_ms: int,
    ) -> None:
        self.frame_ms = frame_ms
        self.silence = max(1, math.ceil(silence_ms / frame_ms))
        self.min_speech = max(1, math.ceil(min_speech_ms / frame_ms))
        self.max_frames = max(1, int(max_segment_ms // frame_ms))
        self.post_roll = min(post_roll_ms // frame_ms, self.silence)
        self.pre_roll: deque[bytes] = deque(maxlen=pre_roll_ms // frame_ms)
        self.frames: list[bytes] = []
        self.state = "idle"
        self.voiced = 0  # speech frames in the current segment
        self.silence_run = 0  # trailing non-speech frames

    def push(self, frame: bytes, speech: bool) -> list[object]:
        if self.state == "idle":
            if not speech:
                if self.pre_roll.maxlen:
                    self.pre_roll.append(frame)
                return []
            self.frames = [*self.pre_roll, frame]
            self.pre_roll.clear()
            self.voiced, self.silence_run, self.state = 1, 0, "candidate"
            return self._maybe_start()

        self.frames.append(frame)
        if speech:
            self.voiced += 1
            self.silence_run = 0
        else:
            self.silence_run += 1
        if self.state == "candidate":
            if self.silence_run >= self.silence:
                self._back_to_idle()  # a click or a cough: too short to be speech
                return []
            return self._maybe_start() if speech else []
        if self.silence_run >= self.silence:
            return [self._end_segment(end_of_turn=True)]
        if len(self.frames) >= self.max_frames:
            return [self._end_segment(end_of_turn=False)]
        return []

    def finish(self) -> list[object]:
        """The audio ended: close a turn in progress (a mere candidate is dropped)."""
        if self.state == "speaking":
            return [self._end_segment(end_of_turn=True)]
        return []

    def _maybe_start(self) -> list[object]:
        if self.voiced >= self.min_speech:
            self.state = "speaking"
            return [_START]
        return []

    def _end_segment(self, *, end_of_turn: bool) -> _Segment:
        """Close the current segment, trimming trailing silence to ``post_roll``.

        A segment cut at the maximum length in a pause keeps the silence it
        dropped as the next segment's lead-in (like the pre-roll). The silence
        may also have started in an earlier segment: then nothing is left to
        transcribe and the segment is empty.
        """
        frames = self.frames
        speech_end = max(0, len(frames) - self.silence_run)
        if not self.silence_run:
            keep = len(frames)
        else:
            keep = min(len(frames), speech_end + self.post_roll) if speech_end else 0
        trailing = self.silence_run * self.frame_ms
        segment = _Segment(b"".join(frames[:keep]), end_of_turn=end_of_turn, trailing_ms=trailing)
        if end_of_turn:
            self._back_to_idle()
        else:
            lead_in = self.pre_roll.maxlen or 0
            self.frames = frames[keep:][-lead_in:] if lead_in else []
            self.voiced = 0
        return segment

    def _back_to_idle(self) -> None:
        self.pre_roll.clear()
        if self.pre_roll.maxlen:
            self.pre_roll.extend(self.frames[-self.pre_roll.maxlen :])
        self.frames, self.voiced, self.silence_run, self.state = [], 0, 0, "idle"


class SegmentedSTT:
    """A streaming :class:`~voicepipe.providers.base.STT` made of a VAD and a batch STT.

    ``vad=None`` builds :func:`default_vad` afresh for every stream; a VAD you
    pass is used as is, so give each concurrent stream its own. Audio is
    converted to mono at ``sample_rate`` for the VAD, and the batch STT gets
    its segments in that format (16 kHz mono is what Whisper and PocketSphinx
    want). Pending segments queue up without bound, so a slow STT delays
    transcripts but never stalls reading the audio.
    """

    def __init__(
        self,
        batch: BatchSTT,
        *,
        vad: VAD | None = None,
        silence_ms: int = 600,
        min_speech_ms: int = 200,
        max_segment_s: float = 30.0,
        pre_roll_ms: int = 200,
        post_roll_ms: int = 200,
        sample_rate: int = 16000,
    ) -> None:
        if min(silence_ms, min_speech_ms) <= 0 or max_segment_s <= 0:
            raise ValueError("silence_ms, min_speech_ms and max_segment_s must be positive")
        if min(pre_roll_ms, post_roll_ms) < 0:
            raise ValueError("pre_roll_ms and post_roll_ms must not be negative")
        rates = getattr(vad if vad is not None else default_vad(), "sample_rates", None)
        if rates is not None and sample_rate not in rates:
            raise ValueError(f"this VAD needs sample_rate in {rates}, got {sample_rate}")
        self.batch = batch
        self.vad = vad
        self.silence_ms = silence_ms
        self.min_speech_ms = min_speech_ms
        self.max_segment_s = max_segment_s
        self.pre_roll_ms = pre_roll_ms
        self.post_roll_ms = post_roll_ms
        self.format = AudioFormat(sample_rate, 1)

    async def transcribe(
        self, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit
    ) -> None:
        """Read ``audio`` to its end, emitting speech starts, transcripts and turns.

        Returns once the last segment is transcribed. A non-recoverable
        :class:`ProviderError` from the batch STT stops reading and is raised.
        """
        vad = self.vad if self.vad is not None else default_vad()
        segmenter = _Segmenter(
            frame_ms=vad.frame_ms,
            silence_ms=self.silence_ms,
            min_speech_ms=self.min_speech_ms,
            max_segment_ms=self.max_segment_s * 1000,
            pre_roll_ms=self.pre_roll_ms,
            post_roll_ms=self.post_roll_ms,
        )
        resampler = Resampler(format, self.format)
        rate = self.format.sample_rate
        frame_bytes = self.format.bytes_for(vad.frame_ms)
        pending = bytearray()
        send, receive = anyio.create_memory_object_stream[tuple[_Segment, float]](math.inf)

        async def feed(pcm: bytes) -> None:
            pending.extend(pcm)
            usable = len(pending) - len(pending) % frame_bytes
            view = memoryview(pending)
            try:
                for start in range(0, usable, frame_bytes):
                    frame = bytes(view[start : start + frame_bytes])
                    for action in segmenter.push(frame, vad.is_speech(frame, rate)):
                        await act(action)
            finally:
                view.release()
            del pending[:usable]

        async def act(action: object) -> None:
            if action is _START:
                await emit(SpeechStarted())
            else:
                assert isinstance(action, _Segment)
                send.send_nowait((action, time.perf_counter()))

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._transcribe_segments, receive, emit)
                async with send:
                    async for chunk in audio:
                        await feed(resampler.process(format.check_chunk(chunk)))
                    await feed(resampler.flush())
                    for action in segmenter.finish():
                        await act(action)
        except BaseExceptionGroup as group:
            # The STT contract raises ProviderError itself, not a group of one.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def _transcribe_segments(
        self, segments: ObjectReceiveStream[tuple[_Segment, float]], emit: Emit
    ) -> None:
        """Transcribe queued segments in order; close each turn with its whole text.

        The turn's ``endpoint_ms`` is the trailing silence that ended it plus
        the time its last segment waited for and spent in transcription.
        """
        texts: list[str] = []
        async with segments:
            async for segment, queued_at in segments:
                if segment.pcm:
                    text = await self._transcribe_one(segment.pcm, emit)
                    if text:
                        texts.append(text)
                        await emit(TranscriptFinal(content=text))
                if segment.end_of_turn and texts:
                    waited = (time.perf_counter() - queued_at) * 1000
                    endpoint = round(segment.trailing_ms + waited, 3)
                    await emit(UserTurn(content=" ".join(texts), endpoint_ms=endpoint))
                    texts = []

    async def _transcribe_one(self, pcm: bytes, emit: Emit) -> str:
        try:
            text = await self.batch.transcribe_segment(pcm, self.format)
        except ProviderError as exc:
            if not exc.recoverable:
                raise
            await emit(ErrorEvent(stage="stt", message=exc.message, recoverable=True))
            return ""
        except Exception as exc:  # a bug or an unmapped failure: report it, keep listening
            message = f"transcription failed: {type(exc).__name__}: {exc}"
            await emit(ErrorEvent(stage="stt", message=message, recoverable=True))
            return ""
        return text.strip()
