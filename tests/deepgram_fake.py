"""A loopback fake of Deepgram's live transcription websocket, for tests.

It speaks just enough of the protocol for ``deepgram-sdk`` to connect and for
:class:`voicepipe.providers.deepgram.DeepgramSTT` to be exercised end to end:

- a ``websockets`` server on 127.0.0.1 (random port) at ``/v1/listen``;
- checks the ``Authorization: Token <key>`` header (a wrong key gets a 401,
  as does every connection when ``refuse=401``) and, if asked, the query
  parameters (a mismatch gets a 400 and is recorded in ``problems``);
- records what every connection received: query, audio frames, control
  messages (``KeepAlive``, ``Finalize``, ``CloseStream``) in order;
- answers from a script: after the n-th audio frame, or on a control
  message, it sends scripted JSON messages (``Results``, ``SpeechStarted``,
  ``UtteranceEnd``, anything) or drops the connection without a close frame;
- on ``CloseStream`` it sends a ``Metadata`` message and closes normally.

The script is per connection, so a test can drop the first connection and
check what the client replays on the second.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import anyio
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

if TYPE_CHECKING:
    from deepgram import DeepgramClientEnvironment

__all__ = [
    "DROP",
    "SDK_WARNING_FILTER",
    "TEST_KEY",
    "Connection",
    "FakeDeepgram",
    "Script",
    "Trigger",
    "raw",
    "results",
    "speech_started",
    "utterance_end",
]

TEST_KEY = "dg-test-key-0123456789"

SDK_WARNING_FILTER = (
    "ignore:websockets.exceptions.InvalidStatusCode is deprecated:DeprecationWarning"
)
"""deepgram-sdk 7.16 imports a third deprecated websockets name, besides the two
pyproject.toml already ignores; test modules using the SDK ignore it too."""

DROP: dict[str, Any] = {"__drop__": True}
"""A script action: close the TCP connection without a websocket close frame."""


def raw(text: str) -> dict[str, Any]:
    """A script action: send ``text`` as a text frame as it is (malformed JSON, say)."""
    return {"__raw__": text}


Trigger = int | str
"""When a scripted action runs: after the n-th audio frame (1-based) of the
connection, when a control message arrives (``"Finalize"``: every time), or
when it arrives for the n-th time on the connection (``"Finalize:1"``)."""

Script = Mapping[Any, Sequence[Mapping[str, Any]]]
"""Trigger → actions (dicts to send as JSON, or :data:`DROP`)."""


def results(
    transcript: str,
    *,
    is_final: bool = False,
    speech_final: bool = False,
    from_finalize: bool = False,
    start: float = 0.0,
    duration: float = 0.1,
) -> dict[str, Any]:
    """A ``Results`` message as Deepgram sends it (trimmed to what clients read)."""
    words = [
        {"word": w, "start": start, "end": start + duration, "confidence": 0.99}
        for w in transcript.split()
    ]
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": duration,
        "start": start,
        "is_final": is_final,
        "speech_final": speech_final,
        "from_finalize": from_finalize,
        "channel": {
            "alternatives": [{"transcript": transcript, "confidence": 0.99, "words": words}]
        },
        "metadata": {
            "request_id": "fake-request",
            "model_info": {"name": "nova-3", "version": "fake", "arch": "fake"},
            "model_uuid": "fake-model",
        },
    }


def speech_started(timestamp: float = 0.0) -> dict[str, Any]:
    return {"type": "SpeechStarted", "channel": [0, 1], "timestamp": timestamp}


def utterance_end(last_word_end: float = 0.0) -> dict[str, Any]:
    return {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": last_word_end}


def _metadata(duration: float) -> dict[str, Any]:
    return {
        "type": "Metadata",
        "transaction_key": "deprecated",
        "request_id": "fake-request",
        "sha256": "0" * 64,
        "created": "2026-01-01T00:00:00.000Z",
        "duration": duration,
        "channels": 1,
    }


@dataclass
class Connection:
    """What one client connection sent: its query and, in order, its messages."""

    query: dict[str, list[str]]
    audio: list[bytes] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    """Everything in arrival order: ``"audio"`` or the control message type."""
    closed_normally: bool = False

    @property
    def params(self) -> dict[str, str]:
        """The query with one value per name (the last), for simple asserts."""
        return {k: v[-1] for k, v in self.query.items()}


class FakeDeepgram:
    """Run with ``async with FakeDeepgram(scripts=[...]) as fake:``.

    ``scripts[i]`` drives the i-th connection; connections past the end
    reuse the last script. ``expect_params`` are query parameters every
    connection must carry (values as strings, e.g. ``"true"``).
    """

    def __init__(
        self,
        scripts: Sequence[Script] = ({},),
        *,
        api_key: str = TEST_KEY,
        expect_params: Mapping[str, str] | None = None,
        refuse: int | None = None,
        sample_bytes_per_second: int = 32000,
    ) -> None:
        self.scripts = list(scripts) or [{}]
        self.api_key = api_key
        self.expect_params = dict(expect_params or {})
        self.refuse = refuse
        self.bytes_per_second = sample_bytes_per_second
        self.connections: list[Connection] = []
        self.problems: list[str] = []
        self.handshakes = 0
        self._seen: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self._server: Server | None = None
        self.port = 0

    async def __aenter__(self) -> FakeDeepgram:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._check_request
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def environment(self) -> DeepgramClientEnvironment:
        """An SDK environment pointing every Deepgram URL at this fake."""
        from deepgram import DeepgramClientEnvironment

        http = f"http://127.0.0.1:{self.port}"
        return DeepgramClientEnvironment(
            base=http, production=self.url, agent=self.url, agent_rest=http
        )

    async def wait_for(self, kind: str) -> None:
        """Wait until any connection has sent the control message ``kind``."""
        await self._seen[kind].wait()

    # --- handshake --------------------------------------------------------

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        if self.refuse is not None:
            return conn.respond(HTTPStatus(self.refuse), "refused by the fake\n")
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            self.problems.append("bad or missing Authorization header")
            return conn.respond(HTTPStatus.UNAUTHORIZED, "invalid credentials\n")
        url = urlsplit(request.path)
        if url.path != "/v1/listen":
            self.problems.append(f"unexpected path {url.path}")
            return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")
        query = parse_qs(url.query)
        for name, value in self.expect_params.items():
            got = query.get(name, [None])[-1]
            if got != value:
                self.problems.append(f"query {name}={got!r}, expected {value!r}")
                return conn.respond(HTTPStatus.BAD_REQUEST, f"bad {name}\n")
        return None

    # --- session ----------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path if ws.request else "")
        record = Connection(query=parse_qs(url.query))
        script = self.scripts[min(len(self.connections), len(self.scripts) - 1)]
        self.connections.append(record)
        received_bytes = 0
        try:
            async for message in ws:
                trigger: Trigger
                actions: list[Mapping[str, Any]] = []
                if isinstance(message, bytes):
                    record.audio.append(message)
                    record.log.append("audio")
                    received_bytes += len(message)
                    trigger = len(record.audio)
                    actions += script.get(trigger, ())
                else:
                    kind = json.loads(message).get("type", "?")
                    record.controls.append(kind)
                    record.log.append(kind)
                    trigger = kind
                    self._seen[kind].set()
                    actions += script.get(kind, ())
                    actions += script.get(f"{kind}:{record.controls.count(kind)}", ())
                for action in actions:
                    if action.get("__drop__"):
                        ws.transport.close()  # TCP FIN, no close frame: an abnormal close
                        return
                    if "__raw__" in action:
                        await ws.send(action["__raw__"])
                        continue
                    await ws.send(json.dumps(action))
                if trigger == "CloseStream":
                    await ws.send(json.dumps(_metadata(received_bytes / self.bytes_per_second)))
                    record.closed_normally = True
                    await ws.close()
                    return
        except ConnectionClosed:
            return
