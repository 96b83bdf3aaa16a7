"""WebM/Opus, Ogg/Opus, MP4/AAC and MP3 to PCM16 mono, streaming or as whole clips (PyAV).

A browser's MediaRecorder cuts one continuous container stream into pieces
that cannot be decoded one by one (Chromium's blobs end mid-element). So one
FFmpeg demuxer reads the whole stream: :class:`ContainerDecoder` runs it in its
own thread, reading from a pipe that :meth:`~ContainerDecoder.decode` fills.
Each call returns once the demuxer is waiting for bytes that have not come,
so it hands back every sample the stream holds so far: the added delay is
the resampler's (about 1 ms), and the output is the same however the stream
was cut. Memory is bounded: the pipe holds at most one call's bytes and
FFmpeg reads through a 32 KiB buffer.

Non-fragmented MP4 (``moov`` at the end, as some recorders write) cannot be
streamed; :func:`decode_clip` decodes any whole clip from memory.
"""

from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, Any

from voicepipe.codecs import (
    CONTAINER_SIGNATURES,
    SNIFF_BYTES,
    CodecError,
    require_pyav,
    sniff,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ContainerDecoder", "decode_clip"]

_NAMES = {"webm": "WebM", "ogg": "Ogg", "mp4": "MP4", "mp3": "MP3"}
_FORMATS = {"webm": "webm", "ogg": "ogg", "mp4": "mp4", "mp3": "mp3"}

MAX_PENDING = 4 << 20
"""Most bytes one :meth:`ContainerDecoder.decode` call may hand over (4 MiB)."""

MAX_SILENT_BYTES = 4 << 20
"""Most bytes a stream may take in a row without decoding to any audio (4 MiB).

Browsers' streams decode every few kilobytes (an MP3's first audio needs the
most, about 12 KB). Without a bound, a header whose element declares 200 MB,
or a header then junk the demuxer skips, would be held, or read, for the
whole session with no error.
"""

MAX_PIECE_SECONDS = 600.0
"""Most audio one :meth:`ContainerDecoder.decode` call, or one clip, may decode to.

Compressed audio is no bound on decoded audio: a few kilobytes of crafted Opus
packets (each 2 bytes, each 120 ms of concealed silence) decode to hours. Past
this the piece is refused before its PCM is held, not after.
"""


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CodecError(
            "decoding WebM/Ogg/MP4/MP3 needs PyAV: pip install 'voicepipe[codecs]'"
        ) from exc
    return av


def _a(container: str) -> str:
    return ("a " if container == "webm" else "an ") + _NAMES[container]


def _expected(container: str) -> str:
    return f"{_a(container)} stream (it starts with {CONTAINER_SIGNATURES[container]})"


def _hint(container: str) -> str:
    if container == "mp4":
        return (
            "; a streamed MP4 must be fragmented (moof/mdat, as MediaRecorder writes it), "
            "a whole MP4 file decodes as one clip"
        )
    return ""


class _Pipe:
    """A blocking, non-seekable file for FFmpeg: :meth:`read` waits for :meth:`push`."""

    def __init__(self, cv: threading.Condition) -> None:
        self.cv = cv
        self.buf = bytearray()
        self.eof = False
        self.waiting = False  # the reader is blocked on an empty pipe

    def push(self, data: bytes) -> None:
        with self.cv:
            self.buf += data
            self.cv.notify_all()

    def end(self) -> None:
        with self.cv:
            self.eof = True
            self.cv.notify_all()

    def read(self, n: int) -> bytes:
        with self.cv:
            while not self.buf and not self.eof:
                self.waiting = True
                self.cv.notify_all()
                self.cv.wait()
            self.waiting = False
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out


class ContainerDecoder:
    """One continuous WebM/Ogg/MP4/MP3 stream, fed in pieces, to PCM16 mono at ``rate`` Hz.

    The first :meth:`decode` starts a decoding thread that lives until
    :meth:`flush` or :meth:`close`. Calls block until the thread has used all
    bytes given so far, so call them off the event loop
    (:func:`voicepipe.codecs.decode` does).
    """

    threaded = True

    def __init__(
        self, container: str, rate: int = 16000, *, max_seconds: float = MAX_PIECE_SECONDS
    ) -> None:
        if container not in _FORMATS:
            raise CodecError(
                f"no container decoder for {container!r}; use one of {', '.join(_FORMATS)}"
            )
        require_pyav("decoding WebM/Ogg/MP4/MP3")
        self.name = container
        self.rate = rate
        self.max_seconds = max_seconds
        self._max_out = _max_bytes(rate, max_seconds)
        self.samples = 0
        """PCM samples returned so far."""
        self._cv = threading.Condition()
        self._pipe = _Pipe(self._cv)
        self._out = bytearray()
        self._error: BaseException | None = None
        self._done = False
        self._thread: threading.Thread | None = None
        self._received = 0
        self._unheard = 0  # bytes taken since the last PCM came out
        self._head = b""

    # -- caller side -----------------------------------------------------------

    def decode(self, data: bytes) -> bytes:
        """Feed the next piece of the stream; return the PCM decoded so far."""
        self._check()
        if len(data) > MAX_PENDING:
            raise CodecError(f"a piece of {len(data)} bytes is over the {MAX_PENDING}-byte limit")
        if not data:
            return b""
        if self._received < SNIFF_BYTES:
            self._head += data[: SNIFF_BYTES - self._received]
            self._check_head()
        with self._cv:  # the demuxer may end its stream before the input ends:
            if self._done:  # nothing would read these bytes, so they must not be held
                raise CodecError(
                    f"the {_NAMES[self.name]} stream ended after {self._received} bytes, yet "
                    f"{len(data)} more came; send one stream per connection, from its first byte"
                )
            self._received += len(data)
            self._pipe.push(data)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name=f"voicepipe-decode-{self.name}", daemon=True
            )
            self._thread.start()
        with self._cv:
            self._cv.wait_for(self._idle)
        self._check()
        out = self._take()
        self._unheard = 0 if out else self._unheard + len(data)
        if self._unheard > MAX_SILENT_BYTES:
            self.close()  # FFmpeg lets go of what it held
            self._error = CodecError(
                f"{self._unheard} bytes of the {_NAMES[self.name]} stream in a row decoded to "
                f"no audio; expected {_expected(self.name)} with audio every few kilobytes"
            )
            self._check()
        return out

    def flush(self) -> bytes:
        """End the stream: the PCM still held. Raises if the stream held no audio at all."""
        self._pipe.end()
        if self._thread is not None:
            self._thread.join()
        error = self._error
        out = self._take()
        if self.samples == 0:
            what = "was empty" if not self._received else f"ended after {self._received} bytes"
            cause = f" ({error})" if error is not None and not isinstance(error, CodecError) else ""
            raise CodecError(
                f"the {_NAMES[self.name]} stream {what} without any audio{cause}; expected "
                f"{_expected(self.name)} holding at least one whole audio packet"
            ) from error
        self._check()
        return out

    def close(self) -> None:
        """Stop decoding and release the thread; what was not decoded is dropped."""
        with self._cv:
            self._pipe.buf.clear()
        self._pipe.end()
        if self._thread is not None:
            self._thread.join()

    def _check_head(self) -> None:
        """Refuse a stream whose first bytes are not this container's (FFmpeg would wait)."""
        head = self._head
        kind = sniff(head)
        if kind == self.name:
            return
        if kind is None and len(head) < SNIFF_BYTES and _could_be(self.name, head):
            return  # too few bytes yet
        got = f"{_a(kind)} stream" if kind else f"bytes {head[:8].hex(' ')}"
        raise CodecError(f"expected {_expected(self.name)}, got {got}")

    def _idle(self) -> bool:
        return self._done or (self._pipe.waiting and not self._pipe.buf)

    def _take(self) -> bytes:
        with self._cv:
            out = bytes(self._out)
            self._out.clear()
        self.samples += len(out) // 2
        return out

    def _check(self) -> None:
        if self._error is not None:
            raise CodecError(self._describe(self._error)) from self._error

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, CodecError):
            return str(exc)
        return f"could not decode the input as {_expected(self.name)}: {exc}{_hint(self.name)}"

    # -- decoding thread -------------------------------------------------------

    def _emit(self, pcm: bytes) -> None:
        with self._cv:
            self._out += pcm
            if len(self._out) > self._max_out:
                self._out.clear()
                raise CodecError(
                    f"one piece of the {_NAMES[self.name]} stream decoded to more than "
                    f"{self.max_seconds:g} s of audio; send the stream as it is recorded, "
                    "in pieces of a few seconds"
                )

    def _work(self) -> None:
        try:
            _decode_all(self._pipe, _FORMATS[self.name], self.rate, self._emit)
        except BaseException as exc:  # reported to the caller by _check
            self._error = exc
        finally:
            with self._cv:
                self._done = True
                self._pipe.buf.clear()  # nothing will read it any more
                self._cv.notify_all()


