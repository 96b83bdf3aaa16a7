"""The Pipeline on fake providers: event order and content, failures, and cleanup."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest

from tests.support import FORMAT, chunks, collect, of_type, silence, tone, types, utterance
from voicepipe import (
    AssistantDelta,
    AssistantReply,
    AudioChunk,
    AudioFormat,
    BargeIn,
    ConversationPolicy,
    ErrorEvent,
    Event,
    Finish,
    FormProgress,
    Interrupted,
    Message,
    Metrics,
    Pipeline,
    PolicyContext,
    ProviderError,
    Reply,
    Session,
    Usage,
    UserTurn,
)
from voicepipe.providers.base import Emit
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.streams import closing
from voicepipe.testing import assert_session_ok

pytestmark = pytest.mark.anyio


async def gated_turns(turns: int, gate: list[anyio.Event]) -> AsyncIterator[bytes]:
    """Audio of ``turns`` utterances; before each but the first, wait for its gate."""
    for index in range(turns):
        if index:
            await gate[index - 1].wait()
        async for chunk in chunks(utterance()):
            yield chunk


async def test_two_turn_conversation_event_order() -> None:
    stt = FakeSTT(["hello there", "what time is it"])
    llm = FakeLLM(["Hi! Nice to meet you.", "It is noon."])
    tts = FakeTTS()
    replied = [anyio.Event()]
    pipeline = Pipeline(stt=stt, llm=llm, tts=tts, input_format=FORMAT)
    events: list[Event] = []
    async with pipeline.run(gated_turns(2, replied)) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, Metrics):
                replied[0].set()
    assert_session_ok(events, stt=stt, llm=llm, tts=tts)

    assert types(events) == [
        "session",
        "speech_started", "transcript_interim", "transcript_interim",
        "transcript_final", "user_turn",
        "assistant_delta", "audio", "assistant_delta", "audio", "assistant", "metrics",
        "speech_started", "transcript_interim", "transcript_interim", "transcript_interim",
        "transcript_interim", "transcript_final", "user_turn",
        "assistant_delta", "audio", "assistant", "metrics",
        "finish",
    ]  # fmt: skip
    session = events[0]
    assert isinstance(session, Session)
    assert session.input_format == FORMAT
    assert session.output_format == tts.output_format
    assert [e.content for e in of_type(events, UserTurn)] == ["hello there", "what time is it"]
    assert [e.content for e in of_type(events, AssistantDelta)] == [
        "Hi!",
        " Nice to meet you.",
        "It is noon.",
    ]
    assert [e.content for e in of_type(events, AssistantReply)] == [
        "Hi! Nice to meet you.",
        "It is noon.",
    ]
    assert tts.texts == ["Hi!", "Nice to meet you.", "It is noon."]
    audio = b"".join(e.audio for e in of_type(events, AudioChunk))
    assert len(audio) == sum(tts.audio_bytes(t) for t in tts.texts)
    assert events[-1] == Finish(reason="end_of_input")
    # The LLM saw the system prompt and the conversation so far.
    assert [m.role for m in llm.calls[1]] == ["system", "user", "assistant", "user"]
    assert llm.calls[1][2].content == "Hi! Nice to meet you."
    assert stt.closed and llm.open_streams == 0 and tts.open_streams == 0


async def test_a_finished_session_leaves_no_cycle_of_its_objects_for_the_collector() -> None:
    # Freed as soon as it ends, not at the next collection: a server's finished
    # sessions would otherwise pile up in the collector's younger generations.
    # (A spoken reply's speaker and the session referred to each other.)
    stt, llm, tts = FakeSTT(["hello"]), FakeLLM(["Hi there."]), FakeTTS()
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        async with Pipeline(stt=stt, llm=llm, tts=tts).run(chunks(utterance())) as stream:
            events = await collect(stream)
        del stream
        gc.collect()
        left = sorted({type(o).__qualname__ for o in gc.garbage if _ours(o)})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    assert of_type(events, AssistantReply)[0].content == "Hi there."
    assert left == []


def _ours(thing: object) -> bool:
    return type(thing).__module__.startswith("voicepipe")


async def test_metrics_include_the_wait_for_the_end_of_speech() -> None:
    stt = FakeSTT(["hello"], silence_ms=300)
    async with Pipeline(stt=stt, llm=FakeLLM(["Hi."]), tts=FakeTTS()).run(
        chunks(utterance())
    ) as stream:
        events = await collect(stream)
    (metrics,) = of_type(events, Metrics)
    assert metrics.stt_endpoint_ms == 300
    assert metrics.end_of_turn_to_first_audio_ms is not None
    assert metrics.end_of_speech_to_first_audio_ms == pytest.approx(
        300 + metrics.end_of_turn_to_first_audio_ms, abs=0.01
    )


async def test_metrics_per_turn() -> None:
    llm = FakeLLM(["One. Two."])
    async with Pipeline(llm=llm, tts=FakeTTS()).run_text(["hi"]) as stream:
        events = await collect(stream)
    (metrics,) = of_type(events, Metrics)
    assert metrics.turn == 1
    for value in (
        metrics.end_of_turn_to_first_token_ms,
        metrics.end_of_turn_to_first_audio_ms,
        metrics.llm_ttft_ms,
        metrics.tts_ttfb_ms,
    ):
        assert value is not None and value >= 0
    assert metrics.end_of_turn_to_first_audio_ms >= metrics.end_of_turn_to_first_token_ms  # type: ignore[operator]
    assert metrics.completion_tokens == 2
    assert metrics.stt_endpoint_ms is None  # typed turns have no speech to end
    assert metrics.end_of_speech_to_first_audio_ms is None


async def test_fixed_replies_are_not_timed_as_llm_output() -> None:
    policy = ConversationPolicy(farewell="Bye now.")
    async with Pipeline(llm=FakeLLM(), tts=FakeTTS(), policy=policy).run_text(["bye"]) as stream:
        events = await collect(stream)
    (metrics,) = of_type(events, Metrics)
    assert metrics.llm_ttft_ms is None
    assert metrics.end_of_turn_to_first_token_ms is None
    assert metrics.end_of_turn_to_first_audio_ms is not None


async def test_text_mode_needs_no_stt_or_tts() -> None:
    llm = FakeLLM(["Hello back.", "Still here."])
    pipeline = Pipeline(llm=llm, policy=ConversationPolicy(greeting="Welcome!"))
    async with pipeline.run_text(["hello", "are you there"]) as stream:
        events = await collect(stream)
    assert types(events) == [
        "session",
        "assistant_delta", "assistant",
        "user_turn", "assistant_delta", "assistant_delta", "assistant", "metrics",
        "user_turn", "assistant_delta", "assistant_delta", "assistant", "metrics",
        "finish",
    ]  # fmt: skip
    assert [e.content for e in of_type(events, AssistantReply)] == [
        "Welcome!",
        "Hello back.",
        "Still here.",
    ]
    assert not of_type(events, AudioChunk)


async def test_async_iterable_of_text_turns() -> None:
    async def turns() -> AsyncIterator[str]:
        yield "one"
        yield "two"

    async with Pipeline(llm=FakeLLM()).run_text(turns()) as stream:
        events = await collect(stream)
    assert [e.content for e in of_type(events, AssistantReply)] == ["one", "two"]  # echo


async def test_run_without_stt_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"needs stt=.*run_text"):
        async with Pipeline(llm=FakeLLM()).run(chunks(b"")):
            pass


async def test_goodbye_ends_the_session_after_the_farewell() -> None:
    llm = FakeLLM(["Sure."])
    policy = ConversationPolicy(farewell="See you soon.")
    stt = FakeSTT(["tell me a joke", "okay, bye!", "this is never heard"])
    replied = [anyio.Event(), anyio.Event()]
    pipeline = Pipeline(stt=stt, llm=llm, tts=FakeTTS(), policy=policy)
    events: list[Event] = []
    async with pipeline.run(gated_turns(3, replied)) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, Metrics):
                replied[event.turn - 1].set()
    assert_session_ok(events, stt=stt, llm=llm)
    assert [e.content for e in of_type(events, AssistantReply)] == ["Sure.", "See you soon."]
    assert events[-1] == Finish(reason="goodbye")
    assert len(llm.calls) == 1  # the goodbye did not go to the LLM
    assert stt.closed


async def test_goodbye_without_farewell_finishes_silently() -> None:
    async with Pipeline(llm=FakeLLM()).run_text(["Goodbye.", "never read"]) as stream:
        events = await collect(stream)
    assert types(events) == ["session", "user_turn", "metrics", "finish"]
    assert events[-1] == Finish(reason="goodbye")


async def test_memory_window_limits_what_the_llm_sees() -> None:
    llm = FakeLLM(["a1", "a2", "a3"])
    policy = ConversationPolicy("SYS", memory_size=2)
    async with Pipeline(llm=llm, policy=policy).run_text(["u1", "u2", "u3"]) as stream:
        await collect(stream)
    assert llm.calls[0] == [Message("system", "SYS"), Message("user", "u1")]
    assert llm.calls[1] == [
        Message("system", "SYS"),
        Message("assistant", "a1"),
        Message("user", "u2"),
    ]
    assert llm.calls[2] == [
        Message("system", "SYS"),
        Message("assistant", "a2"),
        Message("user", "u3"),
    ]


async def test_barge_in_cancels_llm_and_tts_and_keeps_only_what_was_spoken() -> None:
    # The first sentence's second audio chunk would take 10 s: the reply is
    # surely still playing when the user speaks again.
    tts = FakeTTS(chunk_ms=300, chunk_delay=10)
    llm = FakeLLM(["First sentence here. Second sentence never heard.", "Okay."], token_delay=0.001)
    stt = FakeSTT(["tell me everything", "stop"])
    first_audio = anyio.Event()
    # The old rule, kept as an option: any speech cuts at once (the default
    # pauses first; see tests/test_turns_pipeline.py).
    pipeline = Pipeline(stt=stt, llm=llm, tts=tts, barge_in=BargeIn.any_speech())
    events: list[Event] = []
    async with pipeline.run(gated_turns(2, [first_audio])) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, AudioChunk):
                first_audio.set()
    assert_session_ok(events, stt=stt, llm=llm, tts=tts)

    sequence = types(events)
    barge = sequence.index("speech_started", sequence.index("audio"))
    # Interrupted comes right after speech started, so a client stops playback at once.
    assert sequence[barge : barge + 2] == ["speech_started", "interrupted"]
    assert "audio" not in sequence[barge : sequence.index("assistant", barge)]
    interrupted = of_type(events, Interrupted)[0]
    assert interrupted.content == "First sentence here."
    first_reply = of_type(events, AssistantReply)[0]
    assert first_reply.interrupted
    assert first_reply.content == "First sentence here."
    assert of_type(events, AssistantReply)[1].content == "Okay."
    # History holds only what the user heard.
    assert llm.calls[1][-2:] == [
        Message("assistant", "First sentence here."),
        Message("user", "stop"),
    ]
    assert llm.open_streams == 0 and tts.open_streams == 0
    assert events[-1] == Finish(reason="end_of_input")


async def test_barge_in_can_be_turned_off() -> None:
    tts = FakeTTS(chunk_ms=300, chunk_delay=0.05)
    llm = FakeLLM(["First sentence here. Second one.", "Okay."])
    stt = FakeSTT(["tell me everything", "stop"])
    first_audio = anyio.Event()
    pipeline = Pipeline(stt=stt, llm=llm, tts=tts, barge_in=False)
    events: list[Event] = []
    async with pipeline.run(gated_turns(2, [first_audio])) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, AudioChunk):
                first_audio.set()
    assert_session_ok(events, stt=stt, llm=llm, tts=tts)
    assert not of_type(events, Interrupted)
    assert [e.content for e in of_type(events, AssistantReply)] == [
        "First sentence here. Second one.",
        "Okay.",
    ]


async def test_llm_error_is_reported_and_the_session_goes_on() -> None:
    llm = FakeLLM([ProviderError("llm", "rate limited, try later"), "Back again."])
    async with Pipeline(llm=llm, tts=FakeTTS()).run_text(["one", "two"]) as stream:
        events = await collect(stream)
    errors = of_type(events, ErrorEvent)
    assert [(e.stage, e.message, e.recoverable) for e in errors] == [
        ("llm", "rate limited, try later", True)
    ]
    assert [e.content for e in of_type(events, AssistantReply)] == ["Back again."]
    assert events[-1] == Finish(reason="end_of_input")


class BreaksMidReply:
    """An LLM whose stream fails after its first sentence."""

    def __init__(self) -> None:
        self.closed = 0

    async def stream(
        self, messages: Sequence[Message], *, usage: Usage | None = None
    ) -> AsyncIterator[str]:
        try:
            yield "The first part. "
            yield "And then"
            raise ConnectionResetError("connection reset by peer")
        finally:
            self.closed += 1

    async def complete_json(self, messages: object, schema: object, **_: object) -> object:
        raise NotImplementedError


async def test_llm_failing_mid_reply_keeps_what_was_spoken() -> None:
    llm = BreaksMidReply()
    tts = FakeTTS()
    async with Pipeline(llm=llm, tts=tts).run_text(["hi"]) as stream:  # type: ignore[arg-type]
        events = await collect(stream)
    # The error is reported by the task reading the rest of the text while the first
    # sentence goes out: before or during its audio, as the tasks happen to run.
    assert types([e for e in events if e.type != "error"]) == [
        "session", "user_turn", "assistant_delta", "audio", "assistant", "metrics", "finish",
    ]  # fmt: skip
    assert types(events).index("error") < types(events).index("assistant")
    error = of_type(events, ErrorEvent)[0]
    assert error.stage == "llm" and "connection reset" in error.message and error.recoverable
    assert tts.texts == ["The first part."]
    assert llm.closed == 1


async def test_tts_failure_skips_that_sentence_only() -> None:
    tts = FakeTTS(fail_on=["Broken sentence."])
    llm = FakeLLM(["Good start. Broken sentence. Good end."])
    async with Pipeline(llm=llm, tts=tts).run_text(["hi"]) as stream:
        events = await collect(stream)
    assert [e.stage for e in of_type(events, ErrorEvent)] == ["tts"]
    assert [e.content for e in of_type(events, AssistantDelta)] == ["Good start.", " Good end."]
    reply = of_type(events, AssistantReply)[0]
    assert reply.content == "Good start. Good end."  # what was spoken


class FailingSTT:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def transcribe(self, audio: object, format: AudioFormat, emit: Emit) -> None:
        await emit(ErrorEvent(stage="stt", message="reconnecting", recoverable=True))
        raise self.error


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ProviderError("stt", "bad key: set DEEPGRAM_API_KEY", recoverable=False), "DEEPGRAM"),
        (OSError("network unreachable"), "OSError: network unreachable"),
    ],
)
async def test_stt_failure_ends_the_session_with_error_then_finish(
    error: Exception, message: str
) -> None:
    pipeline = Pipeline(stt=FailingSTT(error), llm=FakeLLM())
    async with pipeline.run(chunks(silence(100))) as stream:
        events = await collect(stream)
    assert types(events) == ["session", "error", "error", "finish"]
    first, last = of_type(events, ErrorEvent)
    assert first.recoverable
    assert not last.recoverable and message in last.message
    assert events[-1] == Finish(reason="error")


async def test_malformed_audio_is_reported_and_skipped() -> None:
    async def audio() -> AsyncIterator[bytes]:
        yield b"\x01\x02\x03"  # odd byte count
        yield "not bytes"  # type: ignore[misc]
        yield bytes(2_000_000)  # over the size limit
        async for chunk in chunks(utterance()):
            yield chunk

    stt = FakeSTT(["still works"])
    async with Pipeline(stt=stt, llm=FakeLLM()).run(audio()) as stream:
        events = await collect(stream)
    errors = of_type(events, ErrorEvent)
    assert [e.stage for e in errors] == ["input"] * 3
    assert all(e.recoverable for e in errors)
    assert "3 bytes" in errors[0].message
    assert "got str" in errors[1].message
    assert "over the 1048576-byte limit" in errors[2].message
    assert [e.content for e in of_type(events, AssistantReply)] == ["still works"]


async def test_leaving_early_closes_every_provider_stream(anyio_backend: str) -> None:
    tasks_before = len(asyncio.all_tasks()) if anyio_backend == "asyncio" else 0
    stt = FakeSTT(["talk to me"])
    llm = FakeLLM(["A long reply. With many sentences. That nobody hears."], token_delay=0.01)
    tts = FakeTTS(chunk_delay=0.01)
    closed = False

    async def audio() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            async for chunk in chunks(utterance()):
                yield chunk
            await anyio.sleep(3600)  # a live microphone that never ends
        finally:
            closed = True

    async with Pipeline(stt=stt, llm=llm, tts=tts).run(audio()) as stream:
        async for event in stream:
            if isinstance(event, AudioChunk):
                break
    assert stt.closed and llm.open_streams == 0 and tts.open_streams == 0
    assert closed, "the caller's audio iterator was closed"
    if anyio_backend == "asyncio":
        assert len(asyncio.all_tasks()) == tasks_before


async def test_caller_exception_propagates_as_itself_and_cleans_up() -> None:
    llm = FakeLLM(["One. Two. Three."], token_delay=0.01)
    tts = FakeTTS(chunk_delay=0.01)
    with pytest.raises(KeyError, match="boom"):
        async with Pipeline(llm=llm, tts=tts).run_text(["hi"]) as stream:
            async for event in stream:
                if isinstance(event, AudioChunk):
                    raise KeyError("boom")
    assert llm.open_streams == 0 and tts.open_streams == 0


async def test_cancellation_cleans_up() -> None:
    stt = FakeSTT(["hello"])
    llm = FakeLLM(["Short. Then a reply that takes forever to stream."], token_delay=0.05)
    tts = FakeTTS(chunk_delay=10)
    first_audio = anyio.Event()

    async def audio() -> AsyncIterator[bytes]:
        async for chunk in chunks(utterance()):
            yield chunk
        await anyio.sleep(3600)

    with anyio.CancelScope() as scope:
        async with Pipeline(stt=stt, llm=llm, tts=tts).run(audio()) as stream:
            async for event in stream:
                if isinstance(event, AudioChunk):
                    first_audio.set()
                    assert llm.open_streams == 1 and tts.open_streams == 1
                    scope.cancel()
    assert scope.cancelled_caught
    assert first_audio.is_set()
    assert stt.closed and llm.open_streams == 0 and tts.open_streams == 0


async def test_end_of_input_finishes_the_reply_in_progress() -> None:
    stt = FakeSTT(["hello"])
    llm = FakeLLM(["First. Second. Third."], token_delay=0.01)
    async with Pipeline(stt=stt, llm=llm, tts=FakeTTS()).run(chunks(utterance())) as stream:
        events = await collect(stream)
    assert of_type(events, AssistantReply)[0].content == "First. Second. Third."
    assert events[-1] == Finish(reason="end_of_input")


async def test_input_ending_mid_speech_still_ends_the_turn() -> None:
    stt = FakeSTT(["cut off"])
    async with Pipeline(stt=stt, llm=FakeLLM()).run(chunks(tone(300))) as stream:
        events = await collect(stream)
    assert [e.content for e in of_type(events, UserTurn)] == ["cut off"]


async def test_output_format_resamples_tts_audio() -> None:
    tts = FakeTTS(sample_rate=24000)
    out = AudioFormat(16000)
    async with Pipeline(llm=FakeLLM(["Hello there."]), tts=tts, output_format=out).run_text(
        ["hi"]
    ) as stream:
        events = await collect(stream)
    audio = of_type(events, AudioChunk)
    assert {a.format for a in audio} == {out}
    total = sum(len(a.audio) for a in audio)
    assert abs(total - out.bytes_for(len("Hello there.") * 50)) <= 8


async def test_realtime_pacing_keeps_order_and_content() -> None:
    tts = FakeTTS(ms_per_char=2)
    pipeline = Pipeline(llm=FakeLLM(["One. Two."]), tts=tts, realtime_lead=0.01)
    async with pipeline.run_text(["hi"]) as stream:
        events = await collect(stream)
    assert types(events) == [
        "session", "user_turn", "assistant_delta", "audio", "assistant_delta", "audio",
        "assistant", "metrics", "finish",
    ]  # fmt: skip


async def test_policy_errors_do_not_kill_the_session() -> None:
    class Flaky(ConversationPolicy):
        async def on_user_turn(self, text: str, ctx: PolicyContext) -> Reply | None:
            if text == "crash":
                raise RuntimeError("policy bug")
            return await super().on_user_turn(text, ctx)

    async with Pipeline(llm=FakeLLM(), policy=Flaky()).run_text(["crash", "fine"]) as stream:
        events = await collect(stream)
    assert [(e.stage, e.message) for e in of_type(events, ErrorEvent)] == [
        ("policy", "RuntimeError: policy bug")
    ]
    assert [e.content for e in of_type(events, AssistantReply)] == ["fine"]


async def test_two_pipelines_share_nothing() -> None:
    llm = FakeLLM()
    tts = FakeTTS()
    results: dict[str, list[str]] = {}

    async def one(name: str) -> None:
        async with Pipeline(llm=llm, tts=tts).run_text([name, name + " again"]) as stream:
            events = await collect(stream)
        results[name] = [e.content for e in of_type(events, AssistantReply)]

    async with anyio.create_task_group() as tg:
        for name in ("alpha", "beta", "gamma"):
            tg.start_soon(one, name)
    assert results == {n: [n, n + " again"] for n in ("alpha", "beta", "gamma")}


async def test_after_barge_in_paced_audio_does_not_wait_for_the_dropped_audio() -> None:
    # 60 s of paced reply audio is interrupted after its first chunk; the next
    # reply must start at once, not after the minute the client threw away.
    tts = FakeTTS(ms_per_char=4000, chunk_ms=1000)
    llm = FakeLLM(["Long answer.", "Ok."])
    stt = FakeSTT(["tell me everything", "stop"])
    first_audio = anyio.Event()
    pipeline = Pipeline(stt=stt, llm=llm, tts=tts, realtime_lead=0.5)
    said: list[str] = []
    with anyio.fail_after(30):  # a guard against a hang, not a timing assertion
        async with pipeline.run(gated_turns(2, [first_audio])) as stream:
            async for event in stream:
                if isinstance(event, AssistantDelta):
                    said.append(event.content)
                elif isinstance(event, AudioChunk):
                    first_audio.set()
                    if said[-1] == "Ok.":
                        break  # the second reply's audio came without waiting
    assert said == ["Long answer.", "Ok."]


async def test_barge_in_while_the_policy_decides_lets_the_decision_finish() -> None:
    # A policy that is still deciding (a form answer being judged and stored)
    # when the user speaks again: the decision completes and its events go
    # out, but the reply is not spoken over the user.
    deciding = anyio.Event()
    release = anyio.Event()
    done: list[tuple[str, str, bool]] = []

    class Slow(ConversationPolicy):
        async def on_user_turn(self, text: str, ctx: PolicyContext) -> Reply | None:
            if text == "my answer":
                deciding.set()
                await release.wait()
                return Reply(
                    "Stored. Next question?",
                    events=[FormProgress(field="age", value=42, answered=1, total=3)],
                )
            return Reply("Okay.")

        async def on_reply_done(self, text: str, *, spoken: str, interrupted: bool) -> None:
            done.append((text, spoken, interrupted))

    async def audio() -> AsyncIterator[bytes]:
        async for chunk in chunks(utterance()):
            yield chunk
        await deciding.wait()
        async for chunk in chunks(tone(200)):  # the user barges in mid-decision
            yield chunk
        release.set()
        async for chunk in chunks(silence(500)):
            yield chunk

    stt = FakeSTT(["my answer", "wait what"])
    tts = FakeTTS()
    async with Pipeline(stt=stt, llm=FakeLLM(), tts=tts, policy=Slow()).run(audio()) as stream:
        events = await collect(stream)
    sequence = types(events)
    assert sequence.index("interrupted") < sequence.index("form_progress")
    assert of_type(events, FormProgress)[0].value == 42
    assert done[0] == ("", "", True)  # decided, nothing spoken
    assert tts.texts == ["Okay."]  # only the reply to "wait what" was spoken


async def test_session_id_and_a_tiny_event_buffer() -> None:
    # A one-event buffer only adds back-pressure: every event still arrives, in order.
    pipeline = Pipeline(
        llm=FakeLLM(["One. Two. Three."]), tts=FakeTTS(), session_id="call-7", event_buffer=1
    )
    async with pipeline.run_text(["hi"]) as stream:
        events = await collect(stream)
    session = events[0]
    assert isinstance(session, Session)
    assert session.session_id == "call-7"
    assert [e.content for e in of_type(events, AssistantDelta)] == ["One.", " Two.", " Three."]
    assert events[-1] == Finish(reason="end_of_input")


class _LoggingTTS(FakeTTS):
    """A FakeTTS that logs when each sentence's synthesis starts and ends."""

    def __init__(self, log: list[str]) -> None:
        super().__init__(chunk_ms=20, chunk_delay=0.01)
        self.log = log

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.log.append(f"start {text}")
        async with closing(super().synthesize(text)) as chunks:
            async for chunk in chunks:
                yield chunk
        self.log.append(f"end {text}")


