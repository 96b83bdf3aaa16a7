"""The codec contract under damaged input: real recordings cut short, flipped, spliced
with junk or a second header, sizes made huge, fed in random pieces; every failure is a
CodecError, the PCM is whole samples and bounded, and no decoder thread is left behind.

The generators are in tests/fuzz_codecs.py. CI runs a bounded, seeded number of
examples; inputs the fuzzer once broke are kept below as regression tests.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, seed, settings

from tests.fuzz_codecs import Damaged, damaged_streams, recording, run_damaged

pytest.importorskip("av")


@seed(23)
@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(stream=damaged_streams())
def test_damaged_streams_keep_the_codec_contract(stream: Damaged) -> None:
    assert run_damaged(stream) == []


@pytest.mark.parametrize("name", ["webm", "ogg", "mp4", "mp3"])
def test_a_recording_then_megabytes_of_zeros_keeps_the_contract(name: str) -> None:
    data = recording(name) + bytes(6 << 20)
    cuts = tuple(range(len(recording(name)), len(data), 1 << 20))
    assert run_damaged(Damaged(name, data, cuts)) == []
