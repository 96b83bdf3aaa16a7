"""How a session ends: a consumer leaving early, fatal policy errors, the policy's
close hook, and what the ``assistant`` event reports when a stage fails (issue 10
items 1-4, and the reply-emit race of issue 17)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence

import anyio
import anyio.lowlevel
import pytest

from tests.forms_support import INTAKE, StoreFactory
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
    Message,
    Metrics,
    Pipeline,
    PolicyContext,
    Reply,
    SpeechStarted,
    Usage,
)
from voicepipe.errors import PolicyError
from voicepipe.forms import Form
from voicepipe.policies.form import FormPolicy
from voicepipe.providers.base import Emit
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.streams import closing
from voicepipe.testing import assert_session_ok

pytestmark = pytest.mark.anyio


async def one_loud_chunk_then_wait() -> AsyncIterator[bytes]:
    """A live microphone: 20 ms of speech, then nothing, forever."""
    yield tone(20)
    await anyio.sleep_forever()


# -- item 1: leaving early is a normal end --------------------------------------


async def test_leaving_after_the_first_event_never_raises() -> None:
    # The reproduction, many times: the STT's emit used to hit the
    # closed event stream and come back as ExceptionGroup(BrokenResourceError).
    for _ in range(30):
        stt = FakeSTT(["hi"])
        llm, tts = FakeLLM(), FakeTTS()
        async with Pipeline(stt=stt, llm=llm, tts=tts).run(one_loud_chunk_then_wait()) as events:
            async for _event in events:
                break
        assert stt.closed and llm.open_streams == 0 and tts.open_streams == 0


async def test_leaving_at_every_event_of_a_session_never_raises() -> None:
    total = None
    for leave_at in itertools.count():
        stt = FakeSTT(["tell me more", "and then"])
        llm = FakeLLM(["One thing. Another thing.", "Done."])
        tts = FakeTTS(chunk_ms=40)
        policy = ConversationPolicy(greeting="Hello there. How can I help?")
        pipeline = Pipeline(stt=stt, llm=llm, tts=tts, policy=policy, input_format=FORMAT)
        seen: list[Event] = []
        async with pipeline.run(chunks(utterance() * 2)) as events:
            async for event in events:
                if len(seen) == leave_at:
                    break
                seen.append(event)
        complete = len(seen) < leave_at
        assert_session_ok(seen, complete=complete, stt=stt, llm=llm, tts=tts)
        if complete:  # the session ended before this event: all points tried
            total = len(seen)
            break
    assert total is not None and total > 20


async def test_a_consumer_closing_the_stream_without_leaving_ends_the_session() -> None:
    closed = anyio.Event()
    more = anyio.Event()

    async def microphone() -> AsyncIterator[bytes]:
        try:
            yield silence(20)
            await more.wait()
            while True:  # the caller speaks: the STT's next event finds the stream closed
                yield tone(20)
        finally:
            closed.set()

    stt = FakeSTT(["hi"])
    async with Pipeline(stt=stt, llm=FakeLLM(), tts=FakeTTS()).run(microphone()) as events:
        await events.receive()
        await events.aclose()
        more.set()
        with anyio.fail_after(10):  # a guard against a hang, not a timing assertion
            await closed.wait()  # the session ended itself and closed the caller's audio
    assert stt.closed


# -- item 2: `assistant` says what was spoken ------------------------------------


class BreaksAfter:
    """An LLM whose stream yields ``deltas`` and then fails."""

    def __init__(self, *deltas: str) -> None:
        self.deltas = deltas
        self.calls: list[list[Message]] = []

    async def stream(
        self, messages: Sequence[Message], *, usage: Usage | None = None
    ) -> AsyncIterator[str]:
        self.calls.append(list(messages))
        for delta in self.deltas:
            yield delta
        raise ConnectionResetError("connection reset by peer")

    async def complete_json(self, messages: object, schema: object, **_: object) -> object:
        raise NotImplementedError


async def test_assistant_reports_only_the_sentences_spoken_before_the_llm_failed() -> None:
    llm = BreaksAfter("First part. ", "Second half")
    async with Pipeline(llm=llm, tts=FakeTTS()).run_text(["hi", "again"]) as stream:  # type: ignore[arg-type]
        events = await collect(stream)
    replies = of_type(events, AssistantReply)
    assert [r.content for r in replies] == ["First part.", "First part."]
    assert [e.content for e in of_type(events, AssistantDelta)] == ["First part."] * 2
    assert llm.calls[1][-2] == Message("assistant", "First part.")  # history agrees


async def test_a_reply_that_failed_before_any_sentence_end_reports_nothing_spoken() -> None:
    llm = BreaksAfter("Second half")
    async with Pipeline(llm=llm, tts=FakeTTS()).run_text(["hi"]) as stream:  # type: ignore[arg-type]
        events = await collect(stream)
    assert types(events) == ["session", "user_turn", "error", "metrics", "finish"]


async def test_a_sentence_the_tts_failed_on_is_not_in_the_assistant_event() -> None:
    tts = FakeTTS(fail_on=["Broken sentence."])
    llm = FakeLLM(["Good start. Broken sentence. Good end."])
    async with Pipeline(llm=llm, tts=tts).run_text(["hi"]) as stream:
        events = await collect(stream)
    (reply,) = of_type(events, AssistantReply)
    assert reply.content == "Good start. Good end."


# -- the reply-emit race (issue 17): nothing of a reply after its `interrupted` ----


class TriggerSTT:
    """An STT that hears nothing itself; ``barge_in()`` reports speech at once."""

    def __init__(self) -> None:
        self.emit: Emit | None = None
        self.ready = anyio.Event()

    async def transcribe(self, audio: object, format: AudioFormat, emit: Emit) -> None:
        self.emit = emit
        self.ready.set()
        await anyio.sleep_forever()

    async def barge_in(self) -> None:
        assert self.emit is not None
        await self.emit(SpeechStarted())


class BargeInTTS(FakeTTS):
    """Reports speech right after handing over chunk ``chunk`` of sentence ``sentence``,
    in the same step: the pipeline's player already holds that chunk when the
    cut lands, which is the race."""

    def __init__(self, stt: TriggerSTT, sentence: int, chunk: int) -> None:
        super().__init__(chunk_ms=100)
        self.stt, self.sentence, self.chunk = stt, sentence, chunk
        self.started = 0

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        number, self.started = self.started, self.started + 1
        await self.stt.ready.wait()
        index = 0
        async with closing(super().synthesize(text)) as chunks:  # a cut closes it mid-way
            async for chunk in chunks:
                yield chunk
                if (number, index) == (self.sentence, self.chunk):
                    await self.stt.barge_in()
                index += 1


@pytest.mark.parametrize(("sentence", "chunk"), [(0, 0), (0, 1), (1, 0), (1, 2)])
@pytest.mark.parametrize("lead", [None, 0.05])
async def test_nothing_of_a_reply_follows_its_interrupted(
    sentence: int, chunk: int, lead: float | None
) -> None:
    stt = TriggerSTT()
    tts = BargeInTTS(stt, sentence, chunk)
    policy = ConversationPolicy(greeting="Hello and welcome. I can help with many things.")
    # A bare speech_started cuts only under the old rule (the default pauses
    # and waits for words; the turns tests cover that path's cut check).
    pipeline = Pipeline(
        stt=stt,
        llm=FakeLLM(),
        tts=tts,
        policy=policy,
        realtime_lead=lead,
        input_format=FORMAT,
        barge_in=BargeIn.any_speech(),
    )
    events: list[Event] = []
    async with pipeline.run(one_loud_chunk_then_wait()) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, AssistantReply):
                break
    assert_session_ok(events, complete=False)
    sequence = types(events)
    cut = sequence.index("interrupted")
    assert "audio" not in sequence[cut:] and "assistant_delta" not in sequence[cut:]
    (reply,) = of_type(events, AssistantReply)
    assert reply.interrupted
    sent = "".join(e.content for e in of_type(events, AssistantDelta)).strip()
    if lead is None:
        assert reply.content == sent
    else:  # paced: what was heard by the cut, to the word (FakeTTS gives word timing)
        assert sent.startswith(reply.content)


# -- item 4: a policy can end the session at once --------------------------------


async def test_a_policy_error_that_is_not_recoverable_ends_the_session_at_once() -> None:
    class Doomed(ConversationPolicy):
        async def start(self, ctx: PolicyContext) -> Reply | None:
            raise PolicyError("this line is closed", stage="store", recoverable=False)

    llm = FakeLLM()
    async with Pipeline(llm=llm, policy=Doomed()).run_text(["hi", "hello?"]) as stream:
        events = await collect(stream)
    assert types(events) == ["session", "error", "finish"]
    (error,) = of_type(events, ErrorEvent)
    assert (error.stage, error.message, error.recoverable) == (
        "store",
        "this line is closed",
        False,
    )
    assert events[-1] == Finish(reason="error")
    assert llm.n_calls == 0


async def test_a_recoverable_policy_error_ends_the_turn_only() -> None:
    class Picky(ConversationPolicy):
        async def on_user_turn(self, text: str, ctx: PolicyContext) -> Reply | None:
            if text == "bad":
                raise PolicyError("say that differently")
            return await super().on_user_turn(text, ctx)

    async with Pipeline(llm=FakeLLM(), policy=Picky()).run_text(["bad", "good"]) as stream:
        events = await collect(stream)
    assert [(e.stage, e.message, e.recoverable) for e in of_type(events, ErrorEvent)] == [
        ("policy", "say that differently", True)
    ]
    assert [e.content for e in of_type(events, AssistantReply)] == ["good"]


async def test_a_form_session_of_another_form_ends_at_once(stores: StoreFactory) -> None:
    store = stores()
    other = Form(name="other", fields=INTAKE.fields)
    await store.claim("call-9", form=other.name, language="en", owner="someone")
    await store.release("call-9", "someone")
    policy = FormPolicy(INTAKE, store=store, session_id="call-9")
    llm = FakeLLM()
    stt = FakeSTT(["twenty four", "hello?"])
    pipeline = Pipeline(stt=stt, llm=llm, tts=FakeTTS(), policy=policy, input_format=FORMAT)
    async with pipeline.run(chunks(utterance() * 2)) as stream:
        events = await collect(stream)
    assert types(events)[-2:] == ["error", "finish"]  # the caller's speech may come first
    assert not [r for r in of_type(events, AssistantReply) if r.content]  # nothing said
    assert not of_type(events, Metrics)  # no turn answered
    (error,) = of_type(events, ErrorEvent)
    assert error.stage == "store" and not error.recoverable
    assert "belongs to form 'other'" in error.message
    assert events[-1] == Finish(reason="error")
    assert llm.n_calls == 0


# -- item 3: the session closes its policy ---------------------------------------


class Closing(ConversationPolicy):
    def __init__(self) -> None:
        super().__init__(greeting="Hello. This is a long greeting.")
        self.closed = 0

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()  # a real close awaits (a store write): it must not be cut
        self.closed += 1


@pytest.mark.parametrize("ending", ["end_of_input", "leave", "raise", "cancel", "goodbye"])
async def test_the_policy_is_closed_however_the_session_ends(ending: str) -> None:
    policy = Closing()
    turns = ["bye"] if ending == "goodbye" else ["hi"]
    pipeline = Pipeline(llm=FakeLLM(), tts=FakeTTS(chunk_delay=0.01), policy=policy)
    with anyio.CancelScope() as scope:
        try:
            async with pipeline.run_text(turns) as stream:
                async for event in stream:
                    if isinstance(event, AudioChunk) and ending != "end_of_input":
                        if ending == "leave":
                            break
                        if ending == "raise":
                            raise KeyError("boom")
                        if ending == "cancel":
                            scope.cancel()
                            await anyio.lowlevel.checkpoint()
        except KeyError:
            assert ending == "raise"
    assert policy.closed == 1


async def test_a_form_session_is_free_again_as_soon_as_the_call_ends(
    stores: StoreFactory,
) -> None:
    # The README's code (no `async with policy`): the caller hangs up mid-form
    # and calls back at once; the lease is not held until it expires.
    store = stores()
    for _ in range(2):
        policy = FormPolicy(INTAKE, store=store, session_id="caller-42")
        pipeline = Pipeline(llm=FakeLLM(), tts=FakeTTS(), policy=policy)
        async with pipeline.run_text([]) as stream:
            events = await collect(stream)
        assert events[-1] == Finish(reason="end_of_input")
        assert "another call" not in of_type(events, AssistantReply)[0].content
