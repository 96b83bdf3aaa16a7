"""Groq: a streaming chat LLM with structured output, and Whisper speech-to-text.

Both classes sit on the official ``groq`` SDK (``pip install 'voicepipe[groq]'``),
imported only when one is constructed, so ``import voicepipe`` never pays for it.

- :class:`GroqLLM` streams chat completions as text deltas and fills in token
  usage from the final chunk; :meth:`GroqLLM.complete_json` returns a
  validated pydantic model, with one repair round-trip when the model's JSON
  does not validate.
- :class:`GroqSTT` transcribes one WAV segment at a time with Whisper
  (:class:`voicepipe.segmenter.BatchSTT`) and, through a
  :class:`~voicepipe.segmenter.SegmentedSTT` it builds, is also a streaming
  STT you can hand straight to ``Pipeline(stt=...)``.

Credentials and settings: ``api_key=`` or ``GROQ_API_KEY`` (environment or a
``.env`` file), ``base_url=`` or ``GROQ_BASE_URL``, or a ready ``client=AsyncGroq(...)``.
Timeouts and retries are the SDK's own (it retries 408/409/429/5xx and
connection errors with backoff, honouring ``retry-after``). Every failure
comes out as :class:`voicepipe.errors.ProviderError`; no message ever
contains the key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import anyio
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from voicepipe.audio import AudioFormat, wav_bytes
from voicepipe.errors import ProviderError, Stage
from voicepipe.providers._openai import CallAssembler, chat_messages, chat_tools
from voicepipe.providers.base import Emit, Expectation, STTHint, ToolCall, ToolSpec
from voicepipe.segmenter import VAD, SegmentedSTT

if TYPE_CHECKING:
    from groq import AsyncGroq
    from groq.types import CompletionUsage
    from groq.types.chat import ChatCompletionMessageParam

    from voicepipe.providers.base import Emit, Message, Usage

__all__ = ["JSON_SCHEMA_MODELS", "GroqLLM", "GroqSTT", "GroqSettings"]

M = TypeVar("M", bound=BaseModel)

DEFAULT_LLM_MODEL = "llama-3.1-8b-instant"
DEFAULT_STT_MODEL = "whisper-large-v3-turbo"
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_MAX_RETRIES = 2

JSON_SCHEMA_MODELS = frozenset(
    {
        "openai/gpt-oss-20b",
        "openai/gpt-oss-120b",
        "moonshotai/kimi-k2-instruct",
        "moonshotai/kimi-k2-instruct-0905",
        "meta-llama/llama-4-maverick-17b-128e-instruct",
        "meta-llama/llama-4-scout-17b-16e-instruct",
    }
)
"""Models that take ``response_format={"type": "json_schema", ...}`` (Groq's
structured outputs); the others get JSON object mode with the schema in the prompt."""


class GroqSettings(BaseSettings):
    """``GROQ_API_KEY`` and ``GROQ_BASE_URL`` from the environment or ``./.env``."""

    model_config = SettingsConfigDict(env_prefix="GROQ_", env_file=".env", extra="ignore")

    api_key: SecretStr | None = None
    base_url: str | None = None


def _connect(
    stage: Stage,
    *,
    client: AsyncGroq | None,
    api_key: str | SecretStr | None,
    base_url: str | None,
    timeout: float | None,
    connect_timeout: float | None,
    max_retries: int | None,
) -> AsyncGroq:
    """The SDK client: the one given (with any timeout/retry overrides), or a new one."""
    try:
        import groq
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the Groq providers need the SDK: pip install 'voicepipe[groq]'") from exc

    if client is not None:
        overrides: dict[str, Any] = {}
        if timeout is not None or connect_timeout is not None:
            overrides["timeout"] = httpx.Timeout(
                timeout or DEFAULT_TIMEOUT_S, connect=connect_timeout or DEFAULT_CONNECT_TIMEOUT_S
            )
        if max_retries is not None:
            overrides["max_retries"] = max_retries
        return client.with_options(**overrides) if overrides else client

    settings = GroqSettings()
    key = api_key if api_key is not None else settings.api_key
    secret = key.get_secret_value() if isinstance(key, SecretStr) else key
    if not secret:
        raise ProviderError(
            stage,
            "no Groq API key: set GROQ_API_KEY (environment or .env) or pass api_key=",
            recoverable=False,
        )
    return groq.AsyncGroq(
        api_key=secret,
        base_url=base_url or settings.base_url,
        timeout=httpx.Timeout(
            timeout or DEFAULT_TIMEOUT_S, connect=connect_timeout or DEFAULT_CONNECT_TIMEOUT_S
        ),
        max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
    )


def _failures() -> tuple[type[Exception], ...]:
    """What a call can raise: SDK errors, and httpx's for a stream that breaks mid-way."""
    import groq
    import httpx

    return (groq.GroqError, httpx.HTTPError)


