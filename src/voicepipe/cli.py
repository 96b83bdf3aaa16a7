"""The ``voicepipe`` command: voice sessions on recorded audio or a microphone.

A thin shell over the library: :mod:`voicepipe.config` picks and builds the
providers, :class:`voicepipe.Pipeline` runs the session, and this module
reads the WAV, prints the events and writes the reply audio. See
``docs/cli.md`` for the commands, their options and the exit codes.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
import traceback
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import anyio
import anyio.lowlevel
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from voicepipe import __version__
from voicepipe.audio import AudioFormat, chunk_pcm, read_wav, resample, write_wav
from voicepipe.config import (
    ProviderName,
    ProviderUnavailableError,
    choose,
    load_settings,
    make_llm,
    make_stt,
    make_tts,
    provider_status,
)
from voicepipe.errors import AudioFormatError, ProviderError, VoicepipeError
from voicepipe.events import (
    AssistantDelta,
    AssistantReply,
    AudioChunk,
    ErrorEvent,
    Event,
    Finish,
    FormComplete,
    FormProgress,
    Interrupted,
    Metrics,
    Session,
    SpeechStarted,
    TranscriptFinal,
    TranscriptInterim,
    UserTurn,
)

if TYPE_CHECKING:
    from voicepipe.policies.base import Policy
    from voicepipe.providers.base import LLM, STT, TTS

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PROVIDER",
    "EXIT_SESSION_ERROR",
    "EXIT_USAGE",
    "app",
    "main",
]

EXIT_OK = 0
"""The session ran and reported no error."""
EXIT_SESSION_ERROR = 1
"""The session reported an ``error`` event (or voicepipe failed unexpectedly)."""
EXIT_USAGE = 2
"""Bad command line or input: a missing or unreadable file, a bad form, unknown settings."""
EXIT_PROVIDER = 3
"""A chosen provider (or, with ``--mic``, the audio device) cannot work here."""
EXIT_INTERRUPTED = 130
"""Stopped with Ctrl-C."""

STT_FORMAT = AudioFormat(16000, 1)
"""What recorded audio is converted to before the STT: every STT takes 16 kHz mono."""
FEED_CHUNK_MS = 100
REPLY_GAP_MS = 300
MIC_LEAD_S = 0.3

T = TypeVar("T")


class _Group(TyperGroup):
    """The root command: usage errors become one line too (``voicepipe: error: ...``)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = result if isinstance(result, int) else EXIT_OK
        except typer.Abort:
            _print_error("interrupted")
            code = EXIT_INTERRUPTED
        except Exception as exc:
            # Click's exceptions (typer vendors click, so matched by shape, not class).
            exit_code = getattr(exc, "exit_code", None)
            if not isinstance(exit_code, int) or not hasattr(exc, "format_message"):
                raise
            code = exit_code
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has shown the help
                ctx = getattr(exc, "ctx", None)
                hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
                _print_error(f"{exc.format_message()}{hint}")
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=_Group,
    name="voicepipe",
    help="Real-time voice agents: talk to an assistant or fill in a form by voice.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
form_app = typer.Typer(
    help="Fill in a form by voice, and export the answers.", no_args_is_help=True
)
app.add_typer(form_app, name="form")


class SttChoice(StrEnum):
    deepgram = "deepgram"
    groq = "groq"
    local = "local"
    fake = "fake"


class LlmChoice(StrEnum):
    groq = "groq"
    local = "local"
    fake = "fake"


class TtsChoice(StrEnum):
    deepgram = "deepgram"
    local = "local"
    fake = "fake"


@dataclass
class _State:
    verbose: bool = False


_state = _State()


# --- errors and output --------------------------------------------------------


