"""sqlitestream: durable, cursor-backed per-session event logs on embedded SQLite.

Append events for a session; each gets the next per-session sequence number (1, 2, 3, ...).
Read by cursor (``after``/``before``) or long-poll (``wait_timeout_ms``) from any thread or
process. The names below are the public API; modules and subpackages whose names start with an
underscore, and the modules inside ``sqlitestream.sqlite`` and ``sqlitestream.postgres``, are
internal. The README and the docs pages hold the guarantees, the module map and the guides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The public names and the module each comes from: the one list that ``__all__``, the lazy
# look-up and ``dir()`` are built from (tests/test_public_api.py checks the TYPE_CHECKING block
# below against it). Names are loaded on first use (PEP 562), so `import sqlitestream` and the
# CLI start quickly: the manager pulls in asyncio and subprocess, the SQLite store apsw, and
# the PostgreSQL store psycopg (only when a PostgresSessionStore is opened).
_PUBLIC: dict[str, str] = {
    # records
    "Event": "models",
    "StoredEvent": "models",
    "EventType": "models",
    "Session": "models",
    "SessionStatus": "models",
    "Run": "models",
    "RunStatus": "models",
    # stores and opening them by location
    "SessionStore": "store",
    "EventFilter": "store",
    "AdminStore": "admin",
    "FeedStore": "feed",
    "FeedFilter": "feed",
    "ConsumerCursor": "feed",
    "RetentionStore": "retention",
    "TrimRule": "retention",
    "InMemorySessionStore": "memory",
    "SQLiteSessionStore": "sqlite",
    "PostgresSessionStore": "postgres",
    "open_store": "locations",
    "AsyncStore": "aio",
    # following a session by cursor
    "follow": "streaming",
    "afollow": "streaming",
    "inspect_schema": "locations",
    "migrate_schema": "locations",
    # administration results and callbacks
    "StreamInfo": "admin",
    "StoreInfo": "admin",
    "CheckFinding": "admin",
    "CheckReport": "admin",
    "SchemaStep": "admin",
    "SchemaStatus": "admin",
    "MigrationResult": "admin",
    "SessionImport": "admin",
    "ImportReport": "admin",
    "ProgressCallback": "admin",
    "SessionImportCallback": "admin",
    # manager and adapters
    "SessionManager": "manager",
    "RunResult": "manager",
    "RunOnceResult": "manager",
    "EventCallback": "manager",
    "ProviderAdapter": "adapters",
    "RunOutcome": "adapters",
    "ScriptedAdapter": "adapters",
    "CommandAdapter": "adapters",
    "Emit": "adapters",
    "normalise_event_type": "adapters",
    # errors
    "SqliteStreamError": "errors",
    "ValidationError": "errors",
    "NotFoundError": "errors",
    "SessionNotFoundError": "errors",
    "RunNotFoundError": "errors",
    "ConflictError": "errors",
    "SequenceConflictError": "errors",
    "CursorConflictError": "errors",
    "EventIdConflictError": "errors",
    "StorageError": "errors",
    "StoreBusyError": "errors",
    "SchemaVersionError": "errors",
    "StoreClosedError": "errors",
    "StreamNotFoundError": "errors",
    "StreamDeletedError": "errors",
    "StreamConflictError": "errors",
    "StreamClosedError": "errors",
    "ProducerEpochError": "errors",
    "ProducerSequenceGapError": "errors",
    "MissingDependencyError": "errors",
    "ProviderError": "errors",
}

__all__ = ["__version__", *_PUBLIC]

if TYPE_CHECKING:  # for type checkers only; must list exactly _PUBLIC (a test checks it)
    from .adapters import CommandAdapter as CommandAdapter
    from .adapters import Emit as Emit
    from .adapters import ProviderAdapter as ProviderAdapter
    from .adapters import RunOutcome as RunOutcome
    from .adapters import ScriptedAdapter as ScriptedAdapter
    from .adapters import normalise_event_type as normalise_event_type
    from .admin import AdminStore as AdminStore
    from .admin import CheckFinding as CheckFinding
    from .admin import CheckReport as CheckReport
    from .admin import ImportReport as ImportReport
    from .admin import MigrationResult as MigrationResult
    from .admin import ProgressCallback as ProgressCallback
    from .admin import SchemaStatus as SchemaStatus
    from .admin import SchemaStep as SchemaStep
    from .admin import SessionImport as SessionImport
    from .admin import SessionImportCallback as SessionImportCallback
    from .admin import StoreInfo as StoreInfo
    from .admin import StreamInfo as StreamInfo
    from .aio import AsyncStore as AsyncStore
    from .errors import ConflictError as ConflictError
    from .errors import CursorConflictError as CursorConflictError
    from .errors import EventIdConflictError as EventIdConflictError
    from .errors import MissingDependencyError as MissingDependencyError
    from .errors import NotFoundError as NotFoundError
    from .errors import ProducerEpochError as ProducerEpochError
    from .errors import ProducerSequenceGapError as ProducerSequenceGapError
    from .errors import ProviderError as ProviderError
    from .errors import RunNotFoundError as RunNotFoundError
    from .errors import SchemaVersionError as SchemaVersionError
    from .errors import SequenceConflictError as SequenceConflictError
    from .errors import SessionNotFoundError as SessionNotFoundError
    from .errors import SqliteStreamError as SqliteStreamError
    from .errors import StorageError as StorageError
    from .errors import StoreBusyError as StoreBusyError
    from .errors import StoreClosedError as StoreClosedError
    from .errors import StreamClosedError as StreamClosedError
    from .errors import StreamConflictError as StreamConflictError
    from .errors import StreamDeletedError as StreamDeletedError
    from .errors import StreamNotFoundError as StreamNotFoundError
    from .errors import ValidationError as ValidationError
    from .feed import ConsumerCursor as ConsumerCursor
    from .feed import FeedFilter as FeedFilter
    from .feed import FeedStore as FeedStore
    from .locations import inspect_schema as inspect_schema
    from .locations import migrate_schema as migrate_schema
    from .locations import open_store as open_store
    from .manager import EventCallback as EventCallback
    from .manager import RunOnceResult as RunOnceResult
    from .manager import RunResult as RunResult
    from .manager import SessionManager as SessionManager
    from .memory import InMemorySessionStore as InMemorySessionStore
    from .models import Event as Event
    from .models import EventType as EventType
    from .models import Run as Run
    from .models import RunStatus as RunStatus
    from .models import Session as Session
    from .models import SessionStatus as SessionStatus
    from .models import StoredEvent as StoredEvent
    from .postgres import PostgresSessionStore as PostgresSessionStore
    from .retention import RetentionStore as RetentionStore
    from .retention import TrimRule as TrimRule
    from .sqlite import SQLiteSessionStore as SQLiteSessionStore
    from .store import EventFilter as EventFilter
    from .store import SessionStore as SessionStore
    from .streaming import afollow as afollow
    from .streaming import follow as follow


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'sqlitestream' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
