"""``voicepipe chat --tools module:attr``: the tools are loaded, called and shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import FAKE, lines, recording, voicepipe, workdir  # noqa: F401 (fixture)
from voicepipe.providers.fake import FakeLLM


def test_chat_with_tools_books_a_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import voicepipe.cli.loading as loading
    from examples.tools import app

    monkeypatch.setenv("VOICEPIPE_BOOKINGS_DB", str(tmp_path / "bookings.db"))
    monkeypatch.setattr(app, "TOOLS", app.make_tools(tmp_path / "bookings.db"))
    llm = FakeLLM(app.scripted_model)  # a tool-calling model, scripted
    monkeypatch.setattr(loading, "make_llm", lambda name, settings: llm)
    wav = recording(tmp_path / "in.wav", 1)

    result = voicepipe(
        "chat", str(wav), *FAKE, "--tools", "examples.tools.app:TOOLS",
        "--fake-turn=book a table for two",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert "     tool book_table(" in "\n".join(out)
    assert any(line.startswith("     → book_table: booking 1: 2 people at 19:30") for line in out)
    assert llm.calls[0].tool_names == ["get_weather", "book_table"]
    assert app.Bookings(tmp_path / "bookings.db").rows() == [(1, "guest", 2, "19:30")]


def test_chat_tools_json_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import voicepipe.cli.loading as loading
    from examples.tools import app

    monkeypatch.setattr(app, "TOOLS", app.make_tools(tmp_path / "bookings.db"))
    monkeypatch.setattr(loading, "make_llm", lambda name, settings: FakeLLM(app.scripted_model))
    wav = recording(tmp_path / "in.wav", 1)

    result = voicepipe(
        "chat", str(wav), *FAKE, "--json", "--tools", "examples.tools.app:TOOLS",
        "--fake-turn=what is the weather in paris",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in lines(result.stdout)]
    tool_events = [e for e in events if e["type"] in ("tool_call", "tool_result")]
    assert tool_events == [
        {"type": "tool_call", "id": "call_1", "name": "get_weather",
         "arguments": {"city": "paris"}},
        {"type": "tool_result", "id": "call_1", "name": "get_weather", "ok": True,
         "content": "sunny, 22 C"},
    ]  # fmt: skip


def test_chat_tools_on_the_fake_llm_run_without_calls() -> None:
    wav = recording(Path("in.wav"), 1)
    result = voicepipe("chat", str(wav), *FAKE, "--tools", "examples.tools.app:get_weather")
    assert result.exit_code == 0, result.output
    assert lines(result.stdout)[:2] == ["you  › hello", "bot  › hello"]


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("examples.tools.app", "'examples.tools.app' must look like 'package.module:attribute'"),
        ("examples.tools.app:NOPE", "'examples.tools.app' has no attribute 'NOPE'"),
        ("no_such_module_here:x", "cannot import 'no_such_module_here'"),
    ],
)
def test_chat_bad_tools_reference_is_a_usage_error(reference: str, message: str) -> None:
    wav = recording(Path("in.wav"), 1)
    result = voicepipe("chat", str(wav), *FAKE, "--tools", reference)
    assert result.exit_code == 2
    assert "voicepipe: error: --tools: " in result.stderr
    assert message in result.stderr
