"""examples/tools/app.py books a table by voice, on fakes and with PocketSphinx hearing it."""

from __future__ import annotations

import importlib.util
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def book(tmp_path: Path, *options: str) -> list[str]:
    db = tmp_path / "bookings.db"
    done = subprocess.run(
        [sys.executable, "-m", "examples.tools.app", "--db", str(db), *options],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    rows = sqlite3.connect(db).execute("SELECT name, people, time FROM bookings").fetchall()
    assert rows == [("guest", 2, "19:30")]
    return done.stdout.splitlines()


def test_the_example_books_a_table_on_fakes(tmp_path: Path) -> None:
    out = book(tmp_path)
    assert "user_turn i would like to book a table for two" in out
    assert out.index("tool_call book_table") < out.index(
        "tool_result booking 1: 2 people at 19:30 for guest"
    )
    assert any(line.startswith("assistant Let me book that. Done: booking 1") for line in out)
    assert "booked 1 guest 2 19:30" in out


@pytest.mark.skipif(
    importlib.util.find_spec("pocketsphinx") is None, reason="PocketSphinx is not installed"
)
def test_the_example_books_a_table_when_pocketsphinx_hears_it(tmp_path: Path) -> None:
    out = book(tmp_path, "--offline")
    assert "user_turn i would like to book a table for two" in out
    assert "tool_call book_table" in out
