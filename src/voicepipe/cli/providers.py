"""``voicepipe providers``: which providers can run here, and which are the defaults."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from voicepipe.cli.errors import EXIT_OK, console, guard
from voicepipe.config import choose, load_settings, provider_status


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
        console().print(table)
        return EXIT_OK

    guard(run)
