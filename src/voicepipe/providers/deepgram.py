"""Deepgram providers: live streaming speech-to-text and Aura text-to-speech.

Both run on the official ``deepgram-sdk`` (7.x, ``pip install
'voicepipe[deepgram]'``), imported only when a provider first talks to
Deepgram, so importing this module (and ``voicepipe``) stays cheap.

:class:`DeepgramSTT` streams the caller's audio over one live websocket and
turns Deepgram's messages into voicepipe's transcript events. It owns the
connection's whole life: KeepAlive while no audio flows, Finalize and
CloseStream at the end of input (so the last words are not lost), and
reconnection with replay when the connection drops. The SDK's live socket is
built on asyncio ``websockets``, so DeepgramSTT runs on the asyncio backend
only; everything else here is plain anyio.

:class:`DeepgramTTS` streams raw PCM16 from the REST ``/v1/speak`` endpoint
(one request per sentence), retrying what can be retried before the first
byte. The SDK does not retry streaming calls itself.

Configuration: constructor arguments win; otherwise :class:`DeepgramSettings`
reads ``DEEPGRAM_*`` variables from the environment or a ``.env`` file. Pass
``client=AsyncDeepgramClient(...)`` to reuse a client or point the providers
somewhere else (a proxy, a loopback fake in tests). The API key is a
``SecretStr`` and never appears in logs, reprs or error messages.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import anyio
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from voicepipe.audio import AudioFormat
from voicepipe.errors import ProviderError, Stage
from voicepipe.events import ErrorEvent, SpeechStarted, TranscriptFinal, TranscriptInterim, UserTurn
from voicepipe.providers.base import Emit

if TYPE_CHECKING:
    import httpx
    from deepgram import AsyncDeepgramClient
    from deepgram.core.api_error import ApiError
    from deepgram.listen.v1.socket_client import AsyncV1SocketClient

__all__ = ["DeepgramSTT", "DeepgramSTTOptions", "DeepgramSettings", "DeepgramTTS"]

logger = logging.getLogger(__name__)

_KEY_HINT = "set DEEPGRAM_API_KEY (environment or .env) or pass api_key="
_TTS_SAMPLE_RATES = (8000, 16000, 24000, 32000, 48000)


class DeepgramSettings(BaseSettings):
    """``DEEPGRAM_*`` settings from the environment or ``.env``.

    ``DEEPGRAM_API_KEY`` (required unless a client is passed),
    ``DEEPGRAM_STT_MODEL``, ``DEEPGRAM_TTS_MODEL``, ``DEEPGRAM_LANGUAGE``.
    """

    model_config = SettingsConfigDict(env_prefix="DEEPGRAM_", env_file=".env", extra="ignore")

    api_key: SecretStr | None = None
    stt_model: str = "nova-3"
    tts_model: str = "aura-2-thalia-en"
    language: str = "en"


class _Client:
    """The SDK client a provider uses: the caller's, or one made (and closed) here."""

    def __init__(
        self,
        stage: Stage,
        api_key: str | SecretStr | None,
        client: AsyncDeepgramClient | None,
        settings: DeepgramSettings,
    ) -> None:
        if isinstance(api_key, str):
            api_key = SecretStr(api_key)
        self._key = api_key or settings.api_key
        if client is None and (self._key is None or not self._key.get_secret_value()):
            raise ProviderError(stage, f"no Deepgram API key: {_KEY_HINT}", recoverable=False)
        self._client = client
        self._http: httpx.AsyncClient | None = None

    def get(self) -> AsyncDeepgramClient:
        if self._client is None:
            import httpx
            from deepgram import AsyncDeepgramClient

            assert self._key is not None
            # Keep idle connections for 30 s (httpx's default is 5): replies are often
            # more than 5 s apart, and a fresh TLS handshake delays the first sentence.
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(30.0, connect=5.0),
                limits=httpx.Limits(keepalive_expiry=30.0),
            )
            self._client = AsyncDeepgramClient(
                api_key=self._key.get_secret_value(), httpx_client=self._http
            )
        return self._client

    async def aclose(self) -> None:
        if self._http is not None:  # ours to close; a caller's client stays open
            http, self._http, self._client = self._http, None, None
            await http.aclose()