class _TaskCountingTTS(FakeTTS):
    """A FakeTTS that notes how many tasks are running when each sentence starts."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[int] = []

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.tasks.append(len(anyio.get_running_tasks()))
        async with closing(super().synthesize(text)) as chunks:
            async for chunk in chunks:
                yield chunk


async def test_a_reply_that_has_come_whole_is_spoken_without_a_task_to_read_it() -> None:
    # The player reads the reply text itself until a sentence is complete. A reply
    # that has all come by then needs nothing beside it; one still coming is read
    # on by a task of its own while the first sentence goes out.
    async def tasks_at_first_sentence(
        reply: str, greeting: str | None = None
    ) -> tuple[int, list[str]]:
        tts = _TaskCountingTTS()
        pipeline = Pipeline(
            stt=FakeSTT(["hi"]),
            llm=FakeLLM([reply]),
            tts=tts,
            policy=ConversationPolicy(greeting=greeting),
            barge_in=False,  # the caller speaks at once: the greeting is not cut
            input_format=FORMAT,
        )
        async with pipeline.run(chunks(utterance())) as stream:
            events = await collect(stream)
        assert tts.open_streams == 0
        return tts.tasks[0], [e.content for e in of_type(events, AssistantReply)]

    # (Without a full stop, the sentence is complete only once the text has ended.)
    whole, said = await tasks_at_first_sentence("all of it at once")
    assert said == ["all of it at once"]
    streamed, said = await tasks_at_first_sentence("First part here. Then more.")
    assert said == ["First part here. Then more."]
    assert streamed == whole + 1
    # A fixed line (the greeting) is whole from the start: one sentence needs no task,
    # the second of two is synthesized ahead beside the first.
    one, said = await tasks_at_first_sentence("and so on", greeting="Hello there.")
    assert said == ["Hello there.", "and so on"]
    two, said = await tasks_at_first_sentence("and so on", greeting="Hello. Welcome.")
    assert said == ["Hello. Welcome.", "and so on"]
    assert two == one + 1


async def test_the_next_sentence_is_synthesized_while_the_one_before_goes_out() -> None:
    log: list[str] = []
    tts = _LoggingTTS(log)
    llm = FakeLLM(["First one here. Second one. Third."])
    pipeline = Pipeline(stt=FakeSTT(["hi"]), llm=llm, tts=tts, input_format=FORMAT)
    async with pipeline.run(chunks(utterance())) as stream:
        events = await collect(stream)
    # The second sentence is synthesized while the first is being spoken (its
    # stream is ready first: it is shorter), and at most two at a time: the
    # third waits until the first is out.
    assert log == [
        "start First one here.",
        "start Second one.",
        "end Second one.",
        "end First one here.",
        "start Third.",
        "end Third.",
    ]
    assert [e.content.strip() for e in of_type(events, AssistantDelta)] == [
        "First one here.",
        "Second one.",
        "Third.",
    ]
    assert len(b"".join(e.audio for e in of_type(events, AudioChunk))) == sum(
        tts.audio_bytes(t) for t in tts.texts
    )
    assert llm.open_streams == 0 and tts.open_streams == 0
