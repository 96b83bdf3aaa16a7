"""Sessions that leave at random points, 500 times per backend: does anything grow?

Prints the live tasks, open file descriptors and traced memory gained per
session after a warm-up (see tests/session_soak.py).

    python benchmarks/soak_sessions.py --sessions 500
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.session_soak import WARM_UP, soak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    for backend in ("asyncio", "trio"):
        g = soak(backend, args.sessions, args.seed)
        print(
            f"{backend}: {g.sessions} sessions after {WARM_UP} warm-up: "
            f"tasks {g.tasks:+d}, fds {g.fds:+d}, memory {g.bytes_per_session:+.1f} bytes/session"
        )


if __name__ == "__main__":
    main()
