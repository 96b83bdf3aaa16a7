"""Tools: plain typed Python functions the model can call.

:func:`tool` turns a function (sync or async) into a :class:`Tool`: its name,
its docstring as the description, and a JSON schema of its arguments built
from the type hints by pydantic. :meth:`Tool.run` validates the model's
arguments before the function runs and turns every failure (bad arguments,
an exception, a timeout) into an error :class:`ToolResult` for the model,
never a traceback for the caller's ears. Sync functions run in a daemon
thread of their own, so a slow lookup does not stall the session, and one
that never returns does not keep the process from exiting.

::

    async def get_weather(city: str) -> str:
        \"\"\"Today's weather in a city.\"\"\"
        return "sunny, 22 C"

    ConversationPolicy(tools=[get_weather])

The call loop (model → calls → results → model) lives in
:class:`voicepipe.policies.ConversationPolicy`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import inspect
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints, overload

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import to_json

from voicepipe.providers.base import ToolSpec

__all__ = [
    "Tool",
    "ToolResult",
    "ToolsNotSupportedError",
    "as_tools",
    "load_tools",
    "require_tool_support",
    "supports_tools",
    "tool",
]

log = logging.getLogger("voicepipe.tools")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_DESCRIPTION = 1024
MAX_ABANDONED = 2
"""Calls of one sync :class:`Tool` that may still be running in their threads past their
time limit (threads cannot be stopped); beyond that the tool is not called again until
one of them ends, and the call is an error result that says so."""


class ToolsNotSupportedError(TypeError):
    """The LLM was asked to use tools but its ``stream()`` takes no ``tools=``."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gave: ``ok`` and the content sent back to the model."""

    ok: bool
    content: str


class Tool:
    """A function the model can call, with its name, description and argument schema.

    Build one with :func:`tool`. ``parameters`` is the JSON schema of the
    arguments; ``spec`` is what goes to the LLM.
    """

    __slots__ = ("_abandoned", "_model", "description", "fn", "name", "parameters")

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", ""))
        if not _NAME.match(self.name):
            raise ValueError(
                f"tool name {self.name!r} is not valid: use 1-64 letters, digits, _ or - "
                "(pass name=)"
            )
        doc = description if description is not None else inspect.getdoc(fn) or ""
        self.description = doc.strip()[:MAX_DESCRIPTION]
        self._model = _arguments_model(fn, self.name)
        try:
            schema = self._model.model_json_schema()
        except Exception as exc:  # a parameter type JSON cannot carry (a callable, say)
            raise TypeError(f"tool {self.name}: cannot describe its arguments: {exc}") from exc
        schema.pop("title", None)
        self.parameters: dict[str, Any] = schema
        self._abandoned: list[threading.Thread] = []  # sync calls left running past their limit

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    @property
    def spec(self) -> ToolSpec:
        """The tool as the LLM sees it."""
        return ToolSpec(self.name, self.description, self.parameters)

    def validate(self, arguments: Mapping[str, Any] | str) -> dict[str, Any]:
        """The arguments checked and converted to the function's types, or ValueError why not."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError as exc:
                raise ValueError(f"arguments are not valid JSON: {exc}") from exc
            if not isinstance(arguments, dict):
                raise ValueError("arguments must be a JSON object")
        try:
            model = self._model.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(arguments)'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"invalid arguments: {problems}") from exc
        return {name: getattr(model, name) for name in type(model).model_fields}

    async def run(
        self, arguments: Mapping[str, Any] | str, *, time_limit: float | None = None
    ) -> ToolResult:
        """Validate ``arguments``, call the function, and say how it went.

        Never raises (but for cancellation): bad arguments, an exception and
        running past ``time_limit`` seconds are error results. A sync function
        past its time limit is abandoned in its daemon thread (threads cannot be
        stopped) and finishes there unobserved; while :data:`MAX_ABANDONED` of
        its calls are left running so, it is not called again.
        """
        try:
            kwargs = self.validate(arguments)
        except ValueError as exc:
            return ToolResult(False, str(exc))
        is_async = _is_async(self.fn)
        if not is_async and self._abandoned:
            self._abandoned = [thread for thread in self._abandoned if thread.is_alive()]
            if len(self._abandoned) >= MAX_ABANDONED:
                return ToolResult(
                    False,
                    f"{self.name} was not called: {len(self._abandoned)} earlier calls are "
                    "still running past their time limit",
                )
        value: Any = None
        with anyio.move_on_after(time_limit) as scope:
            try:
                if is_async:
                    value = await self.fn(**kwargs)
                else:
                    value = await self._run_sync(functools.partial(self.fn, **kwargs))
            except Exception as exc:
                log.warning("tool %s raised %s: %s", self.name, type(exc).__name__, exc)
                return ToolResult(False, f"{type(exc).__name__}: {exc}")
        if scope.cancelled_caught:
            return ToolResult(False, f"{self.name} timed out after {time_limit:g} s")
        return ToolResult(True, _content(value))

    async def _run_sync(self, call: Callable[[], Any]) -> Any:
        """``call()`` in a daemon thread of its own, abandoned (left to run) if cancelled.

        Not anyio's worker threads: on asyncio they are not daemons, so a call
        that never returns would keep the interpreter from exiting. As many run
        at once as anyio's default thread limiter lets through.
        """
        token = anyio.lowlevel.current_token()
        done = anyio.Event()
        outcome: list[tuple[bool, Any]] = []
        context = contextvars.copy_context()

        def work() -> None:
            try:
                outcome.append((True, context.run(call)))
            except BaseException as exc:
                outcome.append((False, exc))
            with contextlib.suppress(RuntimeError):  # the event loop has ended: nobody waits
                anyio.from_thread.run_sync(done.set, token=token)

        async with anyio.to_thread.current_default_thread_limiter():
            thread = threading.Thread(target=work, name=f"voicepipe tool {self.name}", daemon=True)
            thread.start()
            try:
                await done.wait()
            except BaseException:
                if thread.is_alive():
                    self._abandoned.append(thread)
                raise
        ok, value = outcome[0]
        if not ok:
            raise value
        return value


@overload
def tool(
    fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> Tool: ...


@overload
def tool(
    fn: None = None, *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` of a typed function; use bare, called, or as a decorator.

    Every parameter needs a type hint (``Annotated[str, Field(description=...)]``
    describes it to the model); ``*args``/``**kwargs`` are refused.
    """
    if fn is None:
        return lambda f: Tool(f, name=name, description=description)
    return Tool(fn, name=name, description=description)


