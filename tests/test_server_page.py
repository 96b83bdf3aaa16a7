"""The server's page in Chromium when the server restarts: refused with 1012 (a draining
worker), it reconnects after a short backoff and the conversation goes on."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, FLAGS, WAIT_MS, speech_wav
from tests.test_transport_websocket import serve_on_loopback
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.server import Providers, ServerSettings, VoiceServer, create_app
from voicepipe.server.drain import RECONNECT

pytestmark = [
    pytest.mark.browser,
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),  # uvicorn and Playwright: asyncio
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium"),
]


async def test_the_page_reconnects_after_a_restarting_server_refused_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    from playwright.async_api import expect

    for name in [n for n in os.environ if n.startswith("VOICEPIPE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    stt = FakeSTT(itertools.repeat("hello there"))
    providers = Providers(stt, FakeLLM(lambda messages: "Hi."), FakeTTS(), ("fake",) * 3)
    app = create_app(ServerSettings(form_store=tmp_path / "forms.db"), providers=providers)
    server: VoiceServer = app.state.server
    refusals = [RECONNECT, RECONNECT]  # two workers draining, then one that serves
    admit = server.refusal
    monkeypatch.setattr(server, "refusal", lambda ws: refusals.pop(0) if refusals else admit(ws))
    wav = speech_wav(tmp_path / "speech.wav", pause_ms=4000)
    async with serve_on_loopback(app) as address, playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        try:
            page = await browser.new_page()
            await page.goto(f"http://{address}/?audio=pcm16")
            await page.click("#start")
            reply = page.locator(".line.assistant").first
            await expect(reply).to_contain_text("Hi.", timeout=WAIT_MS)
            errors = await page.locator("#errors").text_content()
            retries = await page.evaluate("window.voicepipe.retries")
        finally:
            await browser.close()
    assert refusals == []  # refused twice, then served
    assert errors == ""  # a restart is not an error the user has to see
    assert retries == 0  # the session that got through reset the count