def _require_asyncio() -> None:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise ProviderError(
            "stt",
            "DeepgramSTT needs the asyncio backend (deepgram-sdk's live socket is asyncio-only)",
            recoverable=False,
        ) from None


def _auth_error(stage: Stage, status: int) -> ProviderError:
    return ProviderError(
        stage,
        f"Deepgram refused the API key (HTTP {status}); check DEEPGRAM_API_KEY "
        "or the key passed as api_key=",
        recoverable=False,
        status=status,
    )


def _retryable_status(status: int | None) -> bool:
    return status is None or status in (408, 429) or status >= 500


def _backoff(base: float, attempt: int, cap: float) -> float:
    """Exponential backoff: base, 2*base, 4*base, ... capped."""
    return float(min(cap, base * 2 ** (attempt - 1)))


# --- speech-to-text -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeepgramSTTOptions:
    """Live transcription options sent as query parameters (see Deepgram's docs).

    The defaults suit a voice agent: interim results for responsive captions,
    300 ms endpointing (``speech_final``) for quick turn ends, and
    ``UtteranceEnd`` after 1 s of no words as the fallback when background
    noise keeps endpointing from firing.
    """

    model: str = "nova-3"
    language: str | None = "en"
    interim_results: bool = True
    endpointing: int | bool = 300
    utterance_end_ms: int | None = 1000
    vad_events: bool = True
    smart_format: bool = True
    keyterms: tuple[str, ...] = ()
    """Nova-3 keyterm prompting: words and phrases to recognise better."""
    keywords: tuple[str, ...] = ()
    """Keyword boosting for Nova-2 and older models (``word`` or ``word:boost``)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Any other ``listen.v1.connect`` argument (``punctuate``, ``numerals``, ...)."""

    def query(self, fmt: AudioFormat) -> dict[str, Any]:
        """The keyword arguments for ``client.listen.v1.connect``."""
        params: dict[str, Any] = {
            "model": self.model,
            "encoding": "linear16",
            "sample_rate": fmt.sample_rate,
            "channels": fmt.channels,
            "interim_results": self.interim_results,
            "endpointing": self.endpointing,
            "vad_events": self.vad_events,
            "smart_format": self.smart_format,
        }
        if self.language:
            params["language"] = self.language
        if self.utterance_end_ms is not None:
            params["utterance_end_ms"] = self.utterance_end_ms
        if self.keyterms:
            params["keyterm"] = list(self.keyterms)
        if self.keywords:
            params["keywords"] = list(self.keywords)
        params.update(self.extra)
        return params


