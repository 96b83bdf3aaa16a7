"""PocketSphinx speech-to-text, offline and streaming.

PocketSphinx decodes 16 kHz PCM16 as it arrives (other formats are resampled)
with the US-English acoustic model, dictionary and language model bundled in
its wheel. A voice activity detector (VAD) frames the turns:

- speech starts when most of the last ``start_ms`` is speech: emit
  ``SpeechStarted`` and decode from ``preroll_ms`` before that point, so the
  first word is not clipped;
- while the user speaks, the decoder's partial hypothesis is emitted as a
  ``TranscriptInterim`` every ``interim_ms`` (when it changed);
- after ``silence_ms`` without speech the utterance ends: the final
  hypothesis is emitted as ``TranscriptFinal`` and ``UserTurn``.

The default VAD is the project's shared one (``voicepipe.segmenter.default_vad``:
WebRTC with an energy gate); :class:`SphinxVAD` wraps PocketSphinx's own.
Streaming decoding ends a turn ~0.3 s sooner than ``SegmentedSTT`` around
this engine (which decodes only once the turn is over), so it is the default;
:meth:`PocketSphinxSTT.transcribe_segment` still lets the segmenter use it.

Decoding runs in worker threads, never on the event loop. A decoder holds the
state of one utterance, so each session needs its own; loading one takes
~0.4 s, so decoders are pooled per process and reused by later sessions.

Every session starts from the same cepstral-mean estimate (``cmninit``), which
then adapts to the speaker as they talk. A pooled decoder used to keep the
previous session's estimate, so what a session heard depended on the sessions
before it ("my own work" for "my homework" on a process's first call only).

Accuracy: good on clear, close speech with common words; poor on robotic
voices, noise, accents and rare words. It is a fallback, not Whisper.

Install: ``pip install pocketsphinx`` (the ``local`` extra).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, Callable
from typing import Any

import anyio
from rapidfuzz.distance import Levenshtein

from voicepipe.audio import AudioFormat, Resampler, resample
from voicepipe.errors import ProviderError
from voicepipe.events import SpeechStarted, TranscriptFinal, TranscriptInterim, UserTurn
from voicepipe.providers.base import Emit, Expectation, STTEvent
from voicepipe.providers.local.sphinx_grammars import grammar_for, rival_for
from voicepipe.segmenter import VAD, default_vad

__all__ = [
    "ALTERNATIVE_MARGIN",
    "CMN_INIT",
    "GRAMMAR_WIP",
    "UNCONFIRMED_MARGIN",
    "UNCONFIRMED_SIMILARITY",
    "PocketSphinxSTT",
    "SphinxVAD",
]

_log = logging.getLogger(__name__)

_RATE = 16000
_FORMAT = AudioFormat(sample_rate=_RATE, channels=1)
_MAX_IDLE_DECODERS = 8
# The cepstral mean a session starts from: measured on clear speech (the bundled
# samples after their first utterance), closer to real speech than the engine's
# default "40,3,-1", which cost the first utterance of a session its accuracy.
CMN_INIT = "42.99,3.67,-1.11,1.42,-0.20,-1.67,0.61,-2.45,-1.44,1.00,-0.15,0.89,-2.59"
_IDLE: dict[tuple[tuple[str, Any], ...], list[Any]] = {}  # config -> idle pocketsphinx.Decoder
_IDLE_LOCK = threading.Lock()
# How much worse per frame (log base 1.0001) a grammar's reading may score than
# the general model's own words when the value is not read back. Measured on
# benchmarks/forms: readings of answers of the expected kind scored -2 to -8,
# grammars forced onto other answers -11.5 and below.
UNCONFIRMED_MARGIN = -9.5
# How alike (0 to 1, phones in the dictionary) a grammar's reading that is not read
# back must sound to the general model's words, besides scoring within the margin:
# a choice grammar forced onto a phone number scored above the margin (its filler
# words fit any speech) but sounded 0.42 alike or less; readings of real answers
# ("the chicken please" for "the chicken place") 0.5 and above (benchmarks/forms).
UNCONFIRMED_SIMILARITY = 0.5
# How much worse per frame a grammar's reading that failed the checks above may score
# and still be offered as the turn's alternative reading, which a policy reads back
# ("did you say chicken?") instead of asking again. Readings of answers the general
# model misheard ("chicken" heard as "take it", "i'm eighty eight" as "i maybe they")
# scored -5.8 to -12.9; the grammars forced onto speech that was no answer ("what is
# the capital of france", "sorry what", "i'd rather not say") -14.4 and below.
ALTERNATIVE_MARGIN = -13.5
# The word insertion penalty of the grammar decodes (the general model keeps the
# engine's 0.65). A grammar of digits or letters at 0.65 hears a held "eight" as
# "eight eight"; at 0.01 the phone answers of benchmarks/forms read right 55 times
# of 60 instead of 50.
GRAMMAR_WIP = 0.01


class SphinxVAD:
    """PocketSphinx's own VAD (``mode`` 0 loose to 3 strict), an alternative to the default.

    Measured on the bundled samples it ends turns ~100 ms later than the
    default WebRTC VAD (30 ms frames, no energy gate) with the same words.
    """

    def __init__(self, mode: int = 2, frame_ms: int = 30) -> None:
        import pocketsphinx

        self.frame_ms = frame_ms
        self._vad = pocketsphinx.Vad(mode, _RATE, frame_ms / 1000)

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        return bool(self._vad.is_speech(frame, sample_rate))


def _checkout(config: tuple[tuple[str, Any], ...]) -> Any:
    """An idle decoder for this configuration, or a newly loaded one (blocking)."""
    with _IDLE_LOCK:
        idle = _IDLE.get(config)
        decoder = idle.pop() if idle else None
    if decoder is not None:
        # Forget the last session's speaker: start from the configured estimate.
        decoder.set_cmn(str(dict(config).get("cmninit", CMN_INIT)))
        return decoder
    try:
        import pocketsphinx
    except ImportError as exc:
        raise ProviderError(
            "stt",
            "PocketSphinx is not installed: pip install 'voicepipe[local]'",
            recoverable=False,
        ) from exc
    _log.info("loading PocketSphinx model ...")
    started = time.perf_counter()
    try:
        decoder = pocketsphinx.Decoder(samprate=_RATE, loglevel="FATAL", **dict(config))
    except Exception as exc:
        raise ProviderError(
            "stt", f"PocketSphinx failed to load: {exc}", recoverable=False
        ) from exc
    _log.info("PocketSphinx model loaded in %.2f s", time.perf_counter() - started)
    return decoder


def _checkin(config: tuple[tuple[str, Any], ...], decoder: Any) -> None:
    with _IDLE_LOCK:
        idle = _IDLE.setdefault(config, [])
        if len(idle) < _MAX_IDLE_DECODERS:
            idle.append(decoder)


class _Turns:
    """VAD framing and decoding of one session; runs in worker threads, one call at a time."""

    def __init__(
        self,
        decoder: Any,
        vad: VAD,
        *,
        silence_ms: int,
        start_ms: int,
        preroll_ms: int,
        interim_ms: int,
        expect: Expectation | None = None,
    ) -> None:
        self.decoder = decoder
        self.expect = expect if expect is not None else Expectation()
        self.utterance: list[bytes] = []  # the utterance so far, to decode again
        self.cmn_at_start = ""
        self.grammar: str | None = None  # the grammar loaded as the "hint" search
        self.vad = vad
        self.frame_ms = vad.frame_ms
        self.frame_bytes = _FORMAT.bytes_for(vad.frame_ms)
        self.silence_frames = max(1, silence_ms // self.frame_ms)
        window = max(1, start_ms // self.frame_ms)
        self.start_needed = max(1, (window * 2 + 2) // 3)  # two thirds of the window
        self.recent: deque[bool] = deque(maxlen=window)
        self.preroll: deque[bytes] = deque(maxlen=max(1, preroll_ms // self.frame_ms))
        self.interim_frames = max(1, interim_ms // self.frame_ms)
        self.pending = bytearray()  # less than a frame, waiting for more
        self.undecoded: list[bytes] = []  # speech frames for the decoder's next call
        self.in_speech = False
        self.silent = 0
        self.since_interim = 0
        self.last_interim = ""

    def feed(self, pcm: bytes) -> list[STTEvent]:
        self.pending += pcm
        events: list[STTEvent] = []
        usable = len(self.pending) - len(self.pending) % self.frame_bytes
        for start in range(0, usable, self.frame_bytes):
            events += self._frame(bytes(self.pending[start : start + self.frame_bytes]))
        del self.pending[:usable]
        if self.in_speech and self.since_interim >= self.interim_frames:
            self.since_interim = 0
            self._decode()
            text = self._hypothesis()
            if text and text != self.last_interim:
                self.last_interim = text
                events.append(TranscriptInterim(content=text))
        return events

    def finish(self) -> list[STTEvent]:
        """End of input: decode what is left of the utterance in progress."""
        if not self.in_speech:
            return []
        self.undecoded.append(bytes(self.pending))
        self.utterance.append(bytes(self.pending))
        self.pending.clear()
        return self._end()

    def _frame(self, frame: bytes) -> list[STTEvent]:
        speech = self.vad.is_speech(frame, _RATE)
        if not self.in_speech:
            self.preroll.append(frame)
            self.recent.append(speech)
            if sum(self.recent) < self.start_needed:
                return []
            self.in_speech = True
            self.silent = self.since_interim = 0
            self.last_interim = ""
            self.cmn_at_start = self.decoder.get_cmn()
            self.decoder.start_utt()
            self.undecoded = list(self.preroll)
            self.utterance = list(self.preroll)
            self.preroll.clear()
            self.recent.clear()
            return [SpeechStarted()]
        self.undecoded.append(frame)
        self.utterance.append(frame)
        self.since_interim += 1
        self.silent = 0 if speech else self.silent + 1
        return self._end() if self.silent >= self.silence_frames else []

    def _decode(self) -> None:
        # One call per batch of frames: far cheaper than one per frame.
        self.decoder.process_raw(b"".join(self.undecoded), False, False)
        self.undecoded.clear()

    def _end(self) -> list[STTEvent]:
        started = time.perf_counter()
        self._decode()
        self.decoder.end_utt()
        self.in_speech = False
        text = self._hypothesis()
        if not text:  # a noise, not words
            return []
        text, alternatives = self._narrowed(text)
        self.expect.note(text, alternatives)
        # The silence waited for (audio time) plus the final decode (wall time).
        endpoint = self.silent * self.frame_ms + (time.perf_counter() - started) * 1000
        return [
            TranscriptFinal(content=text),
            UserTurn(content=text, endpoint_ms=round(endpoint, 3)),
        ]

    def _hypothesis(self) -> str:
        hyp = self.decoder.hyp()
        return str(hyp.hypstr).strip() if hyp is not None else ""

    def _narrowed(self, text: str) -> tuple[str, tuple[str, ...]]:
        """``text`` (the general model's), or the utterance as the hint's grammar hears it;
        and the other reading, if one was found but not taken.

        A reading that will be read back is taken as is; one that will not
        must sound like ``text`` (:data:`UNCONFIRMED_SIMILARITY`) and score
        within :data:`UNCONFIRMED_MARGIN` per frame of ``text``'s. A reading
        that fails those checks but scores within :data:`ALTERNATIVE_MARGIN`
        is passed on as an alternative (:meth:`Expectation.note`): a policy
        may read its value back ("did you say chicken?") rather than ask
        again, never store it unconfirmed.
        """
        hint = self.expect.hint
        if hint is None:
            return text, ()
        grammar = grammar_for(hint, self.decoder.lookup_word)
        if grammar is None:
            return text, ()
        pcm = b"".join(self.utterance)
        cmn_after = self.decoder.get_cmn()
        try:
            if grammar != self.grammar:
                self.grammar = None
                self._add_grammar("hint", grammar)
                self.grammar = grammar
            heard, score = self._decode_with("hint", pcm)
            if not heard or heard == text or hint.confirmed:
                return heard or text, ()
            rival = rival_for(text)
            if rival is None:
                return text, ()
            self._add_grammar("heard", rival)
            _, rival_score = self._decode_with("heard", pcm)
            margin = (score - rival_score) / max(1, self.decoder.n_frames())
            similarity = self._sounds_alike(heard, text)
            _log.debug(
                "grammar %r vs %r: %.2f alike, %.2f per frame", heard, text, similarity, margin
            )
            if similarity >= UNCONFIRMED_SIMILARITY and margin >= UNCONFIRMED_MARGIN:
                return heard, ()
            return text, (heard,) if margin >= ALTERNATIVE_MARGIN else ()
        finally:
            self.decoder.activate_search()
            self.decoder.set_cmn(cmn_after)

    def _sounds_alike(self, a: str, b: str) -> float:
        """How alike ``a`` and ``b`` sound: 0 to 1, from their phones in the dictionary."""
        lookup = self.decoder.lookup_word

        def phones(text: str) -> list[str]:
            return [p for word in text.split() for p in (lookup(word) or "?").split()]

        return float(Levenshtein.normalized_similarity(phones(a), phones(b)))

    def _add_grammar(self, search: str, grammar: str) -> None:
        """Load ``grammar`` as ``search``, with the grammars' own word insertion penalty.

        A search reads ``wip`` from the decoder's configuration when it is
        created, so the general model's search keeps its own.
        """
        config = self.decoder.config
        general = config["wip"]
        config["wip"] = GRAMMAR_WIP
        try:
            self.decoder.add_jsgf_string(search, grammar)
        finally:
            config["wip"] = general

    def _decode_with(self, search: str, pcm: bytes) -> tuple[str, float]:
        """Decode ``pcm`` again with ``search``: its words and its score (log base 1.0001)."""
        self.decoder.activate_search(search)
        self.decoder.set_cmn(self.cmn_at_start)
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, False, True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        if hyp is None or not hyp.hypstr.strip():
            return "", 0.0
        return str(hyp.hypstr).strip(), float(self.decoder.get_logmath().log(hyp.score))


class PocketSphinxSTT:
    """Offline streaming STT; see the module docstring for how turns are found.

    ``config`` passes extra PocketSphinx options (``hmm``, ``lm``, ``dict``,
    ``kws``, ``cmninit``, ...) to its ``Decoder``; ``cmninit`` defaults to
    :data:`CMN_INIT`. ``vad`` is a VAD factory, called once
    per session (VADs keep state); the default is ``default_vad``.
    """

    def __init__(
        self,
        *,
        silence_ms: int = 600,
        start_ms: int = 150,
        preroll_ms: int = 300,
        interim_ms: int = 250,
        vad: Callable[[], VAD] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.silence_ms = silence_ms
        self.start_ms = start_ms
        self.preroll_ms = preroll_ms
        self.interim_ms = interim_ms
        self._vad_factory: Callable[[], VAD] = vad if vad is not None else default_vad
        self._config = tuple(sorted({"cmninit": CMN_INIT, **(config or {})}.items()))

    async def load(self) -> None:
        """Load a decoder now (in a worker thread) and keep it for the next session."""
        decoder = await anyio.to_thread.run_sync(_checkout, self._config)
        _checkin(self._config, decoder)

    async def transcribe_segment(self, pcm: bytes, format: AudioFormat) -> str:
        """Decode one finished piece of speech (the ``BatchSTT`` shape of the segmenter)."""
        decoder = await anyio.to_thread.run_sync(_checkout, self._config)
        text = await anyio.to_thread.run_sync(_decode_whole, decoder, pcm, format)
        _checkin(self._config, decoder)
        return text

    async def transcribe(
        self, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit
    ) -> None:
        await self.transcribe_expecting(audio, format, emit, Expectation())

    async def transcribe_expecting(
        self, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit, expect: Expectation
    ) -> None:
        """:meth:`transcribe`, listening for what ``expect`` says the caller will answer.

        While a phone number, an e-mail address or one of a choice's options
        is expected, each utterance is decoded again with a grammar of such
        answers (:mod:`~voicepipe.providers.local.sphinx_grammars`; English).
        """
        decoder = await anyio.to_thread.run_sync(_checkout, self._config)
        turns = _Turns(
            decoder,
            self._vad_factory(),
            silence_ms=self.silence_ms,
            start_ms=self.start_ms,
            preroll_ms=self.preroll_ms,
            interim_ms=self.interim_ms,
            expect=expect,
        )
        resampler = Resampler(format, _FORMAT)
        try:
            async for chunk in audio:
                pcm = resampler.process(format.check_chunk(chunk))
                if pcm:
                    for event in await anyio.to_thread.run_sync(_call, turns.feed, pcm):
                        await emit(event)
            tail = resampler.flush()
            events = await anyio.to_thread.run_sync(_call, turns.feed, tail)
            events += await anyio.to_thread.run_sync(_call, turns.finish)
            for event in events:
                await emit(event)
        except ProviderError:
            turns.in_speech = True  # the decoder's state is unknown: do not reuse it
            raise
        finally:
            if not turns.in_speech:  # decoders left mid-utterance are dropped, not reused
                _checkin(self._config, decoder)


def _call(step: Any, *args: Any) -> list[STTEvent]:
    try:
        events: list[STTEvent] = step(*args)
    except ProviderError:
        raise
    except Exception as exc:  # the decoder failed: this session cannot go on
        raise ProviderError("stt", f"PocketSphinx failed: {exc}", recoverable=False) from exc
    return events


def _decode_whole(decoder: Any, pcm: bytes, format: AudioFormat) -> str:
    try:
        decoder.start_utt()
        decoder.process_raw(resample(pcm, format, _FORMAT), False, True)
        decoder.end_utt()
        hyp = decoder.hyp()
    except Exception as exc:
        raise ProviderError("stt", f"PocketSphinx failed: {exc}") from exc
    return str(hyp.hypstr).strip() if hyp is not None else ""
