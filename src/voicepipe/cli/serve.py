"""``voicepipe serve``: the server (page, conversation, forms) under uvicorn, on one or more
worker processes.

Settings come from ``VOICEPIPE_*`` variables, ``--env-file`` and the flags
(flags win, then the environment, then the file); they are checked here, so a
bad one is one line and exit 2, not a traceback in every worker. Workers are
uvicorn's: they share the listening socket and each runs its own sessions.
"""

from __future__ import annotations

import copy
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voicepipe.cli.errors import EXIT_OK, EXIT_PROVIDER, CliError, guard
from voicepipe.config import choose, load_settings

if TYPE_CHECKING:
    from voicepipe.server.settings import ServerSettings

DEFAULT_APP = "voicepipe.server:create_app"

PICOWS = "voicepipe.server.uvicorn_ws:PicowsProtocol"
"""uvicorn's ``ws=`` for voicepipe's picows layer (a string: it pickles into the workers)."""

GC_THRESHOLD = 20_000
"""The collector's generation-0 threshold under ``voicepipe serve`` (``VOICEPIPE_GC_THRESHOLD``;
Python's default is 700): fewer collections, so fewer pauses for every session."""

WS_LAYERS = ("picows", "websockets-sansio", "websockets", "wsproto")
"""``--ws`` choices: voicepipe's picows layer (the default), then uvicorn's own."""


def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.", min=0)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-w",
            help="Worker processes (one per core spreads sessions over the cores). "
            "Form sessions resume on any worker only with a shared PostgreSQL store "
            "(VOICEPIPE_FORM_STORE_DSN).",
            min=1,
        ),
    ] = 1,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="A .env file of VOICEPIPE_* settings and provider keys "
            "(the environment wins over it; default: .env here, if any).",
            show_default=False,
        ),
    ] = None,
    forms_dir: Annotated[
        Path | None,
        typer.Option(
            "--forms-dir",
            help="Folder of the forms served at /forms/{name} \\[default: ./forms or "
            "VOICEPIPE_FORMS_DIR].",
            show_default=False,
        ),
    ] = None,
    drain_seconds: Annotated[
        float | None,
        typer.Option(
            "--drain-seconds",
            help="On SIGTERM, how long sessions in progress may go on before they are ended "
            "\\[default: 30 or VOICEPIPE_DRAIN_SECONDS].",
            show_default=False,
            min=0,
        ),
    ] = None,
    app: Annotated[
        str,
        typer.Option(
            "--app",
            help="The app factory to serve, as module:function (called with no argument); "
            "for your own providers or routes around voicepipe.server.create_app.",
        ),
    ] = DEFAULT_APP,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn's log level (debug, info, warning, ...).")
    ] = "info",
    ws: Annotated[
        str,
        typer.Option(
            "--ws",
            help="The WebSocket layer: picows (frames parsed in C; the fastest), or one of "
            "uvicorn's own: websockets-sansio, websockets, wsproto.",
        ),
    ] = "picows",
) -> None:
    """Serve the browser page and the WebSocket sessions (needs the 'server' extra).

    Routes: GET / (the page), WS /listen (conversation), WS /forms/{name}
    (the form agent), GET /health. On SIGTERM each worker drains: new
    sessions are refused with close code 1012, /health answers 503, and the
    sessions in progress go on for --drain-seconds, then end with finish
    reason 'shutdown' (close 1001). See docs/server.md.
    """

    def run() -> int:
        try:
            import uvicorn
        except ImportError:
            raise CliError(
                "voicepipe serve needs the server extra: pip install 'voicepipe[server]'",
                EXIT_PROVIDER,
            ) from None
        ws_class = _ws_layer(ws)
        settings = _apply_settings(env_file, forms_dir, drain_seconds)
        if app == DEFAULT_APP:  # a bad or unavailable provider choice: one line, here
            choose(load_settings())
        uvicorn.run(
            app,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            log_config=_log_config(),
            ws=ws_class,
            # Audio does not compress, and a session's deflate contexts take over 100 KiB
            # and CPU on every frame: no permessage-deflate (docs/server.md).
            ws_per_message_deflate=False,
            # A frame over the app's limit is refused at its header (1009), before the
            # layer buffers it: picows's read buffer grows to fit the largest frame and
            # never shrinks, so this bounds what one connection can hold (docs/server.md).
            ws_max_size=settings.max_frame_bytes,
        )
        return EXIT_OK

    guard(run)


def _ws_layer(name: str) -> str:
    """uvicorn's ``ws=`` for ``--ws``, checked here: a missing library is one line."""
    if name not in WS_LAYERS:
        raise CliError(f"--ws {name}: use one of {', '.join(WS_LAYERS)}")
    module = {"websockets-sansio": "websockets"}.get(name, name)
    try:
        __import__(module)
    except ImportError:
        fix = "pip install 'voicepipe[server]'" if name == "picows" else f"pip install {module}"
        raise CliError(f"--ws {name} needs {module}: {fix}", EXIT_PROVIDER) from None
    return PICOWS if name == "picows" else name


def _apply_settings(
    env_file: Path | None, forms_dir: Path | None, drain: float | None
) -> ServerSettings:
    """Put the flags and the env file in this process's environment (the workers inherit
    it), then check the settings once; they are returned."""
    if env_file is not None:
        if not env_file.is_file():
            raise CliError(f"{env_file}: no such file")
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)
    if forms_dir is not None:
        if not forms_dir.is_dir():
            raise CliError(f"{forms_dir}: no such folder")
        os.environ["VOICEPIPE_FORMS_DIR"] = str(forms_dir.resolve())
    if drain is not None:
        os.environ["VOICEPIPE_DRAIN_SECONDS"] = repr(drain)
    # Startup's objects (modules, app, providers) live as long as the worker: freeze them
    # out of the collector's way, and collect less often (docs/server.md, "Settings"),
    # unless told otherwise.
    os.environ.setdefault("VOICEPIPE_GC_FREEZE", "1")
    os.environ.setdefault("VOICEPIPE_GC_THRESHOLD", str(GC_THRESHOLD))
    from pydantic import ValidationError

    from voicepipe.server.settings import ServerSettings

    try:
        settings = ServerSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"VOICEPIPE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise CliError(f"bad server settings: {problems}") from None
    if settings.session_secret is None:
        # One secret for all the workers, so a form session id one of them issued
        # resumes on any other (several hosts must share VOICEPIPE_SESSION_SECRET).
        os.environ["VOICEPIPE_SESSION_SECRET"] = secrets.token_urlsafe(32)
    return settings


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with voicepipe's own lines (drain, refusals) on the same stream."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["voicepipe"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
