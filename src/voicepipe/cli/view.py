"""Showing a session's events: the live transcript, JSON lines, the latency table, the WAV."""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from voicepipe.audio import AudioFormat, write_wav
from voicepipe.cli.errors import EXIT_OK, EXIT_SESSION_ERROR, CliError
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
    ToolCallEvent,
    ToolResultEvent,
    TranscriptFinal,
    TranscriptInterim,
    UserTurn,
)

REPLY_GAP_MS = 300


def event_json(event: Event) -> str:
    data = event.to_dict()
    if isinstance(event, AudioChunk):  # summarised: the samples go to --out, not the terminal
        del data["audio"]
        data["bytes"] = len(event.audio)
        data["duration_ms"] = round(event.format.duration(len(event.audio)) * 1000, 3)
    return json.dumps(data, ensure_ascii=False)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


@dataclass
class Outcome:
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


class View:
    """Prints a session's events: a live transcript for people, or JSON lines.

    Recorded audio is heard faster than it is answered, so a user turn can
    arrive while an earlier reply is still being spoken. The transcript holds
    such a turn back until its own reply starts, so it reads in conversation
    order (``--json`` prints the events as they come). ``opening``: the
    policy speaks first (a form's greeting), so turns wait for that too.
    """

    def __init__(
        self, out: Console, *, as_json: bool, outcome: Outcome, opening: bool = False
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
            typer.echo(event_json(event))
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
            out.print(metrics_line(event), style="dim")
        elif isinstance(event, FormProgress):
            self._start_reply()
            value = json.dumps(event.value, ensure_ascii=False)
            out.print(
                Text(f"     ✓ {event.field} = {value} ({event.answered}/{event.total})", "green")
            )
        elif isinstance(event, FormComplete):
            self._start_reply()
            out.print(Text(f"     form {event.form!r} complete", style="bold green"))
        elif isinstance(event, ToolCallEvent):
            self._start_reply()
            self._end_speech()
            args = event.arguments
            shown = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            out.print(Text(f"     tool {event.name}({shown})", style="magenta"))
        elif isinstance(event, ToolResultEvent):
            self._start_reply()
            self._end_speech()
            mark, style = ("→", "magenta") if event.ok else ("✗", "red")
            out.print(Text(f"     {mark} {event.name}: {event.content}", style=style))
        elif isinstance(event, ErrorEvent):
            self._end_speech()
            fatal = "" if event.recoverable else " (session ends)"
            out.print(Text(f"error: {event.stage}: {event.message}{fatal}", style="bold red"))
        elif isinstance(event, Finish):
            self.close()
            out.print(Text(f"session finished: {event.reason}", style="dim"))


def metrics_line(m: Metrics) -> str:
    tokens = ""
    if m.prompt_tokens is not None or m.completion_tokens is not None:
        tokens = f" · tokens {m.prompt_tokens or 0} in / {m.completion_tokens or 0} out"
    heard = ""
    if m.end_of_speech_to_first_audio_ms is not None:
        heard = (
            f"end of speech → first audio {ms(m.end_of_speech_to_first_audio_ms)} "
            f"(STT endpointing {ms(m.stt_endpoint_ms)}) · "
        )
    return (
        f"     turn {m.turn}: {heard}end of turn → first audio "
        f"{ms(m.end_of_turn_to_first_audio_ms)} "
        f"(→ first token {ms(m.end_of_turn_to_first_token_ms)}, "
        f"LLM first token {ms(m.llm_ttft_ms)}, TTS first audio {ms(m.tts_ttfb_ms)}){tokens}"
    )


def latency_table(metrics: Sequence[Metrics]) -> Table:
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
            ms(m.end_of_speech_to_first_audio_ms),
            ms(m.stt_endpoint_ms),
            ms(m.end_of_turn_to_first_token_ms),
            ms(m.end_of_turn_to_first_audio_ms),
            ms(m.llm_ttft_ms),
            ms(m.tts_ttfb_ms),
            tokens,
        )
    return table


def check_out(path: Path | None) -> None:
    """Refuse an ``--out`` that cannot be written before the session runs, not after it
    (its audio would be lost)."""
    if path is None:
        return
    if path.is_dir():
        raise CliError(f"--out {path}: is a directory; give a file name such as reply.wav")
    parent = path.parent
    if not parent.is_dir():
        raise CliError(f"--out {path}: no such directory {parent}; create it first")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CliError(f"--out {path}: not writable; choose another path")


def write_reply(path: Path | None, outcome: Outcome, err: Console) -> None:
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
