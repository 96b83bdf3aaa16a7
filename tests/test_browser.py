"""The browser page end to end in a real headless Chromium (Debian's ``chromium``, driven
by Playwright): Chromium's fake microphone plays a WAV, the page streams it to the
example server on fake providers, and the transcript, the reply and its audio show up.
The page speaks Opus both ways when the browser can, PCM16 with ``/?audio=pcm16``; the
tests run both paths.

Screenshots and the page's bandwidth per minute go to ``test-artifacts/``.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import pytest

from tests.test_transport_websocket import Fakes, serve_on_loopback
from voicepipe.audio import AudioFormat, write_wav
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.server import Providers, ServerSettings, VoiceServer, create_app

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
# What this machine's Chromium needs (no sandbox as root, no network but loopback),
# and a fake microphone whose permission prompt is answered yes.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
WAIT_MS = 20_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),  # uvicorn and Playwright: asyncio
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium"),
]

QUESTION = "what is the capital of france"
ANSWER = "Paris is the capital of France."


def speech_wav(path: Path, *, pause_ms: int) -> Path:
    """What the fake microphone plays, on a loop: a loud warbling tone (speech to
    FakeSTT), then ``pause_ms`` of silence."""
    fmt = AudioFormat(48000, 1)
    t = np.arange(fmt.sample_rate * 8 // 10) / fmt.sample_rate
    voice = 8000 * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * np.sin(2 * np.pi * 4 * t))
    pcm = bytes(fmt.bytes_for(300)) + voice.astype("<i2").tobytes() + bytes(fmt.bytes_for(pause_ms))
    write_wav(path, pcm, fmt)
    return path


@asynccontextmanager
async def voice_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, f: Fakes, wav: Path, audio: str = "pcm16"
) -> AsyncIterator[Page]:
    """The example server on ``f`` and a Chromium page on it, microphone playing ``wav``.

    ``audio``: ``"pcm16"`` forces the page's PCM path (``/?audio=pcm16``), ``"opus"`` lets
    it pick Opus, ``"no-opus"`` hides MediaSource's Opus support (the page falls back)."""
    playwright = pytest.importorskip("playwright.async_api")
    for name in [n for n in os.environ if n.startswith("VOICEPIPE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no developer's .env
    forms = Path(__file__).parent.parent / "examples" / "forms"
    settings = ServerSettings(form_store=tmp_path / "forms.db", forms_dir=forms)
    app = create_app(settings, providers=Providers(f.stt, f.llm, f.tts, ("fake",) * 3))
    server: VoiceServer = app.state.server
    async with serve_on_loopback(app) as address, playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        try:
            page = await browser.new_page()
            if audio == "no-opus":  # a browser whose MediaSource cannot play WebM/Opus
                await page.add_init_script("MediaSource.isTypeSupported = () => false")
            await page.goto(f"http://{address}/" + ("?audio=pcm16" if audio == "pcm16" else ""))
            yield page
        finally:
            await browser.close()
        with anyio.fail_after(5):
            while server.sessions:  # noqa: ASYNC110 - the server has no "idle" event
                await anyio.sleep(0.01)


async def page_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(
        """() => ({
            sent: window.voicepipe.sentBytes,
            received: window.voicepipe.receivedBytes,
            cutOff: window.voicepipe.cutOff,
            opus: window.voicepipe.opus,
            minutes:
                ((window.voicepipe.ended || performance.now()) - window.voicepipe.started) / 60000,
            cutAt: window.voicepipe.cutAt,
            events: window.voicepipe.events,
            errors: document.querySelector("#errors").textContent,
        })"""
    )
    return state


async def test_page_talks_to_the_server_in_chromium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.async_api import expect

    f = Fakes(
        FakeSTT(itertools.chain([QUESTION], itertools.repeat("thank you"))),
        FakeLLM(lambda messages: ANSWER),
        FakeTTS(),
    )
    wav = speech_wav(tmp_path / "speech.wav", pause_ms=4000)
    async with voice_page(tmp_path, monkeypatch, f, wav, "no-opus") as page:
        await page.click("#start")
        user = page.locator(".line.user .final").first
        await expect(user).to_have_text(QUESTION, timeout=WAIT_MS)
        await expect(page.locator(".line.assistant").first).to_contain_text(ANSWER, timeout=WAIT_MS)
        await page.wait_for_function("window.voicepipe.receivedBytes > 0", timeout=WAIT_MS)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)
        colors = await page.evaluate(
            """() => [".final", ".interim"].map(
                (part) => getComputedStyle(document.querySelector(".line.user " + part)).color)"""
        )
        await page.click("#stop")
        status = page.locator("#status")
        await expect(status).to_have_text("finished (end_of_input)", timeout=WAIT_MS)
        state = await page_state(page)

    assert colors == ["rgb(17, 17, 17)", "rgb(153, 153, 153)"]  # final black, interim grey
    assert state["errors"] == ""
    assert state["opus"] is False  # no Opus playback: PCM16 both ways
    assert state["events"][0] == "session"
    assert state["events"][-1] == "finish"
    assert {"speech_started", "transcript_interim", "user_turn", "assistant"} <= set(
        state["events"]
    )
    assert state["received"] > 0
    # The page sent PCM16 at the announced rate, all of it reached the STT, which heard speech.
    assert f.stt.received_bytes == state["sent"] > 0
    assert f.llm.calls[0][-1].content == QUESTION
    assert f.stt.closed and f.llm.open_streams == 0 and f.tts.open_streams == 0


@pytest.mark.parametrize("audio", ["pcm16", "opus"])
async def test_barge_in_stops_playback_in_chromium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio: str
) -> None:
    from playwright.async_api import expect

    # An 8-second reply, and the microphone speaks again about 1.5 s after each turn ends.
    long_answer = "This answer goes on and on. " * 6
    f = Fakes(FakeSTT(itertools.repeat("tell me more")), FakeLLM(lambda m: long_answer), FakeTTS())
    wav = speech_wav(tmp_path / "speech.wav", pause_ms=1500)
    async with voice_page(tmp_path, monkeypatch, f, wav, audio) as page:
        await page.click("#start")
        interrupted = page.locator(".line.assistant.interrupted").first
        await expect(interrupted).to_be_visible(timeout=WAIT_MS)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"browser-barge-in-{audio}.png"), full_page=True)
        # Playback was paused at `paused`; after the cut the next reply plays: on Opus a
        # fresh stream, on PCM16 the playback AudioContext runs again.
        playing = {
            "opus": "window.voicepipe.audio.currentTime > 0.3",
            "pcm16": "window.voicepipe.out.state === 'running'",
        }
        await page.wait_for_function(f"() => {playing[audio]}", timeout=WAIT_MS)
        state = await page_state(page)

    assert state["opus"] is (audio == "opus")
    assert "interrupted" in state["events"]
    # Reply audio still scheduled (PCM) or a reply stream still playing (Opus) was stopped
    # at once, its buffer dropped.
    assert state["cutOff"] > 0
    if audio == "opus":
        assert state["cutAt"] > 0  # it was playing when it was cut
    assert state["errors"] == ""
    assert f.stt.closed and f.llm.open_streams == 0 and f.tts.open_streams == 0


