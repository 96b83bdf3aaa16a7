"""Forms accuracy on the real offline stack: PocketSphinx -> FormPolicy with the local LLM.

Run from the repository root after ``python benchmarks/forms/make_audio.py``::

    python benchmarks/forms/run.py            # text and end to end
    python benchmarks/forms/run.py --text     # text only (no audio needed)

Each answer of ``corpus.json`` (texts and expected values, English and
Spanish) goes to a one-field form (``FormPolicy`` on SQLite, the local
``LlamaCppLLM`` as the fallback extractor). A simulated caller says "yes" to
a read-back of the expected value and "no" to any other. Outcomes:

- correct: the expected value was stored;
- caught: a wrong value was read back and refused, so nothing was stored;
- re-asked: no value was accepted (the policy asked again);
- **silently wrong**: a value other than the expected one was stored without
  a read-back. This must be zero.

End to end, the STT is told what the question expects (``Reply.hint()``,
as the pipeline passes it on); ``--no-hint`` measures without it.

Answers marked ``held_out`` (e-mail addresses with names that are in no list
of the e-mail grammar, ``sphinx_names``) are counted apart, as "held-out
names", and not in "all": the figure for names the grammar does not know.

Two levels: from the text (the transcript given), and end to end from audio
(English only: PocketSphinx has no Spanish model), where a caller whose
answer was caught or re-asked repeats it once (the same words at another
speed), as people do after a read-back. Figures are per field type; the
parser-vs-LLM time per turn is CPU time of the whole turn.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from voicepipe.audio import chunk_pcm, read_wav  # noqa: E402
from voicepipe.events import UserTurn  # noqa: E402
from voicepipe.forms import Field, FieldType, Form, SQLiteFormStore  # noqa: E402
from voicepipe.policies.base import PolicyContext  # noqa: E402
from voicepipe.policies.form import Extraction, FormPolicy  # noqa: E402
from voicepipe.providers.base import LLM, Expectation, STTEvent, Usage  # noqa: E402
from voicepipe.providers.base import transcribe as transcribe_with  # noqa: E402

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("make_audio", HERE / "make_audio.py")
assert _spec is not None and _spec.loader is not None
make_audio = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_audio)
SPEEDS: tuple[float, ...] = make_audio.SPEEDS
audio_path = make_audio.audio_path
CHOICES = {"en": ("vegetarian", "chicken", "fish"), "es": ("vegetariano", "pollo", "pescado")}
YES = {"en": "yes", "es": "sí"}
NO = {"en": "no", "es": "no"}


def field_for(kind: str, lang: str) -> Field:
    match kind:
        case "age":
            return Field(name="age", question="?", type=FieldType.INTEGER, min=0, max=130)
        case "email":
            return Field(name="email", question="?", type=FieldType.EMAIL)
        case "phone":
            region = "US" if lang == "en" else None
            return Field(name="phone", question="?", type=FieldType.PHONE, region=region)
        case "date":
            return Field(name="born", question="?", type=FieldType.DATE)
        case "yes_no":
            return Field(name="agree", question="?", type=FieldType.BOOLEAN)
        case "choice":
            return Field(name="meal", question="?", type=FieldType.CHOICE, choices=CHOICES[lang])
    raise ValueError(kind)


class Counting:
    """The LLM, counting the extraction calls it gets."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.calls = 0

    def stream(self, messages: Any, *, usage: Usage | None = None, **kw: Any) -> Any:
        return self.inner.stream(messages, usage=usage, **kw)

    async def complete_json(self, messages: Any, schema: Any, *, usage: Usage | None = None) -> Any:
        self.calls += 1
        return await self.inner.complete_json(messages, schema, usage=usage)


