"""Push-to-talk clips dialect (the forms client's protocol), on a fake transport core."""

from __future__ import annotations

import base64
import json

import anyio
import pytest

from tests.codec_support import browser_webm
from tests.dialect_support import FakeLink, FakePipeline
from tests.support import silence, tone
from voicepipe.audio import AudioFormat
from voicepipe.events import AssistantReply, FormComplete, FormProgress
from voicepipe.providers.fake import FakeSTT
from voicepipe.transports.dialects.clips import ClipsDialect, transcribe_clip


def clip_frame(pcm: bytes) -> str:
    data = base64.b64encode(browser_webm(pcm)).decode()
    return json.dumps({"audio": f"data:audio/webm;base64,{data}"})


@pytest.mark.anyio
async def test_a_clip_is_one_whole_turn() -> None:
    stt = FakeSTT(turns=["my name is ada"])
    text = await transcribe_clip(stt, browser_webm(tone(500)), AudioFormat())
    assert text == "my name is ada"  # no trailing silence needed: the clip's end ends it


@pytest.mark.anyio
async def test_clips_become_typed_turns_and_replies_become_messages() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg, pipeline=FakePipeline(stt=FakeSTT(turns=["ada", "42"])))
        dialect = ClipsDialect()
        assert dialect.text_mode
        await dialect.on_event(AssistantReply(content="Hello! What is your name?"), link)
        await dialect.on_frame(clip_frame(tone(400) + silence(100)), link)
        await dialect.on_event(FormProgress(field="name", value="Ada", answered=1, total=2), link)
        await dialect.on_event(AssistantReply(content="How old are you?"), link)
        await dialect.on_frame(clip_frame(tone(400)), link)
        answers = {"name": "Ada", "age": 42}
        await dialect.on_event(FormComplete(form="intake", answers=answers), link)
        await dialect.on_event(AssistantReply(content="Thanks, all done."), link)
        assert link.texts == ["ada", "42"]
        assert link.sent[0] == "Hello! What is your name?"  # the greeting: plain text
        assert [json.loads(f) for f in link.sent[1:]] == [
            {"message": "How old are you?"},
            {"message": "Thanks, all done.", "answers": answers},
        ]
        assert all(isinstance(f, str) for f in link.sent)  # never a binary frame


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"\x1a\x45\xdf\xa3", "send each clip as a text frame"),
        ('{"text": "hi"}', 'expected {"audio"'),
        ('{"audio": "aGVsbG8="}', "base64 data URL"),
        ('{"audio": "data:audio/webm;base64,%%%"}', "not valid base64"),
        (
            json.dumps({"audio": "data:audio/webm;base64," + base64.b64encode(b"hello").decode()}),
            "not a recognised audio container",
        ),
    ],
)
async def test_bad_clips_are_input_errors_and_the_session_goes_on(
    frame: str | bytes, error: str
) -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg, pipeline=FakePipeline(stt=FakeSTT(turns=["x"])))
        await ClipsDialect().on_frame(frame, link)
        assert error in link.errors[0]
        assert not link.failed and not link.texts


@pytest.mark.anyio
async def test_a_silent_clip_asks_for_the_answer_again() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg, pipeline=FakePipeline(stt=FakeSTT(turns=["x"])))
        await ClipsDialect().on_frame(clip_frame(silence(500)), link)
        assert "no words were heard" in link.errors[0]