class CliError(Exception):
    """A failure to report as one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _console(*, stderr: bool = False) -> Console:
    # soft_wrap: never break a line at the terminal width (keeps errors on one line).
    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def _print_error(message: str) -> None:
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    _console(stderr=True).print(Text.assemble(("voicepipe: error: ", "bold red"), one_line))


def _fail(message: str, code: int) -> NoReturn:
    _print_error(message)
    raise typer.Exit(code)


def _guard(run: Callable[[], int]) -> None:
    """Run a command body; turn every failure into one line and an exit code."""
    try:
        code = run()
    except typer.Exit:
        raise
    except CliError as exc:
        _fail(exc.message, exc.code)
    except ProviderUnavailableError as exc:
        _fail(str(exc), EXIT_PROVIDER)
    except ProviderError as exc:
        # Raised outside a session: a model that does not load, a refused key at start.
        code = EXIT_SESSION_ERROR if exc.recoverable else EXIT_PROVIDER
        _fail(f"{exc.stage.upper()} failed: {exc.message}", code)
    except VoicepipeError as exc:
        # ValueError kinds are bad input: a WAV, a form file, settings (ConfigError).
        _fail(str(exc), EXIT_USAGE if isinstance(exc, ValueError) else EXIT_SESSION_ERROR)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        if _state.verbose:
            traceback.print_exc()
        hint = "" if _state.verbose else " (run with --verbose for the traceback)"
        _fail(f"unexpected {type(exc).__name__}: {exc}{hint}", EXIT_SESSION_ERROR)
    raise typer.Exit(code)


def _configure_logging(verbose: bool) -> None:
    """Quiet by default (errors are shown as events); ``--verbose`` shows the engines' logs."""
    logger = logging.getLogger("voicepipe")
    for old in list(logger.handlers):
        if getattr(old, "_voicepipe_cli", False):
            logger.removeHandler(old)
    new: logging.Handler
    if verbose:
        from rich.logging import RichHandler

        new = RichHandler(console=_console(stderr=True), show_path=False)
        logger.setLevel(logging.INFO)
    else:
        new = logging.NullHandler()
        logger.setLevel(logging.NOTSET)
    setattr(new, "_voicepipe_cli", True)  # noqa: B010
    logger.addHandler(new)


