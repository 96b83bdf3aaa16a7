"""The options several commands share: provider choices, ``--fake-turn``, ``--json``."""

from __future__ import annotations

from enum import StrEnum

import typer


class SttChoice(StrEnum):
    deepgram = "deepgram"
    groq = "groq"
    local = "local"
    fake = "fake"


class LlmChoice(StrEnum):
    groq = "groq"
    local = "local"
    fake = "fake"


class TtsChoice(StrEnum):
    deepgram = "deepgram"
    local = "local"
    fake = "fake"


STT_OPT = typer.Option(
    "--stt",
    help="Speech-to-text \\[default: deepgram if DEEPGRAM_API_KEY is set, else groq if "
    "GROQ_API_KEY is set, else local; or VOICEPIPE_STT].",
    show_default=False,
)
LLM_OPT = typer.Option(
    "--llm",
    help="Language model \\[default: groq if GROQ_API_KEY is set, else local; or VOICEPIPE_LLM].",
    show_default=False,
)
TTS_OPT = typer.Option(
    "--tts",
    help="Text-to-speech \\[default: deepgram if DEEPGRAM_API_KEY is set, else local; "
    "or VOICEPIPE_TTS].",
    show_default=False,
)
FAKE_TURN_OPT = typer.Option(
    "--fake-turn",
    help="With --stt fake: what the fake STT hears, one option per turn, in order "
    '\\[default: "hello" for every turn].',
    show_default=False,
)
JSON_OPT = typer.Option(
    "--json", help="Print the events as JSON lines (audio summarised) instead of a transcript."
)