class _AudioLog:
    """The caller's audio, kept from the last final result on.

    A single pump task reads the caller's iterator into this log, so a
    dropped connection never interrupts (and never loses) a read. Each
    connection sends the log from its start, which is exactly the audio
    Deepgram has not finalised yet: the replay after a reconnect.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.first_seq = 0  # sequence number of chunks[0]
        self.first_offset = 0  # byte offset of chunks[0] in the whole stream
        self.ended = False
        self.error: Exception | None = None
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._changed = anyio.Event()

    def get(self, seq: int) -> bytes | None:
        index = seq - self.first_seq
        return self._chunks[index] if 0 <= index < len(self._chunks) else None

    def offset_of(self, seq: int) -> int:
        """Byte offset (in the whole stream) where chunk ``seq`` starts."""
        index = min(max(0, seq - self.first_seq), len(self._chunks))
        return self.first_offset + sum(len(self._chunks[i]) for i in range(index))

    @property
    def end_seq(self) -> int:
        return self.first_seq + len(self._chunks)

    @property
    def end_offset(self) -> int:
        """Byte offset of the end of all audio read so far."""
        return self.first_offset + self._size

    def trim(self, offset: int) -> None:
        """Forget audio that ends at or before byte ``offset`` (it is transcribed)."""
        while self._chunks and self.first_offset + len(self._chunks[0]) <= offset:
            self._drop_first()

    def _drop_first(self) -> None:
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        self.first_seq += 1
        self.first_offset += len(chunk)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self) -> None:
        """Wait until a chunk arrives or the input ends (safe to cancel)."""
        await self._changed.wait()

    async def pump(self, audio: AsyncIterable[bytes], scope: anyio.CancelScope) -> None:
        try:
            async for chunk in audio:
                if not chunk:
                    continue
                self._chunks.append(bytes(chunk))
                self._size += len(chunk)
                while self._size > self.max_bytes and len(self._chunks) > 1:
                    self._drop_first()  # a long outage: keep only the newest audio
                self._notify()
        except Exception as exc:
            self.error = exc
            scope.cancel()
        finally:
            self.ended = True
            self._notify()


class _Turn:
    """Deepgram's results → voicepipe's transcript events and turn ends.

    Final segments (``is_final``) are collected; ``speech_final`` ends the
    turn with their joined text, and ``UtteranceEnd`` does when segments are
    waiting and endpointing never fired. ``speech_started`` is sent once per
    turn, on Deepgram's ``SpeechStarted`` or, failing that (VAD events off),
    on the first words heard.
    """

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.segments: list[str] = []
        self.started = False
        self.finals = 0  # final results seen, to tell progress from a crash loop
        # A connection dropped after the turn's last final words but before its
        # end: the new connection replays only what followed them (silence,
        # usually), so it will never send speech_final for them. The first final
        # result without words on the new connection ends the turn instead.
        self.held = False

    async def speech_started(self) -> None:
        if not self.started:
            self.started = True
            await self.emit(SpeechStarted())

    async def result(
        self,
        transcript: str,
        *,
        is_final: bool,
        speech_final: bool,
        endpoint_ms: float | None = None,
    ) -> None:
        text = transcript.strip()
        if text:
            await self.speech_started()
        if is_final:
            self.finals += 1
            if self.held:
                self.held = False
                if not text and self.segments:
                    await self.end(endpoint_ms)
                    return
            if not text and not self.segments:
                # Deepgram finalised audio holding no words: whatever set off
                # SpeechStarted was noise, so real speech may report it again.
                self.started = False
            if text:
                self.segments.append(text)
                await self.emit(TranscriptFinal(content=text))
            if speech_final:
                await self.end(endpoint_ms)
        elif text:
            # Interim text replaces the previous one, so it carries the whole turn so far.
            await self.emit(TranscriptInterim(content=" ".join([*self.segments, text])))

    async def end(self, endpoint_ms: float | None = None) -> None:
        """End the turn: report the collected segments, if any, as one user turn."""
        segments, self.segments, self.started = self.segments, [], False
        self.held = False
        if segments:
            await self.emit(UserTurn(content=" ".join(segments), endpoint_ms=endpoint_ms))


class _Lost(Exception):
    """The live connection ended before its work was done (reconnect)."""


class DeepgramSTT:
    """Deepgram live transcription (``/v1/listen`` websocket) as a voicepipe STT.

    Failure behaviour: a dropped connection (network error, abnormal close,
    server restart) is reconnected after ``reconnect_backoff`` seconds
    (doubling), the audio since the last final result is replayed so no
    words are lost, and a recoverable ``error`` event is emitted. After
    ``max_reconnects`` tries without progress, or when the key is refused
    (401/403), ``transcribe`` raises a non-recoverable :class:`ProviderError`.
    """

    def __init__(
        self,
        *,
        api_key: str | SecretStr | None = None,
        client: AsyncDeepgramClient | None = None,
        model: str | None = None,
        language: str | None = None,
        interim_results: bool = True,
        endpointing: int | bool = 300,
        utterance_end_ms: int | None = 1000,
        vad_events: bool = True,
        smart_format: bool = True,
        keyterms: Sequence[str] = (),
        keywords: Sequence[str] = (),
        extra_options: Mapping[str, Any] | None = None,
        keepalive_interval: float = 4.0,
        max_reconnects: int = 3,
        reconnect_backoff: float = 0.5,
        max_replay_seconds: float = 30.0,
        close_timeout: float = 5.0,
        settings: DeepgramSettings | None = None,
    ) -> None:
        settings = settings or DeepgramSettings()
        if utterance_end_ms is not None and not interim_results:
            raise ValueError(
                "Deepgram sends UtteranceEnd only with interim results: "
                "pass utterance_end_ms=None or interim_results=True"
            )
        self.options = DeepgramSTTOptions(
            model=model or settings.stt_model,
            language=language if language is not None else settings.language,
            interim_results=interim_results,
            endpointing=endpointing,
            utterance_end_ms=utterance_end_ms,
            vad_events=vad_events,
            smart_format=smart_format,
            keyterms=tuple(keyterms),
            keywords=tuple(keywords),
            extra=dict(extra_options or {}),
        )
        self.keepalive_interval = keepalive_interval
        self.max_reconnects = max_reconnects
        self.reconnect_backoff = reconnect_backoff
        self.max_replay_seconds = max_replay_seconds
        self.close_timeout = close_timeout
        self._client = _Client("stt", api_key, client, settings)

    def __repr__(self) -> str:
        return f"DeepgramSTT(model={self.options.model!r}, language={self.options.language!r})"

    async def aclose(self) -> None:
        """Close the HTTP client this provider made (not one passed as ``client=``)."""
        await self._client.aclose()

    async def transcribe(
        self, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit
    ) -> None:
        """Stream ``audio`` to Deepgram, emitting transcript events, until the
        input ends and the last words are reported (see :class:`STT`)."""
        _require_asyncio()
        client = self._client.get()
        log = _AudioLog(max(1, int(self.max_replay_seconds * format.bytes_per_second)))
        turn = _Turn(emit)
        failure: ProviderError | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(log.pump, audio, tg.cancel_scope)
            try:
                await self._run(client, format, log, turn)
            except ProviderError as exc:
                failure = exc  # raised below, outside the task group, unwrapped
            tg.cancel_scope.cancel()
        if log.error is not None:
            raise log.error
        if failure is not None:
            raise failure
        await turn.end()  # segments never closed by speech_final/UtteranceEnd

    async def _run(
        self, client: AsyncDeepgramClient, fmt: AudioFormat, log: _AudioLog, turn: _Turn
    ) -> None:
        """Connect, and reconnect after drops, until the input is transcribed."""
        from deepgram.core.api_error import ApiError
        from websockets.exceptions import WebSocketException

        tries = 0
        while True:
            finals_before = turn.finals
            try:
                await self._session(client, fmt, log, turn)
                return
            except ApiError as exc:
                status = exc.status_code
                if status in (401, 403):
                    raise _auth_error("stt", status) from None
                if not _retryable_status(status):
                    raise ProviderError(
                        "stt",
                        f"Deepgram refused the live connection (HTTP {status}); check the "
                        f"options ({self!r})",
                        recoverable=False,
                        status=status,
                    ) from None
                reason = f"HTTP {status} at connect"
            except (_Lost, OSError, WebSocketException) as exc:
                reason = _describe(exc)
            if turn.finals > finals_before:
                tries = 0  # that connection made progress: not a crash loop
            tries += 1
            if tries > self.max_reconnects:
                raise ProviderError(
                    "stt",
                    f"lost the Deepgram connection ({reason}) and could not reconnect "
                    f"after {self.max_reconnects} tries",
                    recoverable=False,
                )
            turn.held = bool(turn.segments)  # the new connection is asked to finalize them
            delay = _backoff(self.reconnect_backoff, tries, cap=8.0)
            logger.warning("Deepgram STT: %s; reconnecting in %.2f s", reason, delay)
            await turn.emit(
                ErrorEvent(
                    stage="stt",
                    message=f"Deepgram connection lost ({reason}); reconnecting "
                    f"(try {tries} of {self.max_reconnects})",
                    recoverable=True,
                )
            )
            await anyio.sleep(delay)

    async def _session(
        self, client: AsyncDeepgramClient, fmt: AudioFormat, log: _AudioLog, turn: _Turn
    ) -> None:
        """One connection: send from the log's start, receive until the server
        closes after our CloseStream. Raises :class:`_Lost` on an early end."""
        from websockets.exceptions import WebSocketException

        origin = log.first_offset  # byte offset where this connection's clock starts
        closing = anyio.Event()
        lost: Exception | None = None
        # A turn held across a drop: finalize once the endpointing window after
        # its last final words is sent; silence there ends it, words go on with it.
        finalize_at = origin + self._endpoint_bytes(fmt) if turn.held else None
        async with client.listen.v1.connect(**self.options.query(fmt)) as conn:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._send, conn, log, closing, tg.cancel_scope, finalize_at)
                    try:
                        await self._receive(conn, fmt, log, turn, origin, closing)
                    except (_Lost, OSError, WebSocketException) as exc:
                        lost = exc  # re-raised outside the task group, not wrapped in a group
                    tg.cancel_scope.cancel()
            finally:
                if lost is None and not closing.is_set():
                    await self._close_politely(conn)
        if lost is not None:
            raise lost

    def _endpoint_bytes(self, fmt: AudioFormat) -> int:
        """The audio Deepgram waits for after the last word before ending a turn."""
        endpointing = self.options.endpointing
        ms = endpointing if isinstance(endpointing, int) and endpointing > 10 else 300
        return fmt.bytes_for(ms)

    async def _close_politely(self, conn: AsyncV1SocketClient) -> None:
        """Send CloseStream on an early end (the session left, cancellation):
        shielded, bounded, and quiet if the connection is already gone."""
        from websockets.exceptions import WebSocketException

        with anyio.move_on_after(min(self.close_timeout, 2.0), shield=True):
            with contextlib.suppress(OSError, WebSocketException):
                await conn.send_close_stream()

    async def _send(
        self,
        conn: AsyncV1SocketClient,
        log: _AudioLog,
        closing: anyio.Event,
        scope: anyio.CancelScope,
        finalize_at: int | None = None,
    ) -> None:
        """Send the log, then live audio; KeepAlive when idle; Finalize and
        CloseStream at the end of input. With ``finalize_at`` (a byte offset of
        the whole stream), Finalize once the audio up to it is sent. Send
        errors end this task quietly: the receiver sees the same broken
        connection and reports it."""
        from websockets.exceptions import ConnectionClosed

        seq = log.first_seq
        last_sent = anyio.current_time()
        try:
            while True:
                seq = max(seq, log.first_seq)
                while (chunk := log.get(seq)) is not None:
                    await conn.send_media(chunk)
                    seq += 1
                    last_sent = anyio.current_time()
                    if finalize_at is not None and log.offset_of(seq) >= finalize_at:
                        finalize_at = None
                        await conn.send_finalize()
                if log.ended and seq >= log.end_seq:
                    break
                idle = anyio.current_time() - last_sent
                if idle >= self.keepalive_interval:
                    await conn.send_keep_alive()
                    last_sent = anyio.current_time()
                    continue
                with anyio.move_on_after(self.keepalive_interval - idle):
                    await log.wait()
            await conn.send_finalize()  # flush what Deepgram holds back...
            await conn.send_close_stream()  # ...then ask it to finish and close
            closing.set()
        except (ConnectionClosed, OSError):
            return
        await anyio.sleep(self.close_timeout)
        logger.warning("Deepgram STT: no close %.1f s after CloseStream", self.close_timeout)
        scope.cancel()

    async def _receive(
        self,
        conn: AsyncV1SocketClient,
        fmt: AudioFormat,
        log: _AudioLog,
        turn: _Turn,
        origin: int,
        closing: anyio.Event,
    ) -> None:
        from deepgram.listen.v1.types import (
            ListenV1Error,
            ListenV1Results,
            ListenV1SpeechStarted,
            ListenV1UtteranceEnd,
        )
        from websockets.exceptions import ConnectionClosedOK

        while True:
            try:
                message = await conn.recv()
            except ConnectionClosedOK:
                if closing.is_set():
                    return
                raise _Lost("closed by Deepgram before the end of input") from None
            except (ValueError, RecursionError):  # not JSON (or nested past any use)
                logger.warning("Deepgram STT: skipped a message that is not JSON")
                continue
            # Audio this connection has been given, on the clock of Deepgram's times:
            # how far it had heard past the last word is how long it waited.
            heard = (log.end_offset - origin) / fmt.bytes_per_second
            if isinstance(message, ListenV1Results):
                try:
                    transcript, last_word_end, end = _read_results(message)
                    trim = None if end is None else round(end * fmt.sample_rate) * fmt.frame_size
                except _MALFORMED:
                    logger.warning("Deepgram STT: skipped a malformed Results message")
                    continue
                await turn.result(
                    transcript,
                    is_final=bool(message.is_final),
                    speech_final=bool(message.speech_final),
                    endpoint_ms=None if last_word_end is None else _waited(heard, last_word_end),
                )
                if trim is not None:
                    log.trim(origin + trim)
            elif isinstance(message, ListenV1SpeechStarted):
                await turn.speech_started()
            elif isinstance(message, ListenV1UtteranceEnd):
                if turn.segments:
                    try:
                        waited = _waited(heard, _number(message.last_word_end))
                    except _MALFORMED:
                        logger.warning("Deepgram STT: skipped a malformed UtteranceEnd message")
                        continue
                    await turn.end(waited)
            elif isinstance(message, ListenV1Error):
                logger.warning("Deepgram STT error message: %s", message.description)
            # Metadata, binary frames and unknown types (parsed as None): nothing to do.


_MALFORMED = (AttributeError, IndexError, TypeError, ValueError, OverflowError)
"""What reading a message that lacks a field, or holds the wrong type, raises."""


def _number(value: object) -> float:
    """A finite number from a message, or ValueError/TypeError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a finite number: {type(value).__name__}")
    return float(value)