async def answer(
    store: SQLiteFormStore,
    llm: Counting,
    item: dict[str, Any],
    heard: list[str],
    sid: str,
    alternatives: list[tuple[str, ...]] | None = None,
) -> tuple[str, int, float]:
    """Run one field with the caller saying each of ``heard`` in turn (a retry after the first);
    ``alternatives`` are the STT's other readings of each, as the pipeline hands them on.

    Returns (outcome, LLM calls, CPU seconds of the first answer turn).
    """
    lang, expected = item["lang"], item["expected"]
    form = Form(name="bench", language=lang, fields=[field_for(item["field"], lang)])
    policy = FormPolicy(form, store=store, session_id=sid, language=lang, max_attempts=5)
    await policy.start(PolicyContext(llm, Usage()))
    calls_before = llm.calls
    outcome, first_cpu = "re-asked", -1.0
    for attempt, text in enumerate(heard):
        others = alternatives[attempt] if alternatives else ()
        ctx = PolicyContext(llm, Usage(), alternatives=others)
        started = time.process_time()
        await policy.on_user_turn(text, ctx)
        if attempt == 0:
            first_cpu = time.process_time() - started
        if policy.confirming is not None:
            (value,) = policy.confirming
            ok = value == expected
            await policy.on_user_turn(YES[lang] if ok else NO[lang], ctx)
            outcome = "correct" if ok else "caught"
        elif policy.done:
            stored = policy.answers[form.fields[0].name]
            outcome = "correct" if stored == expected else "silently wrong"
        else:
            outcome = "re-asked"
        if outcome in ("correct", "silently wrong"):
            break
    await policy.aclose()
    return outcome, llm.calls - calls_before, first_cpu


async def hint_for(store: SQLiteFormStore, llm: Counting, item: dict[str, Any], sid: str) -> Any:
    """The STT hint of the item's question, as the pipeline hands it on (``Reply.hint()``)."""
    lang = item["lang"]
    form = Form(name="bench", language=lang, fields=[field_for(item["field"], lang)])
    policy = FormPolicy(form, store=store, session_id=sid, language=lang)
    reply = await policy.start(PolicyContext(llm, Usage()))
    await policy.aclose()
    return reply.hint() if reply is not None else None


async def transcribe(stt: Any, path: Path, hint: Any = None) -> tuple[str, tuple[str, ...]]:
    """What ``stt`` hears in ``path``, and its other readings of it (``Expectation.note``);
    with ``hint``, the way a pipeline would run it."""
    pcm, fmt = read_wav(path)
    turns: list[str] = []
    expect = Expectation(hint)

    async def audio() -> AsyncIterator[bytes]:
        for chunk in chunk_pcm(pcm, fmt, 20):
            yield chunk

    async def emit(event: STTEvent) -> None:
        if isinstance(event, UserTurn):
            turns.append(event.content)

    await transcribe_with(stt, audio(), fmt, emit, expect)
    text = " ".join(turns)
    return text, expect.alternatives(turns[0]) if len(turns) == 1 else ()