_MALFORMED = (AttributeError, IndexError, KeyError, TypeError, ValueError, RecursionError)
"""What reading a reply that is not JSON (or nested too deeply), or lacks a field,
raises (the SDK parses leniently: a missing field is None)."""


def _malformed(stage: Stage, exc: Exception | str) -> ProviderError:
    what = exc if isinstance(exc, str) else type(exc).__name__
    return ProviderError(
        stage,
        f"Groq sent a reply voicepipe cannot read ({what}); if it persists, check "
        "GROQ_BASE_URL and any proxy in between",
    )


def _error_body(exc: Exception) -> dict[str, Any]:
    """Groq's ``{"error": {...}}`` detail of an API error, or {}."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def _to_provider_error(
    stage: Stage, exc: Exception, client: AsyncGroq, *, fatal_auth: bool
) -> ProviderError:
    """Map an SDK/httpx failure to a ProviderError with a message that says what to do.

    ``fatal_auth`` makes a rejected key non-recoverable (the STT can do nothing
    without it; a failed LLM call only loses its turn).
    """
    import groq

    status = getattr(exc, "status_code", None)
    retries = client.max_retries
    if isinstance(exc, groq.AuthenticationError):
        message = "Groq rejected the API key (HTTP 401): check GROQ_API_KEY or api_key="
    elif isinstance(exc, groq.PermissionDeniedError):
        message = "Groq refused the request (HTTP 403): the key in GROQ_API_KEY lacks access"
    elif isinstance(exc, groq.RateLimitError):
        message = f"Groq rate limit (HTTP 429) still hit after {retries} retries"
    elif isinstance(exc, groq.APIStatusError) and _error_body(exc).get("code") == "tool_use_failed":
        message = (
            f"Groq: the model wrote a malformed tool call (HTTP {exc.status_code}, "
            "tool_use_failed); a larger model or simpler tool arguments help"
        )
    elif isinstance(exc, groq.APIStatusError):
        detail = str(_error_body(exc).get("message") or "")[:300]
        message = f"Groq returned HTTP {exc.status_code}" + (f": {detail}" if detail else "")
    elif isinstance(exc, groq.APITimeoutError):
        limit = getattr(client.timeout, "read", client.timeout)
        message = f"Groq did not answer within {limit} s, {retries} retries included"
    elif isinstance(exc, groq.APIConnectionError):
        where = client.base_url.copy_with(userinfo=b"")  # a proxy's password stays out
        message = f"could not reach Groq at {where} after {retries} retries"
    elif isinstance(exc, groq.APIError):
        message = f"Groq reported an error mid-reply: {exc.message[:300]}"
    else:  # httpx, while reading a stream
        message = f"the connection to Groq broke mid-reply ({type(exc).__name__})"
    key = client.api_key
    if key:
        message = message.replace(key, "***")
    fatal = fatal_auth and status in (401, 403)
    return ProviderError(stage, message, recoverable=not fatal, status=status)


def _add_usage(usage: Usage | None, counts: CompletionUsage | None) -> None:
    if usage is None or counts is None:
        return
    usage.prompt_tokens = (usage.prompt_tokens or 0) + counts.prompt_tokens
    usage.completion_tokens = (usage.completion_tokens or 0) + counts.completion_tokens


def _chat(messages: Sequence[Message]) -> list[ChatCompletionMessageParam]:
    out: list[Any] = chat_messages(messages)
    return out


class GroqLLM:
    """Groq chat completions as a voicepipe :class:`~voicepipe.providers.base.LLM`.

    ``llama-3.1-8b-instant`` answers fastest, which matters most in a voice
    loop. ``timeout`` is the per-read timeout in seconds (a stalled stream
    fails after it), ``max_retries`` how often the SDK retries a failed
    request before the first token. Either defaults to the client's own when
    you pass ``client=``.
    """

    def __init__(
        self,
        model: str = DEFAULT_LLM_MODEL,
        *,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        temperature: float = 0.7,
        max_tokens: int | None = 1024,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_retries: int | None = None,
        structured_output: Literal["auto", "json_schema", "json_object"] = "auto",
        parallel_tool_calls: bool | None = None,
        client: AsyncGroq | None = None,
    ) -> None:
        self._owns_client = client is None
        self.parallel_tool_calls = parallel_tool_calls
        self.client = _connect(
            "llm",
            client=client,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
        )
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        if structured_output == "auto":
            structured_output = "json_schema" if model in JSON_SCHEMA_MODELS else "json_object"
        self.structured_output = structured_output

    def __repr__(self) -> str:
        return f"GroqLLM(model={self.model!r})"

    async def aclose(self) -> None:
        """Close the HTTP client, if this object created it."""
        if self._owns_client:
            await self.client.close()

    def _error(self, exc: Exception) -> ProviderError:
        return _to_provider_error("llm", exc, self.client, fatal_auth=False)

    @overload
    def stream(
        self, messages: Sequence[Message], *, usage: Usage | None = None
    ) -> AsyncGenerator[str, None]: ...

    @overload
    def stream(
        self,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> AsyncGenerator[str | ToolCall, None]: ...

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> AsyncGenerator[str | ToolCall, None]:
        """Yield the reply's text deltas as Groq streams them, and with ``tools``
        the tool calls the model asks for.

        Each call comes whole (Groq streams a call's arguments in pieces; they
        are joined), after the text, once the reply is complete; parallel
        calls come in the model's order. Raises :class:`ProviderError`
        (recoverable: the turn is lost, the conversation goes on) if the
        request fails after the SDK's retries, if the stream breaks, or if it
        ends without a finish reason. Closing this iterator early closes the
        HTTP response at once.
        """
        import groq

        failures = _failures()
        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = chat_tools(tools)
            if self.parallel_tool_calls is not None:
                extra["parallel_tool_calls"] = self.parallel_tool_calls
        try:
            response = await self.client.chat.completions.create(
                model=self.model,
                messages=_chat(messages),
                temperature=self.temperature,
                max_completion_tokens=groq.omit if self.max_tokens is None else self.max_tokens,
                stream=True,
                **extra,
            )
        except failures as exc:
            raise self._error(exc) from exc
        finished = False
        counts: CompletionUsage | None = None
        calls = CallAssembler()
        try:
            async for chunk in response:
                # Groq puts usage in x_groq.usage of the last chunk (the
                # OpenAI-style top-level field comes with stream_options).
                counts = chunk.usage or (chunk.x_groq and chunk.x_groq.usage) or counts
                if chunk.x_groq and chunk.x_groq.error:
                    raise ProviderError("llm", f"Groq stopped the reply: {chunk.x_groq.error}")
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finished = finished or choice.finish_reason is not None
                content = choice.delta.content
                if content:
                    if not isinstance(content, str):
                        raise _malformed("llm", "text that is not a string")
                    yield content
                for piece in choice.delta.tool_calls or ():
                    function = piece.function
                    calls.add(
                        piece.index,
                        piece.id,
                        function and function.name,
                        function and function.arguments,
                    )
        except failures as exc:
            raise self._error(exc) from exc
        except ProviderError:
            raise
        except _MALFORMED as exc:
            raise _malformed("llm", exc) from exc
        finally:
            with anyio.CancelScope(shield=True):  # close even when cancelled (barge-in)
                await response.close()
        _add_usage(usage, counts)
        if not finished:
            raise ProviderError("llm", "Groq's reply stream ended before the reply was complete")
        for call in calls.calls():
            yield call

    async def complete_json(
        self, messages: Sequence[Message], schema: type[M], *, usage: Usage | None = None
    ) -> M:
        """Ask for a reply that validates as ``schema`` and return it, validated.

        Uses Groq's ``json_schema`` response format on models that support it
        and JSON object mode otherwise; the schema is in the prompt either way.
        If the reply does not validate (or Groq rejects the JSON the model
        generated), the error goes back to the model once; a second failure
        raises :class:`ProviderError`. Runs at temperature 0.
        """
        json_schema = schema.model_json_schema()
        instructions = (
            "Reply with a single JSON object, no prose, that is valid against this "
            f"JSON schema:\n{json.dumps(json_schema)}"
        )
        conversation: list[dict[str, str]] = [{"role": "system", "content": instructions}]
        conversation += [{"role": m.role, "content": m.content} for m in messages]
        problem = ""
        for attempt in range(2):
            reply = await self._json_reply(conversation, schema.__name__, json_schema, usage)
            try:
                return schema.model_validate_json(reply)
            except ValidationError as exc:
                problem = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()
                )[:1000]
            if attempt == 0:
                conversation += [
                    {"role": "assistant", "content": reply},
                    {
                        "role": "user",
                        "content": f"That reply is not valid: {problem}. "
                        "Reply again with only the corrected JSON object.",
                    },
                ]
        raise ProviderError(
            "llm",
            f"Groq model {self.model} gave no valid {schema.__name__} after one repair "
            f"attempt: {problem}",
        )

    async def _json_reply(
        self,
        conversation: list[dict[str, str]],
        name: str,
        json_schema: dict[str, Any],
        usage: Usage | None,
    ) -> str:
        """One non-streaming JSON request; Groq's own JSON validation failure counts as a reply."""
        import groq

        if self.structured_output == "json_schema":
            response_format: Any = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": json_schema},
            }
        else:
            response_format = {"type": "json_object"}
        try:
            completion = await self.client.chat.completions.create(
                model=self.model,
                messages=_chat_dicts(conversation),
                temperature=0.0,
                max_completion_tokens=groq.omit if self.max_tokens is None else self.max_tokens,
                response_format=response_format,
            )
        except groq.BadRequestError as exc:
            detail = _error_body(exc)
            if detail.get("code") == "json_validate_failed":
                # Groq checked the model's output and found it is not JSON.
                return str(detail.get("failed_generation") or "")
            if self.structured_output == "json_schema" and "json_schema" in str(
                detail.get("message", "")
            ):
                self.structured_output = "json_object"  # this model can't; don't ask again
                return await self._json_reply(conversation, name, json_schema, usage)
            raise self._error(exc) from exc
        except _failures() as exc:
            raise self._error(exc) from exc
        except _MALFORMED as exc:  # the body is not JSON
            raise _malformed("llm", exc) from exc
        try:
            _add_usage(usage, completion.usage)
            content = completion.choices[0].message.content if completion.choices else ""
        except _MALFORMED as exc:
            raise _malformed("llm", exc) from exc
        if content is not None and not isinstance(content, str):
            raise _malformed("llm", "text that is not a string")
        return content or ""


