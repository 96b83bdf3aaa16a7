"""Book a table by voice: two tools (a fake weather lookup, a booking written to SQLite).

Run: ``python -m examples.tools.app [--offline] [--db bookings.db]``. A recording
("I would like to book a table for two") goes through a Pipeline whose
ConversationPolicy has the two tools; the scripted model below asks for a
booking, the tool writes it to SQLite, and the reply confirms it.
``--offline`` hears the recording with PocketSphinx instead of FakeSTT.
The model is a :class:`FakeLLM` either way: the bundled offline model
(SmolLM2-135M) cannot call tools (docs/tools.md); with ``GROQ_API_KEY`` set,
``voicepipe chat --tools examples.tools.app:TOOLS`` talks to a real one.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated

import anyio
from pydantic import Field

from voicepipe import AudioChunk, ConversationPolicy, Finish, Pipeline
from voicepipe.audio import chunk_pcm, read_wav
from voicepipe.providers.base import Message
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS, ScriptItem, ToolCall
from voicepipe.tools import Tool, tool

RECORDING = Path(__file__).parent.parent / "audio" / "book_a_table.wav"
DB_PATH = Path(os.environ.get("VOICEPIPE_BOOKINGS_DB", "bookings.db"))

_WEATHER = {"paris": "sunny, 22 C", "london": "light rain, 14 C", "madrid": "clear, 27 C"}


def get_weather(city: str) -> str:
    """Today's weather in a city (a fake lookup: a few cities only)."""
    found = _WEATHER.get(city.strip().casefold())
    if found is None:
        raise LookupError(f"no weather data for {city}")
    return found


class Bookings:
    """Table bookings in a SQLite file (one short connection per call: tools run in threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)
        db.execute(
            "CREATE TABLE IF NOT EXISTS bookings (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " people INTEGER NOT NULL, time TEXT NOT NULL)"
        )
        return db

    def book_table(
        self,
        name: str,
        people: Annotated[int, Field(ge=1, le=12, description="number of guests")],
        time: Annotated[str, Field(pattern=r"^\d{1,2}:\d{2}$", description="24 h, like 19:30")],
    ) -> str:
        """Book a table at the restaurant for a number of people at a time today."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO bookings (name, people, time) VALUES (?, ?, ?)", (name, people, time)
            )
        db.close()
        return f"booking {cursor.lastrowid}: {people} people at {time} for {name}"

    def rows(self) -> list[tuple[int, str, int, str]]:
        with self._connect() as db:
            rows = db.execute("SELECT id, name, people, time FROM bookings ORDER BY id").fetchall()
        db.close()
        return rows


def make_tools(db_path: Path = DB_PATH) -> list[Tool]:
    """The app's two tools, writing bookings to ``db_path``."""
    return [tool(get_weather), tool(Bookings(db_path).book_table, name="book_table")]


TOOLS = make_tools()
"""For ``voicepipe chat --tools examples.tools.app:TOOLS`` (bookings in $VOICEPIPE_BOOKINGS_DB)."""

_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def scripted_model(messages: Sequence[Message]) -> ScriptItem:
    """A stand-in for a tool-calling model, enough for this demo."""
    last = messages[-1]
    if last.role == "tool":
        return f"Done: {last.content}. See you tonight!"
    words = last.content.lower().split()
    if "book" in words:
        people = next((_NUMBERS[w] for w in words if w in _NUMBERS), 2)
        args = {"name": "guest", "people": people, "time": "19:30"}
        return ["Let me book that.", ToolCall("book_table", args)]
    if "weather" in words:
        return ToolCall("get_weather", {"city": words[-1]})
    return "I can book a table or tell you the weather."


async def main(offline: bool, db_path: Path) -> list[tuple[int, str, int, str]]:
    pcm, fmt = read_wav(RECORDING)

    async def microphone() -> AsyncIterator[bytes]:
        for chunk in chunk_pcm(pcm, fmt, ms=20):
            yield chunk

    if offline:
        from voicepipe.providers.local.pocketsphinx import PocketSphinxSTT

        stt: object = PocketSphinxSTT()
    else:
        stt = FakeSTT(["i would like to book a table for two"])
    pipeline = Pipeline(
        stt=stt,  # type: ignore[arg-type]
        llm=FakeLLM(scripted_model),
        tts=FakeTTS(),
        policy=ConversationPolicy(tools=make_tools(db_path), end_call=True),
        input_format=fmt,
        barge_in=False,
    )
    async with pipeline.run(microphone()) as events:
        async for event in events:
            if isinstance(event, AudioChunk):
                continue
            if isinstance(event, Finish):
                print("finish", event.reason)
            else:
                detail = {k: v for k, v in event.to_dict().items() if k != "type"}
                print(event.type, detail.get("content", detail.get("name", "")))
    rows = Bookings(db_path).rows()
    for row in rows:
        print("booked", *row)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--offline", action="store_true", help="hear the recording with PocketSphinx"
    )
    parser.add_argument("--db", type=Path, default=DB_PATH, help="the SQLite file of bookings")
    options = parser.parse_args()
    anyio.run(main, options.offline, options.db)
