"""The root ``voicepipe`` command: global options, one-line usage errors, the subcommands."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from voicepipe import __version__
from voicepipe.cli import chat, form, providers, serve
from voicepipe.cli.errors import EXIT_INTERRUPTED, EXIT_OK, console, print_error, state


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
            print_error("interrupted")
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
                print_error(f"{exc.format_message()}{hint}")
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
app.command()(chat.chat)
app.add_typer(form.app, name="form")
app.command()(providers.providers)
app.command()(serve.serve)


def _configure_logging(verbose: bool) -> None:
    """Quiet by default (errors are shown as events); ``--verbose`` shows the engines' logs."""
    logger = logging.getLogger("voicepipe")
    for old in list(logger.handlers):
        if getattr(old, "_voicepipe_cli", False):
            logger.removeHandler(old)
    new: logging.Handler
    if verbose:
        from rich.logging import RichHandler

        new = RichHandler(console=console(stderr=True), show_path=False)
        logger.setLevel(logging.INFO)
    else:
        new = logging.NullHandler()
        logger.setLevel(logging.NOTSET)
    setattr(new, "_voicepipe_cli", True)  # noqa: B010
    logger.addHandler(new)


def _version(value: bool) -> None:
    if value:
        console().print(f"voicepipe {__version__}")
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
    state.verbose = verbose
    _configure_logging(verbose)