def _chat_dicts(conversation: list[dict[str, str]]) -> list[ChatCompletionMessageParam]:
    out: list[Any] = conversation
    return out


class GroqSTT:
    """Groq Whisper speech-to-text: a batch STT, and a streaming one through a VAD segmenter.

    ``transcribe_segment`` sends one WAV to Groq. ``transcribe`` (the
    streaming :class:`~voicepipe.providers.base.STT`) cuts the audio into
    segments with a :class:`~voicepipe.segmenter.SegmentedSTT` built from the
    segmenter options here, so ``Pipeline(stt=GroqSTT())`` just works.
    A rejected key stops the session (nothing can be transcribed); any other
    failure loses that segment, is reported, and listening goes on.
    """

    def __init__(
        self,
        model: str = DEFAULT_STT_MODEL,
        *,
        language: str | None = "en",
        prompt: str | None = None,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_retries: int | None = None,
        client: AsyncGroq | None = None,
        vad: VAD | None = None,
        silence_ms: int = 600,
        min_speech_ms: int = 200,
        max_segment_s: float = 30.0,
        pre_roll_ms: int = 200,
        post_roll_ms: int = 200,
    ) -> None:
        self._owns_client = client is None
        self.client = _connect(
            "stt",
            client=client,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
        )
        self.model = model
        self.language = language
        self.prompt = prompt
        self.segmenter = SegmentedSTT(
            self,
            vad=vad,
            silence_ms=silence_ms,
            min_speech_ms=min_speech_ms,
            max_segment_s=max_segment_s,
            pre_roll_ms=pre_roll_ms,
            post_roll_ms=post_roll_ms,
        )

    def __repr__(self) -> str:
        return f"GroqSTT(model={self.model!r}, language={self.language!r})"

    async def aclose(self) -> None:
        """Close the HTTP client, if this object created it."""
        if self._owns_client:
            await self.client.close()

    async def transcribe_segment(
        self, pcm: bytes, format: AudioFormat, *, hint: STTHint | None = None
    ) -> str:
        """Transcribe one segment of PCM16 audio (sent as a WAV file).

        With ``hint``, Whisper's ``prompt`` names what is expected (the words
        of such an answer, never an example value), after ``self.prompt``.
        """
        extra: dict[str, Any] = {}
        if self.language:
            extra["language"] = self.language
        prompt = " ".join(p for p in (self.prompt, whisper_prompt(hint)) if p)
        if prompt:
            extra["prompt"] = prompt
        try:
            result = await self.client.audio.transcriptions.create(
                file=("segment.wav", wav_bytes(pcm, format), "audio/wav"),
                model=self.model,
                response_format="json",
                temperature=0.0,
                **extra,
            )
        except _failures() as exc:
            raise _to_provider_error("stt", exc, self.client, fatal_auth=True) from exc
        except _MALFORMED as exc:  # the body is not JSON
            raise _malformed("stt", exc) from exc
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise _malformed("stt", "no text in the transcription")
        return text.strip()

    async def transcribe(
        self, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit
    ) -> None:
        """Streaming STT: VAD-segment ``audio`` and transcribe each segment with Groq."""
        await self.segmenter.transcribe(audio, format, emit)

    async def transcribe_expecting(
        self, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit, expect: Expectation
    ) -> None:
        """:meth:`transcribe`, each segment prompted with the session's current hint."""
        segmenter = copy.copy(self.segmenter)
        segmenter.batch = _Hinted(self, expect)
        await segmenter.transcribe(audio, format, emit)


