"""The forms a server serves, and the store their answers go to."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from voicepipe.forms import Form, FormStore, load_form
from voicepipe.server.settings import ServerSettings

__all__ = ["load_forms", "open_store"]

log = logging.getLogger("voicepipe.server")


def load_forms(folder: Path) -> dict[str, Form]:
    """Every form file (``.yaml``, ``.yml``, ``.json``) in ``folder``, by form name."""
    if not folder.is_dir():
        log.warning("no forms folder at %s: /forms/{name} has no forms", folder)
        return {}
    paths = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    forms = [load_form(path) for path in paths]
    return {form.name: form for form in forms}


@asynccontextmanager
async def open_store(settings: ServerSettings) -> AsyncIterator[FormStore]:
    """The form store the settings name: PostgreSQL if ``form_store_dsn`` is set, else SQLite.

    Every worker process of a server must share
    one PostgreSQL database for a form session to resume on any of them; the
    store's lease keeps one caller per session across processes.
    """
    lease = settings.form_lease_seconds
    if settings.form_store_dsn is not None:
        from voicepipe.forms import PostgresFormStore

        async with PostgresFormStore(
            settings.form_store_dsn.get_secret_value(),
            schema=settings.form_store_schema,
            lease_seconds=lease,
        ) as postgres:
            yield postgres
        return
    from voicepipe.forms import SQLiteFormStore

    async with SQLiteFormStore(settings.form_store, lease_seconds=lease) as sqlite:
        yield sqlite
