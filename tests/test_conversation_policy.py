from __future__ import annotations

import pytest

from voicepipe import ConversationPolicy, Message, PolicyContext
from voicepipe.providers.fake import FakeLLM


@pytest.mark.parametrize(
    ("text", "goodbye"),
    [
        ("bye", True),
        ("Okay, BYE!", True),
        ("thank you, goodbye.", True),
        ("bye bye", True),
        ("say bye to grandma for me", False),
        ("goodbyes are hard", False),
        ("", False),
    ],
)
def test_goodbye_only_at_the_end_of_the_turn(text: str, goodbye: bool) -> None:
    assert ConversationPolicy().is_goodbye(text) is goodbye


def test_multi_word_end_phrases() -> None:
    policy = ConversationPolicy(end_phrases=("see you later", "that's all"))
    assert policy.is_goodbye("Great, see you later!")
    assert policy.is_goodbye("That's all.")
    assert not policy.is_goodbye("later")


def test_memory_size_must_hold_the_user_turn() -> None:
    with pytest.raises(ValueError, match="memory_size"):
        ConversationPolicy(memory_size=0)


@pytest.mark.anyio
async def test_history_keeps_what_was_spoken_within_the_window() -> None:
    policy = ConversationPolicy("SYS", memory_size=3)
    ctx = PolicyContext(FakeLLM())
    await policy.on_user_turn("one", ctx)
    await policy.on_reply_done("A long reply. Unheard.", spoken="A long reply.", interrupted=True)
    await policy.on_user_turn("two", ctx)
    await policy.on_reply_done("", spoken="", interrupted=True)  # nothing heard: nothing kept
    assert policy.messages() == [
        Message("system", "SYS"),
        Message("user", "one"),
        Message("assistant", "A long reply."),
        Message("user", "two"),
    ]
    await policy.on_user_turn("three", ctx)
    assert policy.messages()[1:] == [
        Message("assistant", "A long reply."),
        Message("user", "two"),
        Message("user", "three"),
    ]
