"""The server: a FastAPI app with the browser page, the conversation and the form agent.

Routes: ``GET /`` the page (and ``/static/``), ``WS /listen`` free
conversation, ``WS /forms/{name}`` the form agent over the forms in
``forms_dir``, ``GET /health``; the routes for other clients (Twilio, the
push-to-talk forms client) are in :mod:`voicepipe.server.dialects`.
``docs/server.md`` has the wire protocol.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from voicepipe.audio import AudioFormat
from voicepipe.forms import Form, FormStore
from voicepipe.pipeline import Pipeline
from voicepipe.policies.base import Policy
from voicepipe.policies.conversation import ConversationPolicy
from voicepipe.policies.form import FormPolicy
from voicepipe.server import security
from voicepipe.server.dialects import mount_dialect_routes
from voicepipe.server.drain import RECONNECT, Drain
from voicepipe.server.forms import load_forms, open_store
from voicepipe.server.providers import Providers
from voicepipe.server.settings import ServerSettings
from voicepipe.transports.dialect import Dialect
from voicepipe.transports.dialects.voicepipe import VoicepipeDialect
from voicepipe.transports.websocket import serve

__all__ = ["STATIC", "VoiceServer", "create_app"]

log = logging.getLogger("voicepipe.server")

STATIC = Path(__file__).resolve().parent / "static"
"""The browser page and its scripts (package data: a pip install serves them)."""


class VoiceServer:
    """What the routes share: settings, providers, the forms, their store, open sessions."""

    def __init__(
        self,
        settings: ServerSettings,
        providers: Providers | None,
        may_resume: security.ResumeCheck | None = None,
    ) -> None:
        self.settings = settings
        secret = settings.session_secret
        self.signer = security.SessionSigner(secret.get_secret_value().encode() if secret else None)
        self.may_resume: security.ResumeCheck = may_resume or self.signer.check
        self._injected = providers
        self.providers: Providers | None = providers
        self.forms: dict[str, Form] = {}
        self.store: FormStore | None = None
        self.drain = Drain(settings.drain_seconds, settings.drain_stop_seconds)

    @property
    def sessions(self) -> int:
        """Sessions running in this process now."""
        return self.drain.sessions

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if self._injected is None:
                self.providers = Providers.from_env()
                stack.push_async_callback(self.providers.aclose)
            self.forms = load_forms(self.settings.forms_dir)
            self.store = await stack.enter_async_context(open_store(self.settings))
            names = self.providers.names if self.providers else ()
            log.info("providers %s; forms %s", "/".join(names), ", ".join(self.forms) or "none")
            async with anyio.create_task_group() as tg:
                await tg.start(self.drain.watch)
                if self.settings.gc_freeze:
                    # What startup made lives as long as the process: later collections
                    # need not walk it (sessions' p99 lag falls with the pause length).
                    gc.collect()
                    gc.freeze()
                if self.settings.gc_threshold is not None:
                    # Fewer collections: each one is a pause for every session.
                    gc.set_threshold(self.settings.gc_threshold, *gc.get_threshold()[1:])
                yield
                tg.cancel_scope.cancel()

    # -- who may connect -------------------------------------------------------

    def refusal(self, websocket: WebSocket) -> tuple[int, str] | None:
        """Why ``websocket`` may not open a session (close code, reason), or None."""
        if self.drain.draining:
            return RECONNECT
        refused = security.refusal(self.settings, websocket)
        if refused is not None:
            return refused
        if self.sessions >= self.settings.max_sessions:
            return (
                1013,
                f"server busy: all {self.settings.max_sessions} sessions in use, retry later",
            )
        return None

    @asynccontextmanager
    async def admit(self, websocket: WebSocket) -> AsyncIterator[bool]:
        """Count the session while it runs; refuse it (accept, then close) if it may not."""
        refused = self.refusal(websocket)
        if refused is not None:
            code, reason = refused
            log.info("refused a session: %s", reason)
            await websocket.accept(subprotocol=security.subprotocol(websocket))
            await websocket.close(code, reason)
            yield False
            return
        with self.drain.session() as scope, scope:
            yield True

    # -- one session -------------------------------------------------------------

    async def run(
        self,
        websocket: WebSocket,
        policy: Policy,
        session_id: str | None = None,
        *,
        dialect: Callable[[], Dialect] = VoicepipeDialect,
        speak: bool = True,
    ) -> None:
        """One session; ``dialect`` is the client's protocol, ``speak=False`` skips the TTS."""
        assert self.providers is not None, "the app's lifespan has not run"
        settings = self.settings
        pipeline = Pipeline(
            stt=self.providers.stt,
            llm=self.providers.llm,
            tts=self.providers.tts if speak else None,
            policy=policy,
            input_format=AudioFormat(settings.sample_rate, 1),
            realtime_lead=settings.realtime_lead or None,
            max_chunk_bytes=settings.max_frame_bytes,
            session_id=session_id,  # a form's: the `session` event tells the client how to resume
        )
        await serve(
            websocket,
            pipeline,
            dialect=dialect,
            max_frame_bytes=settings.max_frame_bytes,
            max_seconds=settings.max_session_seconds,
            max_audio_bytes=settings.max_audio_bytes,
            send_timeout=settings.send_timeout,
            shutdown=self.drain.shutdown,
        )

    def health(self) -> dict[str, Any]:
        names = self.providers.names if self.providers else ("", "", "")
        return {
            "status": "draining" if self.drain.draining else "ok",
            "sessions": self.sessions,
            "max_sessions": self.settings.max_sessions,
            "providers": dict(zip(("stt", "llm", "tts"), names, strict=True)),
            "forms": sorted(self.forms),
        }


