"""A long soak of the session-contract fuzzer: ``make fuzz``.

Runs ``--timelines`` generated session timelines per backend through a real
Pipeline on virtual time (see tests/fuzz_sessions.py), checks each with
voicepipe.testing, and prints timelines per second and invariants checked.
A broken invariant stops the run with hypothesis's shrunk, minimal timeline.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, seed, settings

from tests import virtual_time
from tests.fuzz_sessions import Outcome, Timeline, run_timeline, timelines
from voicepipe.testing import RULES


def soak(backend: str, count: int, random_seed: int) -> None:
    ran = 0
    events = 0
    kinds: Counter[str] = Counter()  # sessions that had at least one event of a type
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
    @given(timeline=timelines())
    def one(timeline: Timeline) -> None:
        nonlocal ran, events

        async def main() -> Outcome:
            return await run_timeline(timeline)

        outcome = virtual_time.run(main, backend)
        ran += 1
        events += len(outcome.events)
        kinds.update({e.type for e in outcome.events})
        kinds.update(["complete" if outcome.complete else "left early"])
        found = [v.describe(outcome.events) for v in outcome.violations]
        assert not found, "\n".join(found)

    one()
    wall = time.perf_counter() - started
    used = time.process_time() - cpu
    print(
        f"{backend}: {ran} timelines clean in {wall:.1f} s wall, {used:.1f} s CPU: "
        f"{ran / wall:.1f} timelines/s ({ran / used:.1f} per CPU-second), {events} events, "
        f"{ran * len(RULES) + ran} invariant checks ({len(RULES)} rules + session-ends "
        "per timeline)",
        flush=True,
    )
    shown = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
    print(f"  sessions with: {shown}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timelines", type=int, default=10_000, help="per backend")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--backend", choices=["asyncio", "trio"], action="append")
    args = parser.parse_args()
    import logging

    logging.disable(logging.CRITICAL)  # the fuzzer's failures are expected and logged
    for backend in args.backend or ["asyncio", "trio"]:
        soak(backend, args.timelines, args.seed)


if __name__ == "__main__":
    main()