def report(title: str, rows: list[tuple[dict[str, Any], str]]) -> None:
    by: dict[str, Counter[str]] = defaultdict(Counter)
    last = ("all", "held-out names", "all with held-out")
    for item, outcome in rows:
        if item.get("held_out"):
            by["held-out names"][outcome] += 1
        else:
            by[f"{item['lang']} {item['field']}"][outcome] += 1
            by["all"][outcome] += 1
        by["all with held-out"][outcome] += 1
    if "held-out names" not in by:
        del by["all with held-out"]
    print(f"\n{title}")
    print(f"  {'field':<18} {'n':>4} {'correct':>8} {'caught':>7} {'re-asked':>9} {'silent':>7}")
    for key in sorted(by, key=lambda k: (k in last, last.index(k) if k in last else 0, k)):
        c = by[key]
        n = sum(c.values())
        print(
            f"  {key:<18} {n:>4} {100 * c['correct'] / n:>7.1f}% {c['caught']:>7} "
            f"{c['re-asked']:>9} {c['silently wrong']:>7}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text", action="store_true", help="from text only, no audio")
    parser.add_argument("--show", action="store_true", help="print every miss")
    parser.add_argument(
        "--no-hint", action="store_true", help="end to end without the STT hint (the old way)"
    )
    parser.add_argument(
        "--kind",
        action="append",
        choices=("age", "email", "phone", "date", "yes_no", "choice"),
        help="only answers of this field type (repeatable); for iterating on a subset",
    )
    parser.add_argument(
        "--audio-only", action="store_true", help="skip the text level and the LLM baseline"
    )
    args = parser.parse_args()
    from voicepipe.providers.local import LlamaCppLLM, PocketSphinxSTT

    corpus: list[dict[str, Any]] = json.loads((HERE / "corpus.json").read_text())
    # The audio files are numbered by the position in the whole corpus.
    numbered = [
        (i, item) for i, item in enumerate(corpus) if not args.kind or item["field"] in args.kind
    ]
    llm = Counting(LlamaCppLLM())
    await llm.inner.load()  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        async with SQLiteFormStore(Path(tmp) / "bench.db") as store:
            rows: list[tuple[dict[str, Any], str]] = []
            parser_cpu: list[float] = []
            llm_cpu: list[float] = []
            for index, item in [] if args.audio_only else numbered:
                outcome, calls, cpu = await answer(store, llm, item, [item["text"]], f"t{index}")
                rows.append((item, outcome))
                (llm_cpu if calls else parser_cpu).append(cpu)
                if args.show and outcome != "correct":
                    print(f"text miss: {item} -> {outcome}")
            if not args.audio_only:
                report(f"from text ({len(rows)} answers, EN and ES)", rows)
                print(
                    f"  LLM calls: {len(llm_cpu)} of {len(rows)} turns; "
                    f"CPU per answer turn: parser {1000 * _median(parser_cpu):.2f} ms (median), "
                    f"with the LLM {1000 * _median(llm_cpu):.0f} ms"
                )
                await llm_baseline(llm, [item for _, item in numbered])
            if args.text:
                return
            stt = PocketSphinxSTT()
            first: list[tuple[dict[str, Any], str]] = []
            retried: list[tuple[dict[str, Any], str]] = []
            for index, item in numbered:
                if item["lang"] != "en":
                    continue
                speeds = [SPEEDS[index % 3], SPEEDS[(index + 1) % 3]]
                hint = None if args.no_hint else await hint_for(store, llm, item, f"h{index}")
                text, others = await transcribe(stt, audio_path(index, speeds[0]), hint)
                heard, alternatives = [text], [others]
                outcome, _, _ = await answer(store, llm, item, heard, f"a{index}", alternatives)
                first.append((item, outcome))
                if outcome not in ("correct", "silently wrong"):
                    text, others = await transcribe(stt, audio_path(index, speeds[1]), hint)
                    heard.append(text)
                    alternatives.append(others)
                    outcome, _, _ = await answer(store, llm, item, heard, f"r{index}", alternatives)
                retried.append((item, outcome))
                if args.show and outcome != "correct":
                    also = f" (also {alternatives})" if any(alternatives) else ""
                    print(f"audio miss: {item} heard {heard}{also} -> {outcome}")
            n = len(first)
            report(f"end to end from audio, first answer ({n} EN answers, 3 speeds)", first)
            report("end to end from audio, with read-back (a refused value said again)", retried)
            hinted = "off (--no-hint)" if args.no_hint else "on, as the pipeline passes it"
            print(f"  STT hint: {hinted}")


async def llm_baseline(llm: Counting, corpus: list[dict[str, Any]]) -> None:
    """CPU per turn of the LLM extraction itself, on turns the parser answered alone."""
    sample = [item for item in corpus if item["field"] in ("age", "email", "phone")][::6]
    cpu = []
    for item in sample:
        form = Form(name="bench", language=item["lang"], fields=[field_for(item["field"], "en")])
        policy = FormPolicy(form, store=None, session_id="x", language=item["lang"])  # type: ignore[arg-type]
        messages = policy._extraction_messages(form.fields[0], item["text"])
        started = time.process_time()
        with contextlib.suppress(Exception):  # a failed extraction costs its time too
            await llm.inner.complete_json(messages, Extraction)
        cpu.append(time.process_time() - started)
    print(
        f"  the LLM extraction alone on {len(sample)} of those turns: "
        f"{1000 * _median(cpu):.0f} ms CPU per turn (median; llama.cpp's own threads included)"
    )


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else float("nan")


if __name__ == "__main__":
    anyio.run(main)
