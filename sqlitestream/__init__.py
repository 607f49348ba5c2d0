"""sqlitestream: durable, cursor-backed per-session event logs on embedded SQLite.

Append events for a session; each gets the next per-session sequence number (1, 2, 3, ...).
Read by cursor (``after``/``before``) or long-poll (``wait_timeout_ms``) from any thread or
process. See the README for the guarantees and the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .adapters import (
    CommandAdapter,
    ProviderAdapter,
    ProviderError,
    RunOutcome,
    ScriptedAdapter,
    normalise_event_type,
)
from .errors import (
    ConflictError,
    EventIdConflictError,
    NotFoundError,
    RunNotFoundError,
    SchemaVersionError,
    SequenceConflictError,
    SessionNotFoundError,
    SqliteStreamError,
    StorageError,
    StoreBusyError,
    StoreClosedError,
    ValidationError,
)
from .manager import RunOnceResult, RunResult, SessionManager
from .memory import InMemorySessionStore
from .models import Event, EventType, Run, RunStatus, Session, SessionStatus
from .sqlite import SQLiteSessionStore
from .store import SessionStore

if TYPE_CHECKING:
    from .postgres import PostgresSessionStore

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # records
    "Event",
    "EventType",
    "Session",
    "SessionStatus",
    "Run",
    "RunStatus",
    # stores
    "SessionStore",
    "InMemorySessionStore",
    "SQLiteSessionStore",
    "PostgresSessionStore",
    # manager and adapters
    "SessionManager",
    "RunResult",
    "RunOnceResult",
    "ProviderAdapter",
    "RunOutcome",
    "ScriptedAdapter",
    "CommandAdapter",
    "normalise_event_type",
    # errors
    "SqliteStreamError",
    "ValidationError",
    "NotFoundError",
    "SessionNotFoundError",
    "RunNotFoundError",
    "ConflictError",
    "SequenceConflictError",
    "EventIdConflictError",
    "StorageError",
    "StoreBusyError",
    "SchemaVersionError",
    "StoreClosedError",
    "ProviderError",
]


def __getattr__(name: str) -> object:
    # The PostgreSQL store is loaded on first use, so importing sqlitestream never needs psycopg
    # (psycopg itself is only imported when a PostgresSessionStore is opened).
    if name == "PostgresSessionStore":
        from .postgres import PostgresSessionStore

        return PostgresSessionStore
    raise AttributeError(f"module 'sqlitestream' has no attribute {name!r}")