@pytest.mark.parametrize("audio", ["pcm16", "opus"])
async def test_two_turns_and_bandwidth_in_chromium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio: str
) -> None:
    """Two turns on each audio path; the reply audio plays (the clock of the <audio> element
    or of the playback AudioContext advances); the page's bytes per minute each way go to
    ``test-artifacts/browser-bandwidth-{audio}.json``."""
    from playwright.async_api import expect

    f = Fakes(
        FakeSTT(itertools.chain([QUESTION], itertools.repeat("thank you"))),
        FakeLLM(lambda messages: ANSWER),
        FakeTTS(),
    )
    wav = speech_wav(tmp_path / "speech.wav", pause_ms=4000)
    # Opus: both reply streams played to their end, the second past its first second.
    played = "window.voicepipe.repliesPlayed >= 2 && window.voicepipe.audio.currentTime > 1"
    clock = played if audio == "opus" else "window.voicepipe.out.currentTime > 1"
    async with voice_page(tmp_path, monkeypatch, f, wav, audio) as page:
        await page.click("#start")
        replies = page.locator(".line.assistant")
        await expect(replies).to_have_count(2, timeout=WAIT_MS)
        await expect(replies.nth(1)).to_contain_text(ANSWER, timeout=WAIT_MS)
        await page.wait_for_function(f"() => {clock}", timeout=WAIT_MS)
        await page.click("#stop")
        await expect(page.locator("#status")).to_have_text(
            "finished (end_of_input)", timeout=WAIT_MS
        )
        state = await page_state(page)

    assert state["opus"] is (audio == "opus")
    assert state["errors"] == ""
    assert state["events"][0] == "session" and state["events"][-1] == "finish"
    assert [c[-1].content for c in f.llm.calls][:2] == [QUESTION, "thank you"]
    assert f.stt.closed and f.llm.open_streams == 0 and f.tts.open_streams == 0
    reply_pcm = sum(f.tts.audio_bytes(text) for text in f.tts.texts)
    if audio == "opus":
        # The STT heard 16 kHz PCM16 decoded from a far smaller WebM/Opus stream, and the
        # replies came as Opus, a small fraction of their PCM.
        assert 0 < state["sent"] < f.stt.received_bytes / 4
        assert 0 < state["received"] < reply_pcm / 4
    else:
        assert f.stt.received_bytes == state["sent"] > 0
        assert state["received"] == reply_pcm
    reply_minutes = reply_pcm / f.tts.output_format.bytes_for(60_000)
    figures = {
        "audio": audio,
        "conversation_minutes": round(state["minutes"], 3),
        "sent_kb_per_minute_of_conversation": round(state["sent"] / 1000 / state["minutes"]),
        "received_kb_per_minute_of_reply_audio": round(state["received"] / 1000 / reply_minutes),
        "received_kb_per_minute_of_conversation": round(
            state["received"] / 1000 / state["minutes"]
        ),
        "sent_bytes": state["sent"],
        "received_bytes": state["received"],
        "reply_audio_seconds": round(reply_minutes * 60, 2),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"browser-bandwidth-{audio}.json").write_text(json.dumps(figures, indent=2) + "\n")
