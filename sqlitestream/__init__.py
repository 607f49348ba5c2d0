"""sqlitestream: durable, cursor-backed per-session event logs on embedded SQLite.

Append events for a session; each gets the next per-session sequence number (1, 2, 3, ...).
Read by cursor (``after``/``before``) or long-poll (``wait_timeout_ms``) from any thread or
process. See the README for the guarantees and the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from .adapters import (
        CommandAdapter,
        ProviderAdapter,
        ProviderError,
        RunOutcome,
        ScriptedAdapter,
        normalise_event_type,
    )
    from .manager import RunOnceResult, RunResult, SessionManager
    from .memory import InMemorySessionStore
    from .models import Event, EventType, Run, RunStatus, Session, SessionStatus, StoredEvent
    from .postgres import PostgresSessionStore
    from .sqlite import SQLiteSessionStore
    from .store import SessionStore

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # records
    "Event",
    "StoredEvent",
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


# Everything but the errors is loaded on first use (PEP 562), so `import sqlitestream` and the
# CLI start quickly: the manager pulls in asyncio and subprocess, the SQLite store apsw, and the
# PostgreSQL store psycopg (only imported when a PostgresSessionStore is opened).
_LAZY = {
    "CommandAdapter": "adapters",
    "ProviderAdapter": "adapters",
    "ProviderError": "adapters",
    "RunOutcome": "adapters",
    "ScriptedAdapter": "adapters",
    "normalise_event_type": "adapters",
    "RunOnceResult": "manager",
    "RunResult": "manager",
    "SessionManager": "manager",
    "InMemorySessionStore": "memory",
    "Event": "models",
    "StoredEvent": "models",
    "EventType": "models",
    "Run": "models",
    "RunStatus": "models",
    "Session": "models",
    "SessionStatus": "models",
    "PostgresSessionStore": "postgres.store",
    "SQLiteSessionStore": "sqlite.store",
    "SessionStore": "store",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sqlitestream' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