def _could_be(container: str, head: bytes) -> bool:
    """Whether ``head`` (fewer bytes than sniffing needs) may still start ``container``."""
    starts = {"webm": b"\x1a\x45\xdf\xa3", "ogg": b"OggS", "mp3": b"ID3"}
    if container == "mp4":
        return len(head) <= 4 or b"ftyp".startswith(head[4:])
    if container == "mp3" and head[:1] == b"\xff":
        return True
    return starts[container].startswith(head[:4])


def _decode_all(source: Any, fmt: str, rate: int, emit: Callable[[bytes], None]) -> None:
    av = _av()
    with av.open(source, mode="r", format=fmt) as container:
        if not container.streams.audio:
            raise CodecError(f"the {_NAMES.get(fmt, fmt)} stream has no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for packet in container.demux(stream):
            for frame in packet.decode():
                for out in resampler.resample(frame):
                    emit(out.to_ndarray().tobytes())
        for out in resampler.resample(None):
            emit(out.to_ndarray().tobytes())


def _max_bytes(rate: int, seconds: float) -> int:
    return int(rate * seconds) * 2


def decode_clip(
    data: bytes,
    rate: int = 16000,
    container: str | None = None,
    *,
    max_seconds: float = MAX_PIECE_SECONDS,
) -> bytes:
    """Decode a whole WebM/Ogg/MP4/MP3 clip in memory to PCM16 mono at ``rate``.

    ``container`` is sniffed from the first bytes when not given. It costs a
    few milliseconds per second of audio: call it off the event loop. A clip
    of more than ``max_seconds`` is refused.
    """
    kind = container or sniff(data[:64])
    if kind is None:
        raise CodecError(
            "the clip is not a recognised audio container; expected one of: "
            + "; ".join(f"{_NAMES[k]} ({v})" for k, v in CONTAINER_SIGNATURES.items())
        )
    if kind not in _FORMATS:
        raise CodecError(f"no container decoder for {kind!r}; use one of {', '.join(_FORMATS)}")
    chunks: list[bytes] = []
    size, limit, name = 0, _max_bytes(rate, max_seconds), _NAMES[kind]

    def emit(pcm: bytes) -> None:
        nonlocal size
        size += len(pcm)
        if size > limit:
            chunks.clear()
            raise CodecError(
                f"the {name} clip decodes to more than {max_seconds:g} s of audio; "
                "send clips shorter than that"
            )
        chunks.append(pcm)

    try:
        _decode_all(io.BytesIO(data), _FORMATS[kind], rate, emit)
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"could not decode the clip as {_expected(kind)}: {exc}") from exc
    pcm = b"".join(chunks)
    if not pcm:
        raise CodecError(
            f"the {_NAMES[kind]} clip of {len(data)} bytes holds no audio; expected "
            f"{_expected(kind)} holding at least one whole audio packet"
        )
    return pcm
