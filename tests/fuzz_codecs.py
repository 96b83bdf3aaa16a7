"""Damaged encoded streams for the codec fuzzer (tests/test_codecs_fuzz.py).

A :class:`Damaged` stream is a real recording (WebM/Opus as Chromium sends it,
Ogg/Opus as Firefox does, fragmented MP4/AAC as Safari does, MP3) damaged the
way networks, buggy clients and hostile ones damage it: cut short, bytes
flipped, junk spliced in, a range repeated, a second header mid-stream, an
element's size made huge. Then it is fed in random pieces, empty ones
included. :func:`run_damaged` feeds it to a streaming decoder and to
:func:`~voicepipe.codecs.container.decode_clip` and returns what broke the
contract: any exception but :class:`~voicepipe.codecs.CodecError`, PCM that is
not whole samples or more than a piece may hold, bytes held that nothing will
read, a decoder thread left alive.
"""

from __future__ import annotations

import functools
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.support import silence, tone
from voicepipe.codecs import CodecError, open_decoder
from voicepipe.codecs.container import MAX_PIECE_SECONDS, ContainerDecoder, decode_clip

RATE = 16000
NAMES = ("webm", "ogg", "mp4", "mp3")
HANG_LIMIT = 60.0  # seconds: a decode still running then has hung


@functools.cache
def recording(name: str) -> bytes:
    """A short real recording of ``name`` (made once per process)."""
    from tests.codec_support import browser_webm, firefox_ogg, mp3, safari_mp4

    pcm = tone(300, hz=440) + silence(100) + tone(200, hz=660)
    make = {"webm": browser_webm, "ogg": firefox_ogg, "mp4": safari_mp4, "mp3": mp3}[name]
    return make(pcm)


@dataclass(frozen=True)
class Damaged:
    """One damaged stream and where it is cut into pieces."""

    name: str
    data: bytes
    cuts: tuple[int, ...]
    damage: tuple[str, ...] = field(default=())

    def pieces(self) -> list[bytes]:
        bounds = [0, *self.cuts, len(self.data)]
        return [self.data[a:b] for a, b in itertools.pairwise(bounds)]


def _damage(draw: Any, data: bytearray, name: str) -> str:
    kind = draw(
        st.sampled_from(
            ["truncate", "flip", "junk", "repeat", "zeros", "header", "huge_size", "drop"]
        )
    )
    at = draw(st.integers(0, len(data)))
    if kind == "truncate":
        del data[at:]
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 20))):
            if data:
                i = draw(st.integers(0, len(data) - 1))
                data[i] ^= draw(st.integers(1, 255))
    elif kind == "junk":
        data[at:at] = draw(st.binary(min_size=1, max_size=2000))
    elif kind == "repeat":
        size = draw(st.integers(1, 4000))
        data[at:at] = data[at : at + size]
    elif kind == "zeros":
        data[at:at] = bytes(draw(st.integers(1, 70_000)))
    elif kind == "header":
        data[at:at] = recording(name)[: draw(st.integers(1, 600))]
    elif kind == "huge_size":
        # An EBML/atom/page size field made huge: 0x01 then 0xFF bytes reads as
        # "unknown" or petabytes in EBML, as ~4 GB in MP4 and Ogg lengths.
        data[at : at + 8] = b"\x01" + b"\xff" * 7
    else:  # drop a range
        del data[at : at + draw(st.integers(1, 3000))]
    return f"{kind}@{at}"


@st.composite
def damaged_streams(draw: Any) -> Damaged:
    name = draw(st.sampled_from(NAMES))
    data = bytearray(recording(name))
    damage = tuple(_damage(draw, data, name) for _ in range(draw(st.integers(0, 3))))
    # Random cut points, sorted, repeats allowed (empty pieces).
    cuts = tuple(sorted(draw(st.lists(st.integers(0, len(data)), max_size=12))))
    return Damaged(name, bytes(data), cuts, damage)


def _check_pcm(pcm: bytes, where: str, problems: list[str]) -> None:
    if len(pcm) % 2:
        problems.append(f"{where}: {len(pcm)} bytes of PCM16, not whole samples")
    if len(pcm) > int(RATE * MAX_PIECE_SECONDS) * 2:
        problems.append(f"{where}: {len(pcm)} bytes, more than one piece may decode to")


def _feed(stream: Damaged, problems: list[str], decoders: list[ContainerDecoder]) -> None:
    decoder = open_decoder(stream.name, RATE)
    assert isinstance(decoder, ContainerDecoder)
    decoders.append(decoder)
    try:
        for index, piece in enumerate(stream.pieces()):
            _check_pcm(decoder.decode(piece), f"piece {index}", problems)
            held = len(decoder._pipe.buf)  # what nothing has read: memory that only grows
            if held:
                problems.append(f"piece {index}: {held} bytes left in the pipe after decode")
        _check_pcm(decoder.flush(), "flush", problems)
    except CodecError:
        pass
    except Exception as exc:
        problems.append(f"decode raised {type(exc).__name__}: {exc}")
    finally:
        decoder.close()
    try:
        _check_pcm(decode_clip(stream.data, RATE, stream.name), "clip", problems)
    except CodecError:
        pass
    except Exception as exc:
        problems.append(f"decode_clip raised {type(exc).__name__}: {exc}")


def run_damaged(stream: Damaged) -> list[str]:
    """What ``stream`` broke of the codec contract (nothing: an empty list)."""
    problems: list[str] = []
    decoders: list[ContainerDecoder] = []
    worker = threading.Thread(target=_feed, args=(stream, problems, decoders), daemon=True)
    worker.start()
    worker.join(HANG_LIMIT)  # a hang guard, not a timing assertion
    if worker.is_alive():
        return [f"decoding hung for {HANG_LIMIT:g} s"]
    for decoder in decoders:
        thread = decoder._thread  # the contract is that close() ends it
        if thread is not None and thread.is_alive():
            problems.append("the decoder's thread outlived close()")
    return problems
