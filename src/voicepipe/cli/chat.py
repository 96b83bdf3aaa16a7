"""``voicepipe chat``: talk to the assistant from a WAV file or the microphone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voicepipe.cli.audio import read_input, recorded
from voicepipe.cli.errors import CliError, console, guard
from voicepipe.cli.loading import build, label, load_models
from voicepipe.cli.mic import mic_session, open_devices
from voicepipe.cli.options import (
    FAKE_TURN_OPT,
    JSON_OPT,
    LLM_OPT,
    STT_OPT,
    TTS_OPT,
    LlmChoice,
    SttChoice,
    TtsChoice,
)
from voicepipe.cli.session import run_async, run_session
from voicepipe.cli.view import Outcome, View, check_out, latency_table, write_reply

if TYPE_CHECKING:
    from voicepipe.policies.base import Policy


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
    stt: Annotated[SttChoice | None, STT_OPT] = None,
    llm: Annotated[LlmChoice | None, LLM_OPT] = None,
    tts: Annotated[TtsChoice | None, TTS_OPT] = None,
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
    as_json: Annotated[bool, JSON_OPT] = False,
    fake_turns: Annotated[list[str] | None, FAKE_TURN_OPT] = None,
    tools: Annotated[
        list[str] | None,
        typer.Option(
            "--tools",
            metavar="MODULE:ATTR",
            help="Give the assistant tools: a function or a list of functions to import, "
            "like examples.tools.app:TOOLS (repeatable; see docs/tools.md).",
            show_default=False,
        ),
    ] = None,
    end_call: Annotated[
        bool, typer.Option("--end-call", help="With --tools: the model may end the call.")
    ] = False,
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
        check_out(out)
        pcm: bytes = b""
        seconds = 0.0
        if input is not None:
            pcm, seconds = read_input(input)
        providers = build(stt, llm, tts, fake_turns)
        out_console = console()
        err = console(stderr=True)
        devices = open_devices(providers.tts.output_format) if mic else None
        outcome = Outcome()
        view = View(out_console, as_json=as_json, outcome=outcome)
        policy = conversation(system, tools or [], end_call=end_call)
        if not as_json:
            source = "microphone" if mic else f"{input} ({seconds:.1f} s)"
            err.print(
                f"voicepipe chat · {source} · STT {label(providers, 0)} · "
                f"LLM {label(providers, 1)} · TTS {label(providers, 2)}",
                style="dim",
            )

        async def main() -> None:
            await load_models(providers, err)
            if devices is None:
                await run_session(providers, policy, recorded(pcm, realtime=realtime), view)
            else:
                await mic_session(providers, policy, view, devices, err)

        run_async(main)
        if not as_json and len(outcome.metrics) > 1:
            out_console.print(latency_table(outcome.metrics))
        write_reply(out, outcome, err)
        return outcome.exit_code

    guard(run)


def conversation(
    system: str | None, tool_refs: list[str] | None = None, *, end_call: bool = False
) -> Policy:
    from voicepipe.policies.conversation import ConversationPolicy

    options: dict[str, Any] = {"farewell": "Goodbye!"}
    if tool_refs:
        from voicepipe.tools import load_tools

        try:
            options["tools"] = [t for ref in tool_refs for t in load_tools(ref)]
            options["end_call"] = end_call
        except (ValueError, TypeError) as exc:
            raise CliError(f"--tools: {exc}") from exc
    if system is None:
        return ConversationPolicy(**options)
    return ConversationPolicy(system, **options)
