"""Print the turn-taking suite's figures: ``python -m benchmarks.turns [--backend trio]``.

Every scenario of :mod:`benchmarks.turns.scenarios` runs on fake providers
in virtual time, under each configuration of :data:`~benchmarks.turns.harness.CONFIGS`
("today" is the behaviour before pause and resume). Then the built-in
detector's and judge's CPU cost per decision is timed on this machine.
"""

from __future__ import annotations

import argparse
import logging
import time

from benchmarks.turns.harness import CONFIGS, run, summary
from benchmarks.turns.scenarios import SCENARIOS
from voicepipe.turns import Backchannels, LocalTurnDetector

SAMPLES = (
    "what time is it",
    "my number is five five five",
    "I would like a table for",
    "ana at example dot com",
    "I think I want um",
    "qué tiempo hará mañana",
    "tell me a story about a dragon who lived by the sea",
    "yeah but what about the dragon",
)


def per_decision_us(repeat: int = 20000) -> dict[str, float]:
    """CPU microseconds per decision of the detector and the backchannel check."""
    detector, backchannels = LocalTurnDetector(), Backchannels()
    out = {}
    for name, call in (
        ("end-of-turn decision", lambda t: detector.judge(t, expecting=None)),
        ("end-of-turn decision, expecting phone", lambda t: detector.judge(t, expecting="phone")),
        ("backchannel check", backchannels.real_words),
    ):
        start = time.process_time()
        for index in range(repeat):
            call(SAMPLES[index % len(SAMPLES)])
        out[name] = (time.process_time() - start) / repeat * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--verbose", action="store_true", help="one line per scenario")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for key, config in CONFIGS.items():
        outcomes = run(SCENARIOS, config, args.backend)
        print(f"== {key}: {config.name} ({len(outcomes)} scenarios, {args.backend})")
        for name, value in summary(outcomes).items():
            print(f"  {name:50} {value}")
        if args.verbose:
            for o in outcomes:
                print(f"    {o.scenario.name:45} turns={o.turns} cuts={o.cuts} resumed={o.resumes}")
    print("== CPU per decision (process time; the machine may be loaded)")
    for name, us in per_decision_us().items():
        print(f"  {name:50} {us:.1f} µs")


if __name__ == "__main__":
    main()
