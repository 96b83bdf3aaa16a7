"""App factories for tests that run the server in its own process (``voicepipe serve
--app tests.server_apps:<name>``): ``create_app`` from the environment's settings, on
fake providers scripted for forms and for a slow conversation reply."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

from fastapi import FastAPI

from voicepipe.providers.base import Message
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.server import Providers, create_app

ANSWERS = {"age": 42, "email": "ana@example.com", "phone": "+14155550100"}
"""What the fake LLM extracts for each field of examples/forms/intake.yaml."""

STORY = "Once upon a time there was a very long reply that took a while to say. " * 4
"""The conversation reply: slow (one word every TOKEN_DELAY seconds), so a drain finds it
in progress."""

TOKEN_DELAY = 0.05


def _reply(messages: Sequence[Message]) -> str:
    prompt = "\n".join(m.content for m in messages)
    for name, value in ANSWERS.items():
        if f'Field "{name}"' in prompt:
            return json.dumps({"is_answer": True, "value": value})
    return STORY


def fakes_app() -> FastAPI:
    """The server on fakes: forms answered from ANSWERS, conversation answered with STORY."""
    providers = Providers(
        FakeSTT(itertools.repeat("hello there")),
        FakeLLM(_reply, token_delay=TOKEN_DELAY),
        FakeTTS(),
        ("fake", "fake", "fake"),
    )
    return create_app(providers=providers)