def _version(value: bool) -> None:
    if value:
        _console().print(f"voicepipe {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show the engines' logs, and tracebacks on failure."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Real-time voice agents: talk to an assistant or fill in a form by voice.

    Exit codes: 0 ok; 1 the session reported an error; 2 bad usage or input
    (missing or unreadable file, bad form, bad settings); 3 a provider or the
    audio device is unavailable; 130 interrupted.
    """
    _state.verbose = verbose
    _configure_logging(verbose)


# --- providers ----------------------------------------------------------------

_STT_OPT = typer.Option(
    "--stt",
    help="Speech-to-text \\[default: deepgram if DEEPGRAM_API_KEY is set, else groq if "
    "GROQ_API_KEY is set, else local; or VOICEPIPE_STT].",
    show_default=False,
)
_LLM_OPT = typer.Option(
    "--llm",
    help="Language model \\[default: groq if GROQ_API_KEY is set, else local; or VOICEPIPE_LLM].",
    show_default=False,
)
_TTS_OPT = typer.Option(
    "--tts",
    help="Text-to-speech \\[default: deepgram if DEEPGRAM_API_KEY is set, else local; "
    "or VOICEPIPE_TTS].",
    show_default=False,
)
_FAKE_TURN_OPT = typer.Option(
    "--fake-turn",
    help="With --stt fake: what the fake STT hears, one option per turn, in order "
    '\\[default: "hello" for every turn].',
    show_default=False,
)
_JSON_OPT = typer.Option(
    "--json", help="Print the events as JSON lines (audio summarised) instead of a transcript."
)


@dataclass
class _Providers:
    names: tuple[ProviderName, ProviderName, ProviderName]
    stt: STT
    llm: LLM
    tts: TTS

    def all(self) -> list[tuple[str, str, Any]]:
        return [
            ("STT", self.names[0], self.stt),
            ("LLM", self.names[1], self.llm),
            ("TTS", self.names[2], self.tts),
        ]

    async def aclose(self) -> None:
        for _, _, provider in self.all():
            close = getattr(provider, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()


def _build(
    stt: SttChoice | None,
    llm: LlmChoice | None,
    tts: TtsChoice | None,
    fake_turns: Sequence[str] | None,
) -> _Providers:
    base = load_settings()
    settings = base.model_copy(
        update={k: v.value for k, v in (("stt", stt), ("llm", llm), ("tts", tts)) if v is not None}
    )
    names = choose(settings)
    return _Providers(
        names,
        make_stt(names[0], settings, fake_turns=fake_turns or None),
        make_llm(names[1], settings),
        make_tts(names[2], settings),
    )


def _describe(provider: object) -> str:
    return type(provider).__name__


async def _load_models(providers: _Providers, err: Console) -> None:
    """Load the offline models up front (in worker threads), showing progress on stderr."""
    todo = [
        (role, provider)
        for role, _, provider in providers.all()
        if callable(getattr(provider, "load", None))
    ]
    if not todo:
        return
    done: dict[str, float] = {}

    def render() -> Text:
        text = Text()
        for role, provider in todo:
            key = f"{role} {_describe(provider)}"
            mark = f"loaded in {done[key]:.1f} s" if key in done else "loading ..."
            text.append(f"  {key}: {mark}\n", style="dim" if key in done else "")
        return text

    async def load(role: str, provider: Any, refresh: Callable[[], None]) -> None:
        started = time.perf_counter()
        await provider.load()
        key = f"{role} {_describe(provider)}"
        done[key] = time.perf_counter() - started
        if not err.is_terminal:
            err.print(f"loaded {key} in {done[key]:.1f} s", style="dim")
        refresh()

    started = time.perf_counter()
    if err.is_terminal:
        with Live(render(), console=err, transient=False, refresh_per_second=8) as live:
            async with anyio.create_task_group() as tg:
                for role, provider in todo:
                    tg.start_soon(load, role, provider, lambda: live.update(render()))
    else:
        err.print("loading offline models ...", style="dim")
        async with anyio.create_task_group() as tg:
            for role, provider in todo:
                tg.start_soon(load, role, provider, lambda: None)
    err.print(f"models ready in {time.perf_counter() - started:.1f} s", style="dim")


# --- audio in -------------------------------------------------------------------


def _read_input(path: Path) -> tuple[bytes, float]:
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


async def _recorded(pcm: bytes, *, realtime: bool = False) -> AsyncIterator[bytes]:
    """Recorded audio, fed as fast as the STT takes it, or at its own pace with ``realtime``."""
    started = time.perf_counter()
    sent = 0.0
    for chunk in chunk_pcm(pcm, STT_FORMAT, FEED_CHUNK_MS):
        if realtime:
            await anyio.sleep(max(0.0, started + sent - time.perf_counter()))
            sent += STT_FORMAT.duration(len(chunk))
        yield chunk
        await anyio.lowlevel.checkpoint()


# --- showing events ----------------------------------------------------------------


def _event_json(event: Event) -> str:
    data = event.to_dict()
    if isinstance(event, AudioChunk):  # summarised: the samples go to --out, not the terminal
        del data["audio"]
        data["bytes"] = len(event.audio)
        data["duration_ms"] = round(event.format.duration(len(event.audio)) * 1000, 3)
    return json.dumps(data, ensure_ascii=False)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


@dataclass
class _Outcome:
    """What a session produced, for the summary, the WAV and the exit code."""

    audio: list[bytes] = field(default_factory=list)
    audio_format: AudioFormat | None = None
    metrics: list[Metrics] = field(default_factory=list)
    errors: list[ErrorEvent] = field(default_factory=list)
    finish: str | None = None
    progress: list[FormProgress] = field(default_factory=list)
    complete: FormComplete | None = None
    _gap: bool = False

    def add_audio(self, event: AudioChunk) -> None:
        if self._gap and self.audio:
            self.audio.append(bytes(event.format.bytes_for(REPLY_GAP_MS)))
        self._gap = False
        self.audio.append(event.audio)
        self.audio_format = event.format

    def end_reply(self) -> None:
        self._gap = True

    @property
    def audio_seconds(self) -> float:
        fmt = self.audio_format
        return 0.0 if fmt is None else fmt.duration(sum(map(len, self.audio)))

    @property
    def exit_code(self) -> int:
        return EXIT_SESSION_ERROR if self.errors or self.finish == "error" else EXIT_OK


class _View:
    """Prints a session's events: a live transcript for people, or JSON lines.

    Recorded audio is heard faster than it is answered, so a user turn can
    arrive while an earlier reply is still being spoken. The transcript holds
    such a turn back until its own reply starts, so it reads in conversation
    order (``--json`` prints the events as they come). ``opening``: the
    policy speaks first (a form's greeting), so turns wait for that too.
    """

    def __init__(
        self, out: Console, *, as_json: bool, outcome: _Outcome, opening: bool = False
    ) -> None:
        self.out = out
        self.as_json = as_json
        self.outcome = outcome
        self._live: Live | None = None
        self._speaking = False  # a bot line is open (deltas printed inline)
        self._in_reply = opening  # between a reply's first output and its end
        self._waiting: deque[UserTurn] = deque()  # turns heard during a reply
        self._turns_shown = 0
        self._replies_done = 0  # user turns answered (metrics seen)

    def close(self) -> None:
        self._stop_live()
        self._end_speech()
        while self._waiting:
            self._show_turn(self._waiting.popleft())

    def show(self, event: Event) -> None:
        outcome = self.outcome
        if isinstance(event, AudioChunk):
            outcome.add_audio(event)
        elif isinstance(event, AssistantReply | Interrupted):
            outcome.end_reply()
        elif isinstance(event, Metrics):
            outcome.metrics.append(event)
        elif isinstance(event, ErrorEvent):
            outcome.errors.append(event)
        elif isinstance(event, Finish):
            outcome.finish = event.reason
        elif isinstance(event, FormProgress):
            outcome.progress.append(event)
        elif isinstance(event, FormComplete):
            outcome.complete = event
        if self.as_json:
            typer.echo(_event_json(event))
        else:
            self._print(event)

    # -- the transcript --------------------------------------------------------

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _end_speech(self) -> None:
        if self._speaking:
            self.out.print()
            self._speaking = False

    def _show_turn(self, event: UserTurn) -> None:
        self._turns_shown += 1
        self.out.print(Text.assemble(("you  › ", "bold cyan"), event.content))

    @property
    def _busy(self) -> bool:
        """A reply is going on or still due: a new user turn must wait to be shown."""
        return self._in_reply or bool(self._waiting) or self._turns_shown > self._replies_done

    def _start_reply(self) -> None:
        """First output of a reply: show the user turn it answers, if held back."""
        if self._in_reply:
            return
        self._in_reply = True
        if self._waiting and self._turns_shown < self._replies_done + 1:
            self._show_turn(self._waiting.popleft())

    def _print(self, event: Event) -> None:
        out = self.out
        if isinstance(event, AudioChunk | Session | SpeechStarted | TranscriptFinal):
            return
        if isinstance(event, TranscriptInterim):
            if out.is_terminal and not self._busy:
                line = Text.assemble(("you  › ", "bold cyan"), (event.content + " …", "dim"))
                if self._live is None:
                    self._live = Live(line, console=out, transient=True, auto_refresh=False)
                    self._live.start()
                self._live.update(line, refresh=True)
            return
        self._stop_live()
        if isinstance(event, UserTurn):
            if self._busy:
                self._waiting.append(event)
            else:
                self._show_turn(event)
        elif isinstance(event, AssistantDelta):
            self._start_reply()
            if not self._speaking:
                out.print(Text("bot  › ", style="bold green"), end="")
                self._speaking = True
            out.print(Text(event.content), end="")
        elif isinstance(event, AssistantReply):
            self._start_reply()
            if not self._speaking and event.content:
                out.print(Text.assemble(("bot  › ", "bold green"), event.content), end="")
                self._speaking = True
            if event.interrupted:
                if not self._speaking:
                    out.print(Text("bot  ›", style="bold green"), end="")
                    self._speaking = True
                out.print(Text(" [interrupted]", style="yellow"), end="")
            self._end_speech()
            self._in_reply = False
        elif isinstance(event, Interrupted):
            pass  # the reply's own `assistant` event (interrupted=True) follows and says so
        elif isinstance(event, Metrics):
            self._end_speech()
            self._in_reply = False
            while self._waiting and self._turns_shown < event.turn:
                self._show_turn(self._waiting.popleft())
            self._replies_done = max(self._replies_done, event.turn)
            out.print(_metrics_line(event), style="dim")
        elif isinstance(event, FormProgress):
            self._start_reply()
            value = json.dumps(event.value, ensure_ascii=False)
            out.print(
                Text(f"     ✓ {event.field} = {value} ({event.answered}/{event.total})", "green")
            )
        elif isinstance(event, FormComplete):
            self._start_reply()
            out.print(Text(f"     form {event.form!r} complete", style="bold green"))
        elif isinstance(event, ErrorEvent):
            self._end_speech()
            fatal = "" if event.recoverable else " (session ends)"
            out.print(Text(f"error: {event.stage}: {event.message}{fatal}", style="bold red"))
        elif isinstance(event, Finish):
            self.close()
            out.print(Text(f"session finished: {event.reason}", style="dim"))


def _metrics_line(m: Metrics) -> str:
    tokens = ""
    if m.prompt_tokens is not None or m.completion_tokens is not None:
        tokens = f" · tokens {m.prompt_tokens or 0} in / {m.completion_tokens or 0} out"
    heard = ""
    if m.end_of_speech_to_first_audio_ms is not None:
        heard = (
            f"end of speech → first audio {_ms(m.end_of_speech_to_first_audio_ms)} "
            f"(STT endpointing {_ms(m.stt_endpoint_ms)}) · "
        )
    return (
        f"     turn {m.turn}: {heard}end of turn → first audio "
        f"{_ms(m.end_of_turn_to_first_audio_ms)} "
        f"(→ first token {_ms(m.end_of_turn_to_first_token_ms)}, "
        f"LLM first token {_ms(m.llm_ttft_ms)}, TTS first audio {_ms(m.tts_ttfb_ms)}){tokens}"
    )


def _latency_table(metrics: Sequence[Metrics]) -> Table:
    table = Table(title="latency per turn", title_justify="left", show_edge=False)
    for header in (
        "turn",
        "end of speech → first audio",
        "STT endpointing",
        "end of turn → first token",
        "end of turn → first audio",
        "LLM first token",
        "TTS first audio",
        "tokens in/out",
    ):
        table.add_column(header, justify="right")
    for m in metrics:
        tokens = (
            "-"
            if m.prompt_tokens is None and m.completion_tokens is None
            else f"{m.prompt_tokens or 0}/{m.completion_tokens or 0}"
        )
        table.add_row(
            str(m.turn),
            _ms(m.end_of_speech_to_first_audio_ms),
            _ms(m.stt_endpoint_ms),
            _ms(m.end_of_turn_to_first_token_ms),
            _ms(m.end_of_turn_to_first_audio_ms),
            _ms(m.llm_ttft_ms),
            _ms(m.tts_ttfb_ms),
            tokens,
        )
    return table


# --- running a session --------------------------------------------------------------


async def _session(
    providers: _Providers,
    policy: Policy,
    audio: AsyncIterator[bytes],
    view: _View,
    *,
    session_id: str | None = None,
    barge_in: bool = False,
    realtime_lead: float | None = None,
    on_event: Callable[[Event], Awaitable[None]] | None = None,
) -> None:
    from voicepipe.pipeline import Pipeline

    pipeline = Pipeline(
        stt=providers.stt,
        llm=providers.llm,
        tts=providers.tts,
        policy=policy,
        input_format=STT_FORMAT,
        barge_in=barge_in,
        realtime_lead=realtime_lead,
        session_id=session_id,
    )
    try:
        async with pipeline.run(audio) as events:
            async for event in events:
                view.show(event)
                if on_event is not None:
                    await on_event(event)
    finally:
        view.close()
        await providers.aclose()


def _run_async(fn: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(fn)


def _write_reply(path: Path | None, outcome: _Outcome, err: Console) -> None:
    if path is None:
        return
    if outcome.audio_format is None:
        err.print(f"no reply audio: {path} not written", style="yellow")
        return
    try:
        write_wav(path, b"".join(outcome.audio), outcome.audio_format)
    except OSError as exc:
        raise CliError(f"{path}: cannot write: {exc.strerror or exc}") from None
    err.print(f"wrote {outcome.audio_seconds:.1f} s of reply audio to {path}", style="dim")


# --- voicepipe chat -------------------------------------------------------------------


@app.command()
def chat(
    input: Annotated[
        Path | None,
        typer.Argument(
            metavar="INPUT.wav",
            help="A WAV file of what the user says (one or several turns); any rate, "
            "mono or stereo, 16-bit PCM. Omit with --mic.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the assistant's audio (every reply) to this WAV."),
    ] = Path("reply.wav"),
    mic: Annotated[
        bool,
        typer.Option(
            "--mic",
            help="Talk live through the microphone and speaker instead of a file "
            "(needs sounddevice and PortAudio; Ctrl-C or saying goodbye ends it).",
        ),
    ] = False,
    stt: Annotated[SttChoice | None, _STT_OPT] = None,
    llm: Annotated[LlmChoice | None, _LLM_OPT] = None,
    tts: Annotated[TtsChoice | None, _TTS_OPT] = None,
    system: Annotated[
        str | None,
        typer.Option("--system", help="System prompt of the assistant.", show_default=False),
    ] = None,
    realtime: Annotated[
        bool,
        typer.Option(
            "--realtime",
            help="Feed INPUT.wav at its real pace, like a live caller, so each turn's "
            "latency is what a live session would see.",
        ),
    ] = False,
    as_json: Annotated[bool, _JSON_OPT] = False,
    fake_turns: Annotated[list[str] | None, _FAKE_TURN_OPT] = None,
) -> None:
    """Talk to the assistant: the user's turns come from INPUT.wav (or --mic).

    The recording is fed to the STT faster than real time (unless --realtime),
    without barge-in, so every turn is answered in order, even one spoken
    while the previous reply would still be playing; a later turn's latency
    then includes waiting for the earlier replies. The transcript, each reply
    and each turn's latency breakdown are printed, and the replies are
    written to --out. Saying "goodbye" ends the session.
    """

    def run() -> int:
        if mic and input is not None:
            raise CliError("give either INPUT.wav or --mic, not both")
        if not mic and input is None:
            raise CliError("missing INPUT.wav (or --mic for a live microphone session)")
        pcm: bytes = b""
        seconds = 0.0
        if input is not None:
            pcm, seconds = _read_input(input)
        providers = _build(stt, llm, tts, fake_turns)
        out_console = _console()
        err = _console(stderr=True)
        devices = _open_devices(providers.tts.output_format) if mic else None
        outcome = _Outcome()
        view = _View(out_console, as_json=as_json, outcome=outcome)
        policy = _conversation(system)
        if not as_json:
            source = "microphone" if mic else f"{input} ({seconds:.1f} s)"
            err.print(
                f"voicepipe chat · {source} · STT {_label(providers, 0)} · "
                f"LLM {_label(providers, 1)} · TTS {_label(providers, 2)}",
                style="dim",
            )

        async def main() -> None:
            await _load_models(providers, err)
            if devices is None:
                await _session(providers, policy, _recorded(pcm, realtime=realtime), view)
            else:
                await _mic_session(providers, policy, view, devices, err)

        _run_async(main)
        if not as_json and len(outcome.metrics) > 1:
            out_console.print(_latency_table(outcome.metrics))
        _write_reply(out, outcome, err)
        return outcome.exit_code

    _guard(run)


def _label(providers: _Providers, index: int) -> str:
    name, provider = providers.names[index], providers.all()[index][2]
    return f"{name} ({_describe(provider)})"


def _conversation(system: str | None) -> Policy:
    from voicepipe.policies.conversation import ConversationPolicy

    if system is None:
        return ConversationPolicy(farewell="Goodbye!")
    return ConversationPolicy(system, farewell="Goodbye!")


# --- --mic -----------------------------------------------------------------------------


@dataclass
class _Devices:
    sd: Any
    output_format: AudioFormat


def _open_devices(output_format: AudioFormat) -> _Devices:
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
    return _Devices(sd, output_format)


async def _mic_session(
    providers: _Providers, policy: Policy, view: _View, devices: _Devices, err: Console
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
                await _session(
                    providers,
                    policy,
                    listen(),
                    view,
                    barge_in=True,
                    realtime_lead=MIC_LEAD_S,
                    on_event=on_event,
                )
            tg.cancel_scope.cancel()


# --- voicepipe form -------------------------------------------------------------------


@contextmanager
def _database_errors(db: Path) -> Iterator[None]:
    """A file that is not a usable SQLite database is bad input (exit 2), not a crash."""
    import sqlite3

    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        raise CliError(f"{db}: cannot use it as the answers database: {exc}") from None


@form_app.command("run")
def form_run(
    form_file: Annotated[
        Path,
        typer.Argument(
            metavar="FORM.yaml",
            help="The form definition (.yaml, .yml or .json).",
            show_default=False,
        ),
    ],
    input: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT.wav",
            help="A WAV file of the user's answers, one turn each.",
            show_default=False,
        ),
    ],
    db: Annotated[
        Path,
        typer.Option("--db", help="SQLite file of the answers (created if missing)."),
    ] = Path("forms.db"),
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            help="Session id: a new one by default; an existing one resumes that session.",
            show_default=False,
        ),
    ] = None,
    stt: Annotated[SttChoice | None, _STT_OPT] = None,
    llm: Annotated[LlmChoice | None, _LLM_OPT] = None,
    tts: Annotated[TtsChoice | None, _TTS_OPT] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Also write the assistant's audio to this WAV.", show_default=False
        ),
    ] = None,
    as_json: Annotated[bool, _JSON_OPT] = False,
    fake_turns: Annotated[list[str] | None, _FAKE_TURN_OPT] = None,
) -> None:
    """Run the form agent on recorded answers, storing each accepted answer in --db.

    The agent asks the first unanswered question, then takes the recorded
    turns in order (fed faster than real time, without barge-in). Answers are
    saved as they are accepted: run again with the same --session to go on
    where it stopped.
    """

    def run() -> int:
        from voicepipe.forms import load_form

        form = load_form(form_file)
        pcm, _ = _read_input(input)
        providers = _build(stt, llm, tts, fake_turns)
        session_id = session or uuid.uuid4().hex[:12]
        out_console = _console()
        err = _console(stderr=True)
        outcome = _Outcome()
        view = _View(out_console, as_json=as_json, outcome=outcome, opening=True)
        if not as_json:
            err.print(
                f"voicepipe form · {form.title or form.name} ({len(form.fields)} fields) · "
                f"session {session_id} in {db}",
                style="dim",
            )
        record: dict[str, Any] = {}

        async def main() -> None:
            from voicepipe.forms import SQLiteFormStore, export_session
            from voicepipe.policies.form import FormPolicy

            async with SQLiteFormStore(db) as store:
                with _database_errors(db):
                    await store.get(session_id)  # a bad file fails here, before the session
                await _load_models(providers, err)
                async with FormPolicy(form, store=store, session_id=session_id) as policy:
                    await _session(providers, policy, _recorded(pcm), view, session_id=session_id)
                record.update(await export_session(store, session_id))

        with _database_errors(db):
            _run_async(main)
        if not as_json:
            answered = record.get("answers", {})
            if record.get("status") == "complete":
                out_console.print(
                    f"form complete: {json.dumps(answered, ensure_ascii=False)}", style="bold"
                )
            else:
                out_console.print(
                    f"form in progress: {len(answered)}/{len(form.fields)} answered; go on with "
                    f"--session {session_id}",
                    style="bold",
                )
            out_console.print(
                f"export with: voicepipe form export --db {db} --session {session_id}",
                style="dim",
            )
        _write_reply(out, outcome, err)
        return outcome.exit_code

    _guard(run)


@form_app.command("export")
def form_export(
    session: Annotated[
        str, typer.Option("--session", help="The session id to export.", show_default=False)
    ],
    db: Annotated[Path, typer.Option("--db", help="SQLite file of the answers.")] = Path(
        "forms.db"
    ),
    attempts: Annotated[
        bool, typer.Option("--attempts", help="Include every attempt (transcript, verdict).")
    ] = False,
) -> None:
    """Print a form session's answers as JSON."""

    def run() -> int:
        if not db.is_file():
            raise CliError(f"{db}: no such database")

        async def main() -> str:
            from voicepipe.forms import SQLiteFormStore, export_json

            async with SQLiteFormStore(db) as store:
                try:
                    return await export_json(store, session, attempts=attempts)
                except KeyError:
                    raise CliError(f"no form session {session!r} in {db}") from None

        with _database_errors(db):
            text = _run_async(main)
        typer.echo(text)
        return EXIT_OK

    _guard(run)


# --- voicepipe providers -----------------------------------------------------------------


@app.command()
def providers(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show which providers can run here, which are chosen by default, and why not the others."""

    def run() -> int:
        settings = load_settings()
        chosen = dict(zip(("stt", "llm", "tts"), choose(settings), strict=True))
        statuses = provider_status(settings)
        if as_json:
            typer.echo(
                json.dumps(
                    [
                        {
                            "role": s.role,
                            "name": s.name,
                            "available": s.available,
                            "reason": s.reason,
                            "default": chosen[s.role] == s.name,
                        }
                        for s in statuses
                    ],
                    indent=2,
                )
            )
            return EXIT_OK
        table = Table(show_edge=False)
        for header in ("role", "provider", "available", "why not / note"):
            table.add_column(header)
        for s in statuses:
            mark = Text("yes", style="green") if s.available else Text("no", style="red")
            note = s.reason
            if chosen[s.role] == s.name:
                note = f"default{'; ' + note if note else ''}"
            table.add_row(s.role.upper(), s.name, mark, note)
        _console().print(table)
        return EXIT_OK

    _guard(run)


def main() -> None:
    """The ``voicepipe`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
