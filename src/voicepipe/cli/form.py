"""``voicepipe form run`` and ``voicepipe form export``: a form by voice, its answers as JSON."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from voicepipe.cli.audio import TurnGate, read_input, recorded
from voicepipe.cli.errors import EXIT_OK, CliError, console, guard
from voicepipe.cli.loading import build, load_models
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
from voicepipe.cli.view import Outcome, View, check_out, write_reply

app = typer.Typer(help="Fill in a form by voice, and export the answers.", no_args_is_help=True)


@contextmanager
def database_errors(db: Path) -> Iterator[None]:
    """A file that is not a usable SQLite database is bad input (exit 2), not a crash."""
    import sqlite3

    from voicepipe.forms import StoreError

    try:
        yield
    except (OSError, sqlite3.Error, StoreError) as exc:
        reason = str(exc).removeprefix(f"{db}: ")  # a StoreError names the file already
        raise CliError(f"{db}: cannot use it as the answers database: {reason}") from None


@app.command("run")
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
    stt: Annotated[SttChoice | None, STT_OPT] = None,
    llm: Annotated[LlmChoice | None, LLM_OPT] = None,
    tts: Annotated[TtsChoice | None, TTS_OPT] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Also write the assistant's audio to this WAV.", show_default=False
        ),
    ] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
    fake_turns: Annotated[list[str] | None, FAKE_TURN_OPT] = None,
) -> None:
    """Run the form agent on recorded answers, storing each accepted answer in --db.

    The agent asks the first unanswered question, then takes the recorded
    turns in order (fed faster than real time, without barge-in, but each
    answer only once the question before it is out, as a caller would). Answers are
    saved as they are accepted: run again with the same --session to go on
    where it stopped.
    """

    def run() -> int:
        from voicepipe.forms import load_form

        check_out(out)
        form = load_form(form_file)
        pcm, _ = read_input(input)
        providers = build(stt, llm, tts, fake_turns)
        session_id = session or uuid.uuid4().hex[:12]
        out_console = console()
        err = console(stderr=True)
        outcome = Outcome()
        view = View(out_console, as_json=as_json, outcome=outcome, opening=True)
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
                with database_errors(db):
                    await store.get(session_id)  # a bad file fails here, before the session
                await load_models(providers, err)
                async with FormPolicy(form, store=store, session_id=session_id) as policy:
                    gate = TurnGate(closed=True)  # until the first question is out
                    await run_session(
                        providers,
                        policy,
                        recorded(pcm, gate=gate),
                        view,
                        session_id=session_id,
                        on_event=gate.on_event,
                    )
                record.update(await export_session(store, session_id))

        with database_errors(db):
            run_async(main)
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
        write_reply(out, outcome, err)
        return outcome.exit_code

    guard(run)


@app.command("export")
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

        with database_errors(db):
            text = run_async(main)
        typer.echo(text)
        return EXIT_OK

    guard(run)
