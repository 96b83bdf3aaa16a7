"""The README's example and examples/quickstart.py run as documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    )
    return done.stdout


def test_readme_example_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(import anyio.*?)```", readme, re.S)
    assert code is not None, "the README lost its example"
    assert len(code.group(1).strip().splitlines()) <= 16
    out = run("-c", code.group(1)).splitlines()
    assert out[0].startswith("session")
    assert "assistant Hi!" in out
    assert "user_turn what's the weather like" in out
    assert "assistant Sunny and warm. Take a hat!" in out
    assert out[-1] == "finish "


def test_quickstart_runs_on_the_bundled_recording() -> None:
    out = run("examples/quickstart.py").splitlines()
    assert "user_turn what is the capital of france" in out
    assert "assistant The capital of France is Paris." in out
    assert "assistant Goodbye!" in out
    assert out[-2] == "finish goodbye"
    assert out[-1].endswith("bytes of reply audio")
