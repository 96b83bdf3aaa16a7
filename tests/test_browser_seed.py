"""The seed voice assistant's way of recording and playing, in a real headless Chromium,
against the example server with the offline STT (PocketSphinx).

``tests/pages/seed_page.html`` is our own page that behaves exactly as the seed React
frontend does (``new MediaRecorder(stream)`` with no type, ``start(250)``, every blob a
binary frame, replies appended to one ``MediaSource('audio/mpeg')`` buffer). It talks to
``/listen?input=webm&output=mp3``, the URL the seed's ``NEXT_PUBLIC_WEBSOCKET_URL`` would
hold. Its byte counts give the bandwidth figures in the closing note.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.test_browser import ARTIFACTS, CHROMIUM, FLAGS
from tests.test_transport_websocket import serve_on_loopback
from voicepipe.audio import AudioFormat, read_wav, resample, write_wav
from voicepipe.providers.fake import FakeLLM, FakeTTS
from voicepipe.server import Providers, ServerSettings, VoiceServer, create_app

PAGE = Path(__file__).parent / "pages" / "seed_page.html"
SAMPLE = Path(__file__).parent.parent / "examples" / "audio" / "capital_of_france.wav"
ANSWER = "Paris is the capital of France."
WAIT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),  # uvicorn and Playwright: asyncio
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium"),
]


def microphone(path: Path) -> Path:
    """What the fake microphone plays on a loop: the spoken question, then 5 s of quiet."""
    pcm, fmt = read_wav(SAMPLE)
    mic = AudioFormat(48000)
    speech = resample(pcm, fmt, mic)
    write_wav(path, bytes(mic.bytes_for(500)) + speech + bytes(mic.bytes_for(5000)), mic)
    return path


async def test_the_seed_pages_recorder_and_player_hold_a_conversation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    local = pytest.importorskip("voicepipe.providers.local.pocketsphinx")
    pytest.importorskip("av")
    for name in [n for n in os.environ if n.startswith("VOICEPIPE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    llm = FakeLLM(lambda messages: ANSWER)
    tts = FakeTTS(ms_per_char=20)  # a 0.6 s reply, played before the question comes again
    providers = Providers(local.PocketSphinxSTT(), llm, tts, ("pocketsphinx", "fake", "fake"))
    settings = ServerSettings(form_store=tmp_path / "forms.db")
    app = create_app(settings, providers=providers)
    server: VoiceServer = app.state.server
    wav = microphone(tmp_path / "mic.wav")
    state: dict[str, Any] = {}
    async with serve_on_loopback(app) as address, playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        try:
            page = await browser.new_page()
            await page.goto(f"http://{address}/health")  # our origin, for the Origin check
            await page.set_content(PAGE.read_text())
            await page.evaluate(f"startSeed('ws://{address}/listen?input=webm&output=mp3')")
            await page.wait_for_function(
                "seed.events.filter(e => e.type === 'assistant').length >= 2", timeout=WAIT_MS
            )
            start = await page.evaluate("seed.audio.currentTime")
            await page.wait_for_function(
                f"seed.audio.currentTime > {start} && seed.receivedBytes > 0", timeout=WAIT_MS
            )
            state = await page.evaluate(
                """() => ({events: seed.events, sent: seed.sentBytes, frames: seed.sentFrames,
                          received: seed.receivedBytes, mime: seed.mime, errors: seed.errors,
                          seconds: (performance.now() - seed.started) / 1000,
                          time: seed.audio.currentTime})"""
            )
            await page.evaluate("stopSeed()")
        finally:
            await browser.close()
        with anyio.fail_after(10):
            while server.sessions:  # noqa: ASYNC110 - the server has no "idle" event
                await anyio.sleep(0.05)

    types = [e["type"] for e in state["events"]]
    assert types[0] == "session" and "error" not in types, state["events"]
    finals = [e["content"] for e in state["events"] if e["type"] == "transcript_final"]
    assert len(finals) >= 2 and all(finals)  # two turns heard by the offline STT
    assert [e["content"] for e in state["events"] if e["type"] == "assistant"][:2] == [ANSWER] * 2
    assert state["mime"].startswith("audio/webm")  # what Chromium records with no type given
    assert state["time"] > 0 and state["received"] > 0 and not state["errors"]
    # The page's bandwidth (for the closing note), in test-artifacts/seed_bandwidth.json.
    pcm_up = 16000 * 2 * 60  # what the same microphone costs as PCM16 at 16 kHz
    figures = {
        "webm_opus_up_bytes_per_minute": round(state["sent"] / state["seconds"] * 60),
        "pcm16_16k_up_bytes_per_minute": pcm_up,
        "mp3_down_bytes": state["received"],
        "blobs": state["frames"],
        "seconds": round(state["seconds"], 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "seed_bandwidth.json").write_text(json.dumps(figures, indent=1))
    assert figures["webm_opus_up_bytes_per_minute"] < pcm_up / 2
