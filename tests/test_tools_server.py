"""The server's optional tools (``VOICEPIPE_TOOLS``): /listen's assistant calls them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples.tools import app as tools_app
from tests.test_server import clean_env, make_app  # noqa: F401 (fixture)
from tests.test_transport_websocket import Fakes, TestClient, drain
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.server import ServerSettings


def test_listen_calls_the_tools_of_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tools_app, "TOOLS", tools_app.make_tools(tmp_path / "bookings.db"))
    llm = FakeLLM(tools_app.scripted_model)
    f = Fakes(FakeSTT(), llm, FakeTTS())
    app = make_app(tmp_path, f, tools="examples.tools.app:TOOLS")
    with TestClient(app) as client, client.websocket_connect("/listen?mode=text") as ws:
        ws.send_text(json.dumps({"type": "text", "content": "book a table for four"}))
        ws.send_text(json.dumps({"type": "stop"}))
        got = drain(ws)

    kinds = got.frames
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("assistant")
    assert got.of("tool_call")[0]["arguments"] == {"name": "guest", "people": 4, "time": "19:30"}
    assert got.of("tool_result")[0]["ok"] is True
    assert tools_app.Bookings(tmp_path / "bookings.db").rows() == [(1, "guest", 4, "19:30")]
    assert llm.calls[0].tool_names == ["get_weather", "book_table"]


def test_a_bad_tools_setting_fails_at_startup(tmp_path: Path) -> None:
    f = Fakes(FakeSTT(), FakeLLM(), FakeTTS())
    with pytest.raises(ValueError, match=r"VOICEPIPE_TOOLS: .*has no attribute 'NOPE'"):
        make_app(tmp_path, f, tools="examples.tools.app:NOPE")
    assert ServerSettings(tools="a:b").tools == "a:b"
