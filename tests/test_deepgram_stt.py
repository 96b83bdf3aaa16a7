"""DeepgramSTT through the real deepgram-sdk against the loopback fake in deepgram_fake.py."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import nullcontext
from typing import Any

import anyio
import pytest

from tests.deepgram_fake import (
    DROP,
    SDK_WARNING_FILTER,
    TEST_KEY,
    FakeDeepgram,
    Script,
    raw,
    results,
    speech_started,
    utterance_end,
)
from voicepipe.audio import AudioFormat
from voicepipe.errors import ProviderError
from voicepipe.events import (
    ErrorEvent,
    SpeechStarted,
    TranscriptFinal,
    TranscriptInterim,
    UserTurn,
)
from voicepipe.providers.base import STT, STTEvent
from voicepipe.providers.deepgram import DeepgramSettings, DeepgramSTT

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
    pytest.mark.filterwarnings(SDK_WARNING_FILTER),
]

FMT = AudioFormat(16000, 1)
CHUNK_MS = 100
CHUNK_S = CHUNK_MS / 1000


def chunks(n: int) -> list[bytes]:
    """``n`` chunks of 100 ms, each filled with its own index so replays are identifiable."""
    return [bytes([i + 1]) * FMT.bytes_for(CHUNK_MS) for i in range(n)]


def make_stt(fake: FakeDeepgram, *, key: str = TEST_KEY, **kwargs: Any) -> DeepgramSTT:
    from deepgram import AsyncDeepgramClient

    client = AsyncDeepgramClient(api_key=key, environment=fake.environment())
    kwargs.setdefault("reconnect_backoff", 0.0)
    return DeepgramSTT(client=client, settings=DeepgramSettings(_env_file=None), **kwargs)


async def audio_of(parts: Sequence[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def run(stt: DeepgramSTT, parts: Sequence[bytes]) -> list[STTEvent]:
    events: list[STTEvent] = []

    async def emit(event: STTEvent) -> None:
        events.append(event)

    with anyio.fail_after(10):  # a hang guard, not a timing assertion
        await stt.transcribe(audio_of(parts), FMT, emit)
    return events


async def test_sends_options_as_query_and_token_header() -> None:
    expected = {
        "model": "nova-3",
        "language": "en",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
        "interim_results": "true",
        "endpointing": "300",
        "utterance_end_ms": "1000",
        "vad_events": "true",
        "smart_format": "true",
    }
    async with FakeDeepgram(expect_params=expected) as fake:
        stt = make_stt(fake, keyterms=["voicepipe", "Aura"])
        assert isinstance(stt, STT)
        await run(stt, chunks(2))
    assert fake.problems == []
    (conn,) = fake.connections
    assert conn.params == {**expected, "keyterm": "Aura"}
    assert conn.query["keyterm"] == ["voicepipe", "Aura"]
    assert conn.audio == chunks(2)


async def test_interim_final_and_speech_final_make_a_turn() -> None:
    script = {
        1: [speech_started(), results("hello")],
        2: [results("hello there", is_final=True, duration=0.2)],
        3: [results("how")],
        4: [
            results("how are you", is_final=True, speech_final=True, start=0.2, duration=0.2),
            utterance_end(),  # after speech_final: nothing waiting, nothing to do
        ],
    }
    async with FakeDeepgram([script]) as fake:
        events = await run(make_stt(fake), chunks(4))
    assert events == [
        SpeechStarted(),
        TranscriptInterim(content="hello"),
        TranscriptFinal(content="hello there"),
        TranscriptInterim(content="hello there how"),
        TranscriptFinal(content="how are you"),
        UserTurn(content="hello there how are you"),
    ]


async def test_utterance_end_ends_the_turn_when_endpointing_never_fires() -> None:
    script = {
        1: [speech_started(), results("first part", is_final=True)],
        2: [results("second part", is_final=True, start=0.1)],
        3: [utterance_end(0.2), utterance_end(0.2)],
        4: [speech_started(), results("next turn", is_final=True, speech_final=True, start=0.3)],
    }
    async with FakeDeepgram([script]) as fake:
        events = await run(make_stt(fake), chunks(4))
    assert events == [
        SpeechStarted(),
        TranscriptFinal(content="first part"),
        TranscriptFinal(content="second part"),
        UserTurn(content="first part second part"),
        SpeechStarted(),
        TranscriptFinal(content="next turn"),
        UserTurn(content="next turn"),
    ]
    # How long Deepgram had heard past the last word when it ended each turn:
    # 0.3-0.4 s of audio (it answers after frame 3, we may have read frame 4)
    # against a last word ending at 0.2 s; then a last word ending with the audio.
    first, second = (e for e in events if isinstance(e, UserTurn))
    assert first.endpoint_ms is not None
    assert 100 <= first.endpoint_ms <= 200
    assert second.endpoint_ms == 0


async def test_first_words_start_speech_once_per_turn_without_vad_events() -> None:
    script = {
        1: [results("one")],
        2: [results("one two"), results("one two", is_final=True, speech_final=True)],
        3: [results("three")],
        4: [results("three", is_final=True, speech_final=True, start=0.2)],
    }
    async with FakeDeepgram([script], expect_params={"vad_events": "false"}) as fake:
        events = await run(make_stt(fake, vad_events=False), chunks(4))
    assert fake.problems == []
    assert events == [
        SpeechStarted(),
        TranscriptInterim(content="one"),
        TranscriptInterim(content="one two"),
        TranscriptFinal(content="one two"),
        UserTurn(content="one two"),
        SpeechStarted(),
        TranscriptInterim(content="three"),
        TranscriptFinal(content="three"),
        UserTurn(content="three"),
    ]


async def test_empty_transcripts_are_ignored() -> None:
    script = {
        1: [results(""), results("", is_final=True)],
        2: [results("   ", is_final=True, speech_final=True)],  # nothing collected: no turn
        3: [results("hi", is_final=True), results("", is_final=True, speech_final=True)],
    }
    async with FakeDeepgram([script]) as fake:
        events = await run(make_stt(fake), chunks(3))
    assert events == [SpeechStarted(), TranscriptFinal(content="hi"), UserTurn(content="hi")]


async def test_noise_that_set_off_speech_started_does_not_swallow_the_next_one() -> None:
    script = {
        1: [speech_started()],  # noise: Deepgram finalises it with no words
        2: [results("", is_final=True, duration=0.2)],
        3: [speech_started(0.2), results("real words", is_final=True, speech_final=True)],
    }
    async with FakeDeepgram([script]) as fake:
        events = await run(make_stt(fake), chunks(3))
    assert events == [
        SpeechStarted(),
        SpeechStarted(),
        TranscriptFinal(content="real words"),
        UserTurn(content="real words"),
    ]


async def test_unknown_and_uninteresting_messages_are_skipped() -> None:
    script: Script = {
        1: [
            {"type": "SomethingNewFromDeepgram", "payload": [1, 2]},
            {"type": "Metadata", "request_id": "x"},
            {"type": "Error", "variant": "SchemaError", "description": "bad"},
            results("still fine", is_final=True, speech_final=True),
        ],
    }
    async with FakeDeepgram([script]) as fake:
        events = await run(make_stt(fake), chunks(1))
    assert events == [
        SpeechStarted(),
        TranscriptFinal(content="still fine"),
        UserTurn(content="still fine"),
    ]


async def test_end_of_input_finalizes_then_closes_and_keeps_the_last_words() -> None:
    script = {
        1: [results("last")],
        "Finalize": [results("last words", is_final=True, from_finalize=True, duration=0.2)],
    }
    async with FakeDeepgram([script]) as fake:
        events = await run(make_stt(fake), chunks(2))
    (conn,) = fake.connections
    assert conn.log == ["audio", "audio", "Finalize", "CloseStream"]
    assert conn.closed_normally
    assert events == [
        SpeechStarted(),
        TranscriptInterim(content="last"),
        TranscriptFinal(content="last words"),
        UserTurn(content="last words"),
    ]


async def test_keepalive_while_no_audio_flows() -> None:
    async with FakeDeepgram() as fake:
        stt = make_stt(fake, keepalive_interval=0.02)
        parts = chunks(2)

        async def slow_audio() -> AsyncIterator[bytes]:
            yield parts[0]
            await fake.wait_for("KeepAlive")
            yield parts[1]

        async def emit(event: STTEvent) -> None:
            pass

        with anyio.fail_after(10):
            await stt.transcribe(slow_audio(), FMT, emit)
    log = fake.connections[0].log
    assert log[0] == "audio"
    assert "KeepAlive" in log[1 : log.index("audio", 1)]
    assert log[-2:] == ["Finalize", "CloseStream"]
    assert fake.connections[0].audio == parts


async def test_reconnects_after_a_drop_and_replays_audio_since_the_last_final() -> None:
    first = {
        2: [results("hello", is_final=True, duration=2 * CHUNK_S)],
        4: [DROP],
    }
    second = {
        # The new connection's clock starts at the replayed audio. "hello" was
        # final but its turn had not ended: the replay is finalized at once.
        "Finalize:1": [
            results("world", is_final=True, from_finalize=True, duration=2 * CHUNK_S),
        ],
    }
    parts = chunks(6)
    async with FakeDeepgram([first, second]) as fake:
        events = await run(make_stt(fake), parts)
    assert len(fake.connections) == 2
    assert fake.connections[0].audio == parts[:4]
    assert fake.connections[1].audio == parts[2:]  # not parts[:2]: "hello" was final
    assert fake.connections[1].log[-2:] == ["Finalize", "CloseStream"]
    assert [type(e) for e in events] == [
        SpeechStarted,
        TranscriptFinal,
        ErrorEvent,
        TranscriptFinal,
        UserTurn,
    ]
    error = events[2]
    assert isinstance(error, ErrorEvent)
    assert error.stage == "stt"
    assert error.recoverable
    assert "reconnecting" in error.message
    assert events[-1] == UserTurn(content="hello world")


async def test_gives_up_after_bounded_reconnects() -> None:
    async with FakeDeepgram([{1: [DROP]}]) as fake:
        stt = make_stt(fake, max_reconnects=2)
        events: list[STTEvent] = []

        async def emit(event: STTEvent) -> None:
            events.append(event)

        with pytest.raises(ProviderError) as info, anyio.fail_after(10):
            await stt.transcribe(audio_of(chunks(3)), FMT, emit)
    assert fake.handshakes == 3
    assert info.value.stage == "stt"
    assert not info.value.recoverable
    assert "2 tries" in info.value.message
    assert [e.recoverable for e in events if isinstance(e, ErrorEvent)] == [True, True]


async def test_unreachable_server_is_retried_then_reported() -> None:
    async with FakeDeepgram() as fake:
        pass  # closed: its port now refuses connections
    events: list[STTEvent] = []

    async def emit(event: STTEvent) -> None:
        events.append(event)

    with pytest.raises(ProviderError) as info, anyio.fail_after(10):
        await make_stt(fake, max_reconnects=1).transcribe(audio_of(chunks(1)), FMT, emit)
    assert not info.value.recoverable
    assert "ConnectionRefusedError" in info.value.message
    assert len(events) == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_key_is_fatal_and_names_the_variable_not_the_key(status: int) -> None:
    async with FakeDeepgram(refuse=status) as fake:
        with pytest.raises(ProviderError) as info:
            await run(make_stt(fake), chunks(1))
    assert fake.handshakes == 1  # no retries with a bad key
    error = info.value
    assert (error.stage, error.status, error.recoverable) == ("stt", status, False)
    assert "DEEPGRAM_API_KEY" in error.message
    assert TEST_KEY not in str(error)
    assert TEST_KEY not in repr(error)
    assert error.__cause__ is None


async def test_wrong_key_is_refused_by_the_fake() -> None:
    async with FakeDeepgram() as fake:
        with pytest.raises(ProviderError, match="DEEPGRAM_API_KEY"):
            await run(make_stt(fake, key="not-the-key"), chunks(1))
    assert fake.problems == ["bad or missing Authorization header"]


async def test_audio_source_errors_propagate_unwrapped() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield chunks(1)[0]
        raise ValueError("microphone unplugged")

    async def emit(event: STTEvent) -> None:
        pass

    async with FakeDeepgram() as fake:
        with pytest.raises(ValueError, match="microphone unplugged"), anyio.fail_after(10):
            await make_stt(fake).transcribe(broken(), FMT, emit)


async def test_key_comes_from_the_environment_and_stays_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "env-secret-key")
    monkeypatch.setenv("DEEPGRAM_STT_MODEL", "nova-2")
    stt = DeepgramSTT(settings=DeepgramSettings(_env_file=None))
    assert stt.options.model == "nova-2"
    assert "env-secret-key" not in repr(stt)
    assert "env-secret-key" not in repr(DeepgramSettings(_env_file=None))


async def test_missing_key_says_where_to_put_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="DEEPGRAM_API_KEY") as info:
        DeepgramSTT(settings=DeepgramSettings(_env_file=None))
    assert not info.value.recoverable


async def test_utterance_end_needs_interim_results() -> None:
    with pytest.raises(ValueError, match="utterance_end_ms"):
        DeepgramSTT(api_key="k", interim_results=False)


async def test_importing_the_provider_does_not_import_the_sdk() -> None:
    code = (
        "import sys, voicepipe, voicepipe.providers.deepgram\n"
        "assert 'deepgram' not in sys.modules, 'SDK imported eagerly'\n"
    )
    await anyio.run_process([sys.executable, "-c", code])


async def test_server_errors_at_connect_are_retried_bad_options_are_not() -> None:
    async def emit(event: STTEvent) -> None:
        pass

    async with FakeDeepgram(refuse=503) as fake:
        with pytest.raises(ProviderError, match="HTTP 503"), anyio.fail_after(10):
            await make_stt(fake, max_reconnects=1).transcribe(audio_of(chunks(1)), FMT, emit)
    assert fake.handshakes == 2
    async with FakeDeepgram(refuse=400) as fake:
        with pytest.raises(ProviderError, match="HTTP 400") as info, anyio.fail_after(10):
            await make_stt(fake).transcribe(audio_of(chunks(1)), FMT, emit)
    assert fake.handshakes == 1
    assert (info.value.status, info.value.recoverable) == (400, False)


async def test_trio_gets_a_clear_error_not_a_crash() -> None:
    async def on_trio() -> str:
        async def emit(event: STTEvent) -> None:
            pass

        try:
            await DeepgramSTT(api_key="k").transcribe(audio_of(chunks(1)), FMT, emit)
        except ProviderError as exc:
            return exc.message
        return "no error"

    message = await anyio.to_thread.run_sync(lambda: anyio.run(on_trio, backend="trio"))
    assert "asyncio" in message


async def test_the_key_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    async with FakeDeepgram([{1: [DROP]}, {}]) as fake:
        await run(make_stt(fake), chunks(2))
    assert "Deepgram STT:" in caplog.text  # the reconnect was logged...
    assert "GET /v1/listen" in caplog.text  # ...and so was the handshake, headers and all
    assert TEST_KEY not in caplog.text


async def test_a_drop_between_a_turns_last_word_and_its_end_does_not_merge_turns() -> None:
    # The connection drops 100 ms after the turn's last final word, before
    # speech_final. The new connection replays only what followed the word; it
    # is asked to finalize the endpointing window (300 ms) after it, and that
    # window's empty final ends the held turn. The next utterance is a turn of
    # its own. No word is lost or repeated.
    first = {
        1: [speech_started(), results("hello there", is_final=True, duration=CHUNK_S)],
        2: [DROP],
    }
    second = {
        "Finalize:1": [results("", is_final=True, from_finalize=True, duration=3 * CHUNK_S)],
        4: [speech_started(), results("next one", is_final=True, start=0.3, duration=CHUNK_S)],
        5: [results("", is_final=True, speech_final=True, start=0.4, duration=CHUNK_S)],
    }
    parts = chunks(6)
    async with FakeDeepgram([first, second]) as fake:
        events = await run(make_stt(fake), parts)
    assert [e.content for e in events if isinstance(e, UserTurn)] == ["hello there", "next one"]
    assert [e.content for e in events if isinstance(e, TranscriptFinal)] == [
        "hello there",
        "next one",
    ]
    second_conn = fake.connections[1]
    assert second_conn.audio == parts[1:]  # the final's audio is not sent again
    assert second_conn.log[:4] == ["audio", "audio", "audio", "Finalize"]


@pytest.mark.parametrize("how", ["cancelled", "audio_fails"])
async def test_an_early_end_still_sends_close_stream(how: str) -> None:
    script = {2: [results("hi", is_final=True)]}
    heard = anyio.Event()

    async def live() -> AsyncIterator[bytes]:
        for part in chunks(2):
            yield part
        await heard.wait()
        if how == "audio_fails":
            raise ConnectionResetError("the caller's line dropped")
        await anyio.sleep_forever()

    async def emit(event: STTEvent) -> None:
        if isinstance(event, TranscriptFinal):
            heard.set()

    async with FakeDeepgram([script]) as fake:
        stt = make_stt(fake)
        fails = pytest.raises(ExceptionGroup) if how == "audio_fails" else nullcontext()
        with anyio.fail_after(10):  # a hang guard, not a timing assertion
            with fails, anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(stt.transcribe, live(), FMT, emit)
                    await heard.wait()
                    if how == "cancelled":
                        scope.cancel()
            await fake.wait_for("CloseStream")
    (conn,) = fake.connections
    assert conn.controls[-1] == "CloseStream"
    assert "Finalize" not in conn.controls  # not the end of input: nothing to flush


@pytest.mark.parametrize(
    "malformed",
    [
        raw("{not json"),
        raw("[" * 100_000 + "]" * 100_000),
        {"type": "Results", "is_final": True},
        {"type": "Results", "is_final": True, "channel": {}},
        {"type": "Results", "is_final": True, "channel": {"alternatives": [{"transcript": "x"}]}},
        {"type": "Results", "channel": {"alternatives": [{"transcript": 5}]}},
        {**results("hi", is_final=True), "start": 1e308, "duration": 1e308},
        {"type": "UtteranceEnd"},
    ],
    ids=[
        "not-json",
        "too-deep",
        "no-channel",
        "no-alternatives",
        "no-times",
        "number",
        "huge-times",
        "ue",
    ],
)
async def test_a_malformed_message_is_skipped_not_raised(malformed: dict[str, Any]) -> None:
    # Found by review: each of these escaped transcribe() as a bare JSONDecodeError,
    # TypeError, AttributeError or OverflowError, wrapped in two exception groups.
    script: Script = {
        1: [
            results("hello", is_final=True),
            malformed,
            results("still fine", is_final=True, speech_final=True),
        ]
    }
    async with FakeDeepgram([script]) as fake:
        events = await run(make_stt(fake), chunks(1))
    assert events == [
        SpeechStarted(),
        TranscriptFinal(content="hello"),
        TranscriptFinal(content="still fine"),
        UserTurn(content="hello still fine"),
    ]
    assert len(fake.connections) == 1
