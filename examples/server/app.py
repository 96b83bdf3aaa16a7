"""The voicepipe example server: talk to an assistant, or fill in a form, from a browser.

Run it from the repository root (after ``pip install -e '.[server]'``)::

    uvicorn examples.server.app:app

then open http://127.0.0.1:8000. Providers are chosen as by the CLI
(:mod:`voicepipe.config`): the cloud ones when their keys are set, the offline
engines otherwise, or ``VOICEPIPE_STT=fake VOICEPIPE_LLM=fake VOICEPIPE_TTS=fake``
for a dry run. Serving settings are in ``settings.py``; ``docs/server.md``
has the wire protocol.

Routes: ``GET /`` the page, ``WS /listen`` free conversation,
``WS /forms/{name}`` the form agent over the forms in ``VOICEPIPE_FORMS_DIR``,
``GET /health``.
"""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from examples.server.settings import HERE, ServerSettings
from voicepipe import LLM, STT, TTS, AudioFormat, ConversationPolicy, Pipeline, Policy
from voicepipe.forms import Form, FormStore, load_form
from voicepipe.policies.form import FormPolicy
from voicepipe.transports.websocket import serve

__all__ = ["Providers", "RedactToken", "VoiceServer", "app", "create_app"]

log = logging.getLogger("voicepipe.server")

STATIC = HERE / "static"


@dataclass(slots=True)
class Providers:
    """The providers every session shares, built once per process."""

    stt: STT
    llm: LLM
    tts: TTS | None
    names: tuple[str, str, str] = ("custom", "custom", "custom")

    @classmethod
    def from_env(cls) -> Providers:
        """What ``VOICEPIPE_STT``/``_LLM``/``_TTS`` and the keys choose (see voicepipe.config)."""
        from voicepipe.config import choose, load_settings, make_llm, make_stt, make_tts

        settings = load_settings()
        stt, llm, tts = choose(settings)
        return cls(
            make_stt(stt, settings),
            make_llm(llm, settings),
            make_tts(tts, settings),
            (stt, llm, tts),
        )

    async def aclose(self) -> None:
        for provider in (self.stt, self.llm, self.tts):
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()