def _read_results(message: Any) -> tuple[str, float | None, float | None]:
    """A ``Results`` message's transcript, its last word's end and, if final, its end
    (seconds); raises one of :data:`_MALFORMED` if it lacks them (the SDK parses
    leniently: a missing field is None)."""
    alternatives = message.channel.alternatives
    best = alternatives[0] if alternatives else None
    transcript = "" if best is None else best.transcript
    if not isinstance(transcript, str):
        raise TypeError("transcript is not a string")
    words = None if best is None else best.words
    last_word_end = _number(words[-1].end) if words else None
    end = _number(message.start) + _number(message.duration) if message.is_final else None
    if end is not None and not math.isfinite(end):
        raise OverflowError("the result ends past any audio")
    return transcript, last_word_end, end


def _waited(heard: float, last_word_end: float) -> float:
    """Milliseconds of audio Deepgram had after the last word when it ended the turn."""
    return round(max(0.0, heard - last_word_end) * 1000, 3)


def _describe(exc: BaseException) -> str:
    """A short, secret-free reason for a lost connection."""
    from websockets.exceptions import ConnectionClosed

    if isinstance(exc, _Lost):
        return str(exc)
    if isinstance(exc, ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd else 1006
        return f"websocket closed with code {code}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


# --- text-to-speech -----------------------------------------------------------


class DeepgramTTS:
    """Deepgram Aura text-to-speech over the streaming REST endpoint.

    Each :meth:`synthesize` call is one ``POST /v1/speak`` asking for raw
    PCM16 (``linear16``, no container) at ``sample_rate``; chunks are
    yielded as they arrive, realigned to whole samples.

    Failure behaviour: connection errors, timeouts, 429 and 5xx before the
    first byte are retried ``max_retries`` times with backoff (honouring
    ``Retry-After`` up to ``max_backoff``). Afterwards, or on any failure
    once audio has flowed, :class:`ProviderError` (recoverable: only this
    sentence is lost) is raised. A refused key (401/403) is not recoverable.
    Closing the iterator (barge-in) closes the HTTP stream at once.
    """

    def __init__(
        self,
        *,
        api_key: str | SecretStr | None = None,
        client: AsyncDeepgramClient | None = None,
        model: str | None = None,
        sample_rate: int = 24000,
        speed: float | None = None,
        max_retries: int = 3,
        retry_backoff: float = 0.25,
        max_backoff: float = 4.0,
        settings: DeepgramSettings | None = None,
    ) -> None:
        settings = settings or DeepgramSettings()
        if sample_rate not in _TTS_SAMPLE_RATES:
            raise ValueError(
                f"Deepgram linear16 TTS supports sample rates {_TTS_SAMPLE_RATES}, "
                f"got {sample_rate}"
            )
        self.model = model or settings.tts_model
        self.sample_rate = sample_rate
        self.speed = speed
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self._format = AudioFormat(sample_rate=sample_rate, channels=1)
        self._client = _Client("tts", api_key, client, settings)

    def __repr__(self) -> str:
        return f"DeepgramTTS(model={self.model!r}, sample_rate={self.sample_rate})"

    @property
    def output_format(self) -> AudioFormat:
        return self._format

    async def aclose(self) -> None:
        """Close the HTTP client this provider made (not one passed as ``client=``)."""
        await self._client.aclose()

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        """Yield ``text`` spoken as PCM16 chunks in :attr:`output_format`."""
        import httpx
        from deepgram.core.api_error import ApiError

        if not text.strip():
            return
        client = self._client.get()
        tries = 0
        while True:
            started = False
            stream = cast(
                "AsyncGenerator[bytes, None]",
                client.speak.v1.audio.generate(
                    text=text,
                    model=self.model,
                    encoding="linear16",
                    container="none",
                    sample_rate=self.sample_rate,
                    speed=self.speed,
                ),
            )
            carry = b""  # an odd trailing byte, completed by the next chunk
            try:
                async for chunk in stream:
                    data = carry + chunk
                    cut = len(data) - len(data) % 2
                    carry = data[cut:]
                    if cut:
                        started = True
                        yield data[:cut]
                return
            except ApiError as exc:
                status = exc.status_code
                if status in (401, 403):
                    raise _auth_error("tts", status) from None
                if started or not _retryable_status(status) or tries >= self.max_retries:
                    raise self._failure(
                        f"HTTP {status}{_detail(exc)}", started, tries, status
                    ) from exc
                delay = max(
                    _backoff(self.retry_backoff, tries + 1, self.max_backoff),
                    min(_retry_after(exc), self.max_backoff),
                )
                reason = f"HTTP {status}"
            except httpx.TransportError as exc:
                if started or tries >= self.max_retries:
                    raise self._failure(type(exc).__name__, started, tries, None) from None
                delay = _backoff(self.retry_backoff, tries + 1, self.max_backoff)
                reason = type(exc).__name__
            finally:
                # Closing the SDK's generator closes the HTTP response; shielded so a
                # cancelled caller (barge-in) still releases the connection at once.
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
            tries += 1
            logger.warning("Deepgram TTS: %s; retry %d in %.2f s", reason, tries, delay)
            await anyio.sleep(delay)

    def _failure(self, reason: str, started: bool, tries: int, status: int | None) -> ProviderError:
        when = "mid-stream" if started else f"after {tries + 1} tries"
        return ProviderError(
            "tts", f"Deepgram TTS failed {when}: {reason}", recoverable=True, status=status
        )


def _detail(exc: ApiError) -> str:
    """Deepgram's own error message from a JSON error body, if any (never secrets)."""
    body = exc.body
    if isinstance(body, dict):
        message = body.get("err_msg") or body.get("message") or body.get("reason")
        if isinstance(message, str) and message:
            return f" ({message[:200]})"
    return ""


def _retry_after(exc: ApiError) -> float:
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    try:
        return max(0.0, float(headers.get("retry-after", 0)))
    except ValueError:
        return 0.0