def as_tools(items: Iterable[Tool | Callable[..., Any]]) -> list[Tool]:
    """Tools from a mix of :class:`Tool` objects and plain functions; names must be unique."""
    tools = [item if isinstance(item, Tool) else Tool(item) for item in items]
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"two tools are named {', '.join(duplicates)}: pass tool(fn, name=...)")
    return tools


def load_tools(reference: str) -> list[Tool]:
    """Import ``"module:attr"``: a function, a Tool or a list of them (``chat --tools``)."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ValueError(f"tools {reference!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for tools: {exc}") from exc
    try:
        value = functools.reduce(getattr, attr.split("."), module)
    except AttributeError as exc:
        raise ValueError(f"{module_name!r} has no attribute {attr!r}") from exc
    items = [value] if isinstance(value, Tool) or callable(value) else value
    try:
        return as_tools(items)
    except TypeError as exc:
        raise ValueError(f"{reference} is not a function or a list of functions: {exc}") from exc


def supports_tools(llm: object) -> bool:
    """True when ``llm.stream`` takes a ``tools=`` argument."""
    stream = getattr(llm, "stream", None)
    if stream is None:
        return False
    try:
        parameters = inspect.signature(stream).parameters
    except (TypeError, ValueError):
        return False
    return "tools" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def require_tool_support(llm: object) -> None:
    """Raise :class:`ToolsNotSupportedError`, naming the fix, unless ``llm`` takes tools.

    An LLM whose support depends on its model has a ``check_tools()`` that
    raises it (``LlamaCppLLM`` with SmolLM2).
    """
    if not supports_tools(llm):
        raise ToolsNotSupportedError(
            f"{type(llm).__name__}.stream() takes no tools=, so it cannot call tools: use an "
            "LLM with tool support (GroqLLM, FakeLLM) or drop ConversationPolicy(tools=...)"
        )
    check = getattr(llm, "check_tools", None)  # an LLM whose support depends on its model
    if callable(check):
        check()


def _is_async(fn: Callable[..., Any]) -> bool:
    """True for ``async def`` functions, also behind ``functools.partial`` or ``__call__``."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def _arguments_model(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of ``fn``'s parameters (extra arguments are refused)."""
    try:
        signature = inspect.signature(fn)
        hints = get_type_hints(fn, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise TypeError(f"tool {name}: cannot read its signature: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"tool {name}: *args and **kwargs cannot be described to a model")
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"tool {name}: positional-only parameter {param.name!r}")
        if param.name not in hints:
            raise TypeError(
                f"tool {name}: parameter {param.name!r} needs a type hint "
                "(the model is told the argument types)"
            )
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints[param.name], default)
    model: type[BaseModel] = create_model(
        f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def _content(value: Any) -> str:
    """A tool's return value as text for the model: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    try:
        return to_json(value).decode()
    except Exception:  # not serialisable: its repr is still useful to the model
        return repr(value)
