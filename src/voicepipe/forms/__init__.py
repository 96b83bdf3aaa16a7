"""Forms filled in by voice: the form schema, answer validation and durable stores.

The stores are imported on first access (``SQLiteFormStore`` pulls in sqlite3,
``PostgresFormStore`` asyncpg when it first connects), so ``import
voicepipe.forms`` stays light and never needs asyncpg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voicepipe.forms.schema import Field, FieldType, Form, FormError, load_form
from voicepipe.forms.store import (
    Answer,
    Attempt,
    FormMismatchError,
    FormStore,
    SessionBusyError,
    SessionCompleteError,
    SessionRecord,
    StoreError,
    export_json,
    export_session,
)
from voicepipe.forms.validation import InvalidAnswer, read_back, validate_value

if TYPE_CHECKING:
    from voicepipe.forms.postgres import PostgresFormStore
    from voicepipe.forms.sqlite import SQLiteFormStore

__all__ = [
    "Answer",
    "Attempt",
    "Field",
    "FieldType",
    "Form",
    "FormError",
    "FormMismatchError",
    "FormStore",
    "InvalidAnswer",
    "PostgresFormStore",
    "SQLiteFormStore",
    "SessionBusyError",
    "SessionCompleteError",
    "SessionRecord",
    "StoreError",
    "export_json",
    "export_session",
    "load_form",
    "read_back",
    "validate_value",
]


def __getattr__(name: str) -> Any:
    if name == "SQLiteFormStore":
        from voicepipe.forms.sqlite import SQLiteFormStore

        return SQLiteFormStore
    if name == "PostgresFormStore":
        from voicepipe.forms.postgres import PostgresFormStore

        return PostgresFormStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