def create_app(
    settings: ServerSettings | None = None,
    *,
    providers: Providers | None = None,
    may_resume: security.ResumeCheck | None = None,
) -> FastAPI:
    """The server. ``settings`` default to the environment's (``VOICEPIPE_*``, ``.env``);
    ``providers`` (else chosen from the environment at startup) are shared by every
    session; each session gets its own Pipeline and policy. ``may_resume(connection,
    form, session_id)`` decides who may open a form session by its id (default: only
    ids this server issued; see :class:`voicepipe.server.security.SessionSigner`)."""
    server = VoiceServer(settings or ServerSettings(), providers, may_resume)
    app = FastAPI(title="voicepipe", lifespan=server.lifespan, docs_url=None, redoc_url=None)
    app.state.server = server
    app.add_middleware(security.TrustedHosts, settings=server.settings)
    token = server.settings.access_token
    security.redact_uvicorn_logs(*([token.get_secret_value()] if token else []))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)  # no icon, and no 404 in the log for every page load

    @app.get("/health")
    async def health() -> JSONResponse:
        # 503 while draining: a load balancer stops sending this worker new sessions.
        return JSONResponse(server.health(), status_code=503 if server.drain.draining else 200)

    tools = _load_tools(server.settings.tools)

    async def listen(websocket: WebSocket) -> None:
        async with server.admit(websocket) as admitted:
            if admitted:
                await server.run(websocket, ConversationPolicy(tools=tools))

    async def fill_form(websocket: WebSocket) -> None:
        name: str = websocket.path_params["name"]
        async with server.admit(websocket) as admitted:
            if not admitted:
                return
            form = server.forms.get(name)
            if form is None or server.store is None:
                await websocket.accept(subprotocol=security.subprotocol(websocket))
                await websocket.close(1008, f"no form named {name[:40]!r}")
                return
            # An id is not a credential: without proof it starts nothing and discloses nothing.
            session_id = websocket.query_params.get("session", "")[:200]
            if not session_id:
                session_id = server.signer.new(name)
            elif not await security.may_resume(server.may_resume, websocket, name, session_id):
                log.info("refused a form session: no proof of ownership")
                await websocket.accept(subprotocol=security.subprotocol(websocket))
                await websocket.close(1008, "unknown form session, or not yours to resume")
                return
            async with FormPolicy(form, store=server.store, session_id=session_id) as policy:
                await server.run(websocket, policy, session_id)

    # Plain Starlette routes: FastAPI's own (dependency solving, two exit stacks) cost a
    # connection about 0.12M instructions and give these endpoints nothing.
    app.router.add_websocket_route("/listen", listen)
    app.router.add_websocket_route("/forms/{name}", fill_form)
    mount_dialect_routes(app, server)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _load_tools(reference: str | None) -> list[Any]:
    """The tools of ``VOICEPIPE_TOOLS``, loaded once at startup (a bad reference fails it)."""
    if not reference:
        return []
    from voicepipe.tools import load_tools

    try:
        return list(load_tools(reference))
    except ValueError as exc:
        raise ValueError(f"VOICEPIPE_TOOLS: {exc}") from exc
