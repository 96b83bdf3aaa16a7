"""The server's routes for clients that speak another protocol than voicepipe's own.

* ``WS /twilio`` and ``WS /twilio/forms/{name}``: phone calls through Twilio
  Media Streams (``docs/telephony.md``), a conversation or a form agent.
* ``WS /api/v1/ws/voice-agents``: the push-to-talk forms client
  (``docs/server.md``), on the example ``intake`` form. Its ``user_id`` is
  not a credential: every connection is a new form session.

The seed voice assistant's page needs no route of its own: ``/listen``
recognises its WebM stream, and ``?input=webm&output=mp3`` gets it MP3.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from fastapi import FastAPI, WebSocket

from voicepipe.policies.base import Policy
from voicepipe.policies.conversation import ConversationPolicy
from voicepipe.policies.form import FormPolicy
from voicepipe.transports.dialects.clips import ClipsDialect
from voicepipe.transports.dialects.twilio import TwilioDialect, signature_valid

if TYPE_CHECKING:
    from voicepipe.server.app import VoiceServer

__all__ = ["CLIPS_FORM", "mount_dialect_routes", "twilio_url"]

log = logging.getLogger("voicepipe.server")

CLIPS_FORM = "intake"
"""The form the push-to-talk forms client fills in."""


def twilio_url(websocket: WebSocket, public_base: str | None) -> str:
    """The URL Twilio signed: ``public_base`` + path and query, else rebuilt from the request
    (``X-Forwarded-Proto: https`` behind a TLS-terminating proxy means ``wss``)."""
    url = websocket.url
    tail = url.path + (f"?{url.query}" if url.query else "")
    if public_base:
        return public_base.rstrip("/") + tail
    proto = websocket.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    scheme = "wss" if proto in ("https", "wss") or url.scheme == "wss" else "ws"
    host = websocket.headers.get("host", url.netloc)
    return f"{scheme}://{host}{tail}"


def mount_dialect_routes(app: FastAPI, vs: VoiceServer) -> None:
    """Add the Twilio and push-to-talk routes to ``app``, served by ``vs``."""

    async def twilio_call(websocket: WebSocket, policy: Policy) -> None:
        token = vs.settings.twilio_auth_token
        if token is None:  # guarded like any route (Twilio cannot present an access token)
            async with vs.admit(websocket) as admitted:
                if admitted:
                    await vs.run(websocket, policy, dialect=TwilioDialect)
            return
        url = twilio_url(websocket, vs.settings.twilio_public_url)
        signature = websocket.headers.get("x-twilio-signature")
        if not signature_valid(token.get_secret_value(), url, signature):
            log.info("refused a Twilio stream: bad or missing X-Twilio-Signature")
            await websocket.close(1008)  # before accept: HTTP 403
            return
        if vs.drain.draining:  # a worker going away takes no new call
            await websocket.close(1012)
            return
        if vs.sessions >= vs.settings.max_sessions:
            await websocket.close(1013)
            return
        # The signature stands in for the access token; capacity and the drain still count.
        with vs.drain.session() as scope, scope:
            await vs.run(websocket, policy, dialect=TwilioDialect)

    async def twilio(websocket: WebSocket) -> None:
        await twilio_call(websocket, ConversationPolicy())

    async def twilio_form(websocket: WebSocket) -> None:
        name: str = websocket.path_params["name"]
        form = vs.forms.get(name)
        if form is None or vs.store is None:
            await websocket.close(1008)
            return
        session_id = f"call-{uuid.uuid4().hex}"
        async with FormPolicy(form, store=vs.store, session_id=session_id) as policy:
            await twilio_call(websocket, policy)

    async def voice_agents(websocket: WebSocket) -> None:
        async with vs.admit(websocket) as admitted:
            if not admitted:
                return
            form = vs.forms.get(CLIPS_FORM)
            if form is None or vs.store is None:
                await websocket.accept()
                await websocket.close(1008, f"this server has no {CLIPS_FORM!r} form")
                return
            session_id = vs.signer.new(CLIPS_FORM)  # user_id identifies nobody: a new session
            async with FormPolicy(form, store=vs.store, session_id=session_id) as policy:
                await vs.run(websocket, policy, session_id, dialect=ClipsDialect, speak=False)

    app.router.add_websocket_route("/twilio", twilio)
    app.router.add_websocket_route("/twilio/forms/{name}", twilio_form)
    app.router.add_websocket_route("/api/v1/ws/voice-agents", voice_agents)