class _Hinted:
    """One session's batch STT: GroqSTT with the hint the session holds when a segment ends."""

    def __init__(self, stt: GroqSTT, expect: Expectation) -> None:
        self.stt = stt
        self.expect = expect

    async def transcribe_segment(self, pcm: bytes, format: AudioFormat) -> str:
        return await self.stt.transcribe_segment(pcm, format, hint=self.expect.hint)


# Whisper's prompt per hint kind and language: the vocabulary of such an answer,
# no example value (a prompt's words can come back as a transcript of silence).
_PROMPTS: dict[str, dict[str, str]] = {
    "en": {
        "phone": "A phone number, digit by digit: zero, oh, double, triple, plus.",
        "email": "An e-mail address, spelled out: at, dot, underscore, dash, gmail, "
        "yahoo, hotmail, outlook.",
        "number": "A number.",
        "date": "A date.",
        "yes_no": "Yes or no.",
        "choice": "One of: {options}.",
    },
    "es": {
        "phone": "Un número de teléfono, cifra a cifra: cero, doble, triple, más.",
        "email": "Un correo electrónico, deletreado: arroba, punto, guion bajo, guion, "
        "gmail, yahoo, hotmail, outlook.",
        "number": "Un número.",
        "date": "Una fecha.",
        "yes_no": "Sí o no.",
        "choice": "Una de: {options}.",
    },
}


def whisper_prompt(hint: STTHint | None) -> str:
    """Whisper's ``prompt`` for ``hint`` ("" for none, or a kind or language without one)."""
    if hint is None:
        return ""
    prompts = _PROMPTS.get(hint.language.split("-")[0].casefold(), {})
    template = prompts.get(hint.kind, "")
    if "{options}" in template:
        return template.format(options=", ".join(hint.options)) if hint.options else ""
    return template
