"""Exit codes, and every failure of a command as one line on stderr with its exit code."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from voicepipe.config import ProviderUnavailableError
from voicepipe.errors import ProviderError, VoicepipeError

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


@dataclass
class State:
    """The root command's global options, read by every command."""

    verbose: bool = False


state = State()


class CliError(Exception):
    """A failure to report as one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def console(*, stderr: bool = False) -> Console:
    # soft_wrap: never break a line at the terminal width (keeps errors on one line).
    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def print_error(message: str) -> None:
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    console(stderr=True).print(Text.assemble(("voicepipe: error: ", "bold red"), one_line))


def fail(message: str, code: int) -> NoReturn:
    print_error(message)
    raise typer.Exit(code)


def guard(run: Callable[[], int]) -> None:
    """Run a command body; turn every failure into one line and an exit code."""
    try:
        code = run()
    except typer.Exit:
        raise
    except CliError as exc:
        fail(exc.message, exc.code)
    except ProviderUnavailableError as exc:
        fail(str(exc), EXIT_PROVIDER)
    except ProviderError as exc:
        # Raised outside a session: a model that does not load, a refused key at start.
        code = EXIT_SESSION_ERROR if exc.recoverable else EXIT_PROVIDER
        fail(f"{exc.stage.upper()} failed: {exc.message}", code)
    except VoicepipeError as exc:
        # ValueError kinds are bad input: a WAV, a form file, settings (ConfigError).
        fail(str(exc), EXIT_USAGE if isinstance(exc, ValueError) else EXIT_SESSION_ERROR)
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        if state.verbose:
            traceback.print_exc()
        hint = "" if state.verbose else " (run with --verbose for the traceback)"
        fail(f"unexpected {type(exc).__name__}: {exc}{hint}", EXIT_SESSION_ERROR)
    raise typer.Exit(code)
