"""The ``voicepipe`` command: voice sessions on recorded audio or a microphone.

A thin shell over the library: :mod:`voicepipe.config` picks and builds the
providers, :class:`voicepipe.Pipeline` runs the session, and this package
reads the WAV, prints the events and writes the reply audio. One module per
command (``chat``, ``form``, ``providers``), the shared terminal view in
``view``, provider loading in ``loading``, the microphone in ``mic``. See
``docs/cli.md`` for the commands, their options and the exit codes.
"""

from __future__ import annotations

from voicepipe.cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROVIDER,
    EXIT_SESSION_ERROR,
    EXIT_USAGE,
)
from voicepipe.cli.root import app

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PROVIDER",
    "EXIT_SESSION_ERROR",
    "EXIT_USAGE",
    "app",
    "main",
]


def main() -> None:
    """The ``voicepipe`` console script."""
    app()
