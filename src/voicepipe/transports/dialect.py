"""Wire dialects: what one kind of client sends and what it gets back.

The transport core (:func:`voicepipe.transports.websocket.serve`) owns the
socket: it accepts it, enforces the frame size, the budgets and the time
limit, runs the :class:`~voicepipe.Pipeline`, and sends every frame through
one ordered writer with a timeout on each send. A :class:`Dialect` owns the
meaning of the frames, and nothing else. One dialect instance serves one
connection, so it keeps that connection's state (declared formats, decoders,
encoders, a stream id, pending marks). Dialects live in
:mod:`voicepipe.transports.dialects`, one small file each;
``dialects/voicepipe.py`` is voicepipe's own protocol (``docs/server.md``).

The hooks, in the order the core calls them:

``open(link)``
    Before the session starts: read ``link.query`` and ``link.headers`` and
    set :attr:`Dialect.text_mode` (typed turns, ``Pipeline.run_text``,
    instead of audio). Must not send; whatever may fail belongs in ``start``.
``on_event(event, link)``
    Every pipeline event, in order, ``Session`` first and ``Finish`` last:
    shape it for this client with ``await link.send(frame)`` (any number of
    frames, or none). Audio arrives as :class:`~voicepipe.events.AudioChunk`
    (PCM16 in ``link.pipeline.output_format``): encode it here (MP3, μ-law,
    base64 in JSON...). ``AssistantReply`` and ``Interrupted`` end a reply:
    flush an encoder there; ``Interrupted`` is where a client is told to stop
    playback (a ``clear`` message). The default sends :func:`to_wire`.
``start(link)``
    Once, right after the ``Session`` event was shaped and before the first
    client frame is read: act on what the URL declared (a format, a codec),
    reporting a problem with ``link.error`` or ``link.fail`` so that it comes
    after ``session`` like any other error.
``on_frame(frame, link)``
    Every client frame (``str`` for text, ``bytes`` for binary), already
    checked against the size limit. Parse it (:func:`parse_json` turns bad
    or absurdly nested JSON into a :class:`ProtocolError`), decode audio to
    PCM16 in ``link.pipeline.input_format`` and hand it on with
    ``link.audio(pcm)``, typed turns with ``link.text``, the end of input
    with ``link.end_input()``. Bad input gets ``await link.error(message)``
    (an ``input`` error event, shaped by ``on_event``; the session goes on);
    input that makes the session pointless gets ``await link.fail(message)``
    (a non-recoverable error, then close 1008). Incoming acknowledgements
    (Twilio's ``mark``) are handled here as well. Slow work (a decoder) goes
    to a thread or to a task of the session: ``link.start_soon``.
``on_frame_nowait(frame, link)``
    Optional, for servers whose WebSocket layer offers it (``voicepipe
    serve``'s): take the common frame (audio the pipeline hears as is) in the
    socket's own callback, with ``link.audio_nowait(pcm)``, and return True;
    return False for anything else, and ``on_frame`` gets it as usual. It
    saves a task wake-up per frame. It is called only while ``on_frame`` is
    idle, so frames stay in order. Once every binary frame is PCM16 to hear
    as is (no codec, no resampling), say so with ``link.audio_as_is()``: the
    server then hands such frames over itself, with no call to the dialect
    per frame; what it cannot take still reaches ``on_frame``.
``aclose()``
    The session is over, however it ended (shielded, bounded to a second or
    two): release threads and native codec state. It must not send.

What the core guarantees a dialect: hooks are never called concurrently
with themselves (``on_frame`` runs in the reading task, ``on_event`` in the
event task; keep state that both touch simple), frames reach the client in
the order they were sent, an error a client frame provokes never reaches the
client after the frames ``on_event`` sent for ``Finish``, and nothing is
sent once the close was queued.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from voicepipe.errors import ProtocolError, Stage
from voicepipe.events import Event, to_wire

if TYPE_CHECKING:
    from voicepipe.pipeline import Pipeline

__all__ = ["Dialect", "Link", "parse_json"]


class Link(Protocol):
    """What a dialect can see and do on its connection (the core implements it)."""

    @property
    def query(self) -> Mapping[str, str]:
        """The URL's query parameters (decoded)."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The upgrade request's headers (case-insensitive names)."""
        ...

    @property
    def pipeline(self) -> Pipeline:
        """The session's pipeline: its formats, its id, its hooks."""
        ...

    @property
    def input_ended(self) -> bool:
        """Whether :meth:`end_input` was called."""
        ...

    async def audio(self, pcm: bytes) -> None:
        """Hand PCM16 in ``pipeline.input_format`` to the pipeline (counts against the
        audio budget; dropped after :meth:`end_input`). Waits while the pipeline is behind."""
        ...

    def audio_nowait(self, pcm: bytes) -> bool:
        """:meth:`audio` if it needs no wait and no error: True if ``pcm`` was taken,
        False if it must go through :meth:`audio` (input ended, budget, a full queue)."""
        ...

    async def spend_audio(self, size: int) -> bool:
        """Count ``size`` bytes of PCM the pipeline hears another way (a clip transcribed
        whole) against the audio budget, as :meth:`audio` counts its own. False when
        that uses it up: the session then ends as :meth:`audio` ends it."""
        ...

    def audio_as_is(self) -> None:
        """From now on every binary frame is PCM16 in ``pipeline.input_format``, heard as
        is: the server may take such frames with :meth:`audio_nowait` itself, without
        calling ``on_frame_nowait``. Frames it does not take still reach ``on_frame``."""
        ...

    async def text(self, content: str) -> None:
        """Hand a typed user turn to a text-mode session."""
        ...

    async def end_input(self) -> None:
        """No more input: the turn in progress is answered, then the session finishes."""
        ...

    async def send(self, frame: str | bytes) -> None:
        """Queue a frame for the client (the one ordered writer sends it)."""
        ...

    async def error(self, message: str, *, stage: Stage = "input") -> None:
        """Report bad input as a recoverable ``error`` event; the session goes on."""
        ...

    async def fail(self, message: str, *, stage: Stage = "input") -> None:
        """End the session: a non-recoverable ``error`` event, then close 1008."""
        ...

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``func(*args)`` as a task of this session (cancelled when it ends)."""
        ...


class Dialect:
    """Base class of dialects: events as :func:`to_wire` frames, and no input.

    Subclass it and override the hooks the module docstring describes.
    """

    subprotocols: tuple[str, ...] = ()
    """WebSocket subprotocols this dialect speaks; the core accepts the first one the
    client offers (a browser drops a connection that offered some and got none)."""

    text_mode: bool = False
    """Run the session on typed turns (``link.text``) instead of audio."""

    async def open(self, link: Link) -> None:
        """Read the URL and headers, set :attr:`text_mode`. Sends nothing."""

    async def start(self, link: Link) -> None:
        """Act on what the URL declared, right after the ``session`` event."""

    async def on_frame(self, frame: str | bytes, link: Link) -> None:
        """One client frame."""
        await link.error(f"{type(self).__name__} takes no input")

    def on_frame_nowait(self, frame: str | bytes, link: Link) -> bool:
        """The fast path for a common frame (see the module's docstring): True if taken."""
        return False

    async def on_event(self, event: Event, link: Link) -> None:
        """One pipeline event: send it as this client expects it."""
        await link.send(to_wire(event))

    async def aclose(self) -> None:
        """The session is over: release what the dialect holds."""


def parse_json(raw: str | bytes) -> Any:
    """A client's JSON frame, or :class:`ProtocolError` saying why not.

    Nesting too deep for the parser (``"[" * 100000``) is bad input like any
    other, not a crash.
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise ProtocolError("JSON message is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"message is not valid JSON: {exc}") from exc
