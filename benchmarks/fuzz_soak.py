"""A long soak of the session-contract fuzzer: ``make fuzz``.

Runs ``--timelines`` generated timelines of each kind (conversations, with
tools, form calls, and form calls on PostgreSQL when VOICEPIPE_TEST_POSTGRES_DSN
is set) per backend through a real Pipeline on virtual time (see
tests/fuzz_sessions.py and tests/fuzz_forms.py), checks each with
voicepipe.testing and the fuzzer's own checks, and prints timelines per
second, the checks made and what the sessions exercised. A broken invariant
stops the run with hypothesis's shrunk, minimal timeline.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests import virtual_time
from tests.fuzz_forms import FormOutcome, form_timelines, run_form_timeline
from tests.fuzz_sessions import Outcome, run_timeline, timelines
from voicepipe.testing import RULES

# The checks of a run beyond the contract rules: rule 10, no task left, the session
# ends, a reply spoken whole (tools: and every history provider-valid); form calls:
# rule 10, no task left, the call ends, rule 11, values said, then for the second
# call the contract, rule 10, no task left, the call ends and it resumes.
EXTRA_CHECKS = {"conversations": 4, "tools": 5, "forms": 5 + len(RULES) + 4}
EXTRA_CHECKS["forms-postgres"] = EXTRA_CHECKS["forms"]

KINDS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], Awaitable[Outcome]]]] = {
    "conversations": (timelines(tools=False), run_timeline),
    "tools": (timelines(tools=True), run_timeline),
    "forms": (form_timelines(), run_form_timeline),
    # With VOICEPIPE_TEST_POSTGRES_DSN set (source .ci/postgres.sh); asyncio only (asyncpg).
    "forms-postgres": (form_timelines(), functools.partial(run_form_timeline, store="postgres")),
}


def soak(kind: str, backend: str, count: int, random_seed: int) -> None:
    strategy, run = KINDS[kind]
    ran = 0
    events = 0
    seen: Counter[str] = Counter()  # sessions that had at least one event of a type
    started = time.perf_counter()
    cpu = time.process_time()

    @seed(random_seed)
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(timeline=strategy)
    def one(timeline: Any) -> None:
        nonlocal ran, events

        async def main() -> Outcome:
            return await run(timeline)

        outcome = virtual_time.run(main, backend)
        ran += 1
        events += len(outcome.events)
        seen.update({e.type for e in outcome.events})
        seen.update(["complete" if outcome.complete else "left early"])
        if isinstance(outcome, FormOutcome):
            seen.update([f"{len(outcome.stored)} answers stored"])
            finish = [e for e in outcome.second.events if e.type == "finish"]
            seen.update([f"second call {finish[0].reason if finish else 'unfinished'}"])
        found = [v.describe(outcome.events) for v in outcome.violations]
        assert not found, "\n".join(found)

    one()
    wall = time.perf_counter() - started
    used = time.process_time() - cpu
    checks = ran * (len(RULES) + EXTRA_CHECKS[kind])
    print(
        f"{kind} on {backend}: {ran} timelines clean in {wall:.1f} s wall, {used:.1f} s CPU: "
        f"{ran / wall:.1f} timelines/s ({ran / used:.1f} per CPU-second), {events} events, "
        f"{checks} checks ({len(RULES)} contract rules + {EXTRA_CHECKS[kind]} per timeline)",
        flush=True,
    )
    shown = ", ".join(f"{name} {n}" for name, n in sorted(seen.items()))
    print(f"  sessions with: {shown}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timelines", type=int, default=10_000, help="per kind and backend")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--backend", choices=["asyncio", "trio"], action="append")
    parser.add_argument("--kind", choices=sorted(KINDS), action="append")
    args = parser.parse_args()
    import logging

    logging.disable(logging.CRITICAL)  # the fuzzer's failures are expected and logged
    postgres = bool(os.environ.get("VOICEPIPE_TEST_POSTGRES_DSN"))
    for kind in args.kind or list(KINDS):
        if kind == "forms-postgres" and not postgres:
            print("forms-postgres: skipped, VOICEPIPE_TEST_POSTGRES_DSN is not set", flush=True)
            continue
        for backend in args.backend or ["asyncio", "trio"]:
            if kind == "forms-postgres" and backend != "asyncio":
                continue  # asyncpg is asyncio only
            soak(kind, backend, args.timelines, args.seed)


if __name__ == "__main__":
    main()