class RedactToken(logging.Filter):
    """Hides ``token=...`` in log lines (uvicorn logs every request's query string)."""

    _TOKEN = re.compile(r"([?&]token=)[^&\s\"']*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._TOKEN.sub(r"\1[redacted]", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._TOKEN.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def _redact_uvicorn_logs() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactToken) for f in logger.filters):
            logger.addFilter(RedactToken())


class VoiceServer:
    """What the routes share: settings, providers, the forms, their store, open sessions."""

    def __init__(self, settings: ServerSettings, providers: Providers | None) -> None:
        self.settings = settings
        self._injected = providers
        self.providers: Providers | None = providers
        self.forms: dict[str, Form] = {}
        self.store: FormStore | None = None
        self.sessions = 0

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        from voicepipe.forms import SQLiteFormStore

        async with AsyncExitStack() as stack:
            if self._injected is None:
                self.providers = Providers.from_env()
                stack.push_async_callback(self.providers.aclose)
            self.forms = _load_forms(self.settings.forms_dir)
            self.store = await stack.enter_async_context(SQLiteFormStore(self.settings.form_store))
            names = self.providers.names if self.providers else ()
            log.info("providers %s; forms %s", "/".join(names), ", ".join(self.forms) or "none")
            yield

    # -- who may connect -------------------------------------------------------

    def refusal(self, websocket: WebSocket) -> tuple[int, str] | None:
        """Why ``websocket`` may not open a session (close code, reason), or None."""
        origin = websocket.headers.get("origin")
        if origin is not None and not self._origin_allowed(origin, websocket.headers.get("host")):
            return 1008, f"origin {origin[:60]} is not allowed"
        expected = self.settings.access_token
        if expected is not None:
            given = websocket.query_params.get("token", "")
            scheme, _, credentials = websocket.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer":
                given = credentials.strip()
            if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
                return 1008, "missing or wrong access token"
        if self.sessions >= self.settings.max_sessions:
            return (
                1013,
                f"server busy: all {self.settings.max_sessions} sessions in use, retry later",
            )
        return None

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        """Browsers apply no CORS to WebSockets: only the server's own page and the
        listed origins may open a session from a browser."""
        allowed = self.settings.allowed_origins
        normalized = origin.strip().rstrip("/").lower()
        own = urlsplit(normalized).netloc == (host or "").lower()
        return "*" in allowed or normalized in allowed or own

    @asynccontextmanager
    async def admit(self, websocket: WebSocket) -> AsyncIterator[bool]:
        """Count the session while it runs; refuse it (accept, then close) if it may not."""
        refused = self.refusal(websocket)
        if refused is not None:
            code, reason = refused
            log.info("refused a session: %s", reason)
            await websocket.accept()
            await websocket.close(code, reason)
            yield False
            return
        self.sessions += 1
        try:
            yield True
        finally:
            self.sessions -= 1

    # -- one session -------------------------------------------------------------

    async def run(
        self, websocket: WebSocket, policy: Policy, session_id: str | None = None
    ) -> None:
        assert self.providers is not None, "the app's lifespan has not run"
        settings = self.settings
        pipeline = Pipeline(
            stt=self.providers.stt,
            llm=self.providers.llm,
            tts=self.providers.tts,
            policy=policy,
            input_format=AudioFormat(settings.sample_rate, 1),
            realtime_lead=settings.realtime_lead or None,
            max_chunk_bytes=settings.max_frame_bytes,
            session_id=session_id,  # a form's: the `session` event tells the client how to resume
        )
        await serve(
            websocket,
            pipeline,
            max_frame_bytes=settings.max_frame_bytes,
            max_seconds=settings.max_session_seconds,
            max_audio_bytes=settings.max_audio_bytes,
        )

    def health(self) -> dict[str, Any]:
        names = self.providers.names if self.providers else ("", "", "")
        return {
            "status": "ok",
            "sessions": self.sessions,
            "max_sessions": self.settings.max_sessions,
            "providers": dict(zip(("stt", "llm", "tts"), names, strict=True)),
            "forms": sorted(self.forms),
        }


def _load_forms(folder: Path) -> dict[str, Form]:
    if not folder.is_dir():
        log.warning("no forms folder at %s: /forms/{name} has no forms", folder)
        return {}
    paths = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    forms = [load_form(path) for path in paths]
    return {form.name: form for form in forms}


def create_app(
    settings: ServerSettings | None = None, *, providers: Providers | None = None
) -> FastAPI:
    """The server. ``providers`` (else chosen from the environment at startup) are shared
    by every session; each session gets its own Pipeline and policy."""
    server = VoiceServer(settings or ServerSettings(), providers)
    app = FastAPI(title="voicepipe", lifespan=server.lifespan, docs_url=None, redoc_url=None)
    app.state.server = server
    _redact_uvicorn_logs()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return server.health()

    @app.websocket("/listen")
    async def listen(websocket: WebSocket) -> None:
        async with server.admit(websocket) as admitted:
            if admitted:
                await server.run(websocket, ConversationPolicy())

    @app.websocket("/forms/{name}")
    async def fill_form(websocket: WebSocket, name: str) -> None:
        async with server.admit(websocket) as admitted:
            if not admitted:
                return
            form = server.forms.get(name)
            if form is None or server.store is None:
                await websocket.accept()
                await websocket.close(1008, f"no form named {name[:40]!r}")
                return
            session_id = websocket.query_params.get("session", "")[:200] or uuid.uuid4().hex
            async with FormPolicy(form, store=server.store, session_id=session_id) as policy:
                await server.run(websocket, policy, session_id)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


app = create_app()
