"""sqlitestream's PostgreSQL store in the benchmark: the same append, batch and read work as
the SQLite store (through ``OurStore``), and cross-process wake latency through LISTEN/NOTIFY.

The server is ``$SQLITESTREAM_PG_DSN`` (default: the local test server). Each measurement gets
its own schema, dropped afterwards. Without psycopg or a server, the rows are skipped with a
one-line reason (``Unavailable``), like the other servers' rows.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .peers import EventSourcingRecorder, Unavailable
from .streaming import timed_wakes
from .workloads import OurStore

PG_DSN = os.environ.get("SQLITESTREAM_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def new_location() -> str:
    """A store location on a fresh schema (a ``postgresql://`` URL, see ``sqlitestream.open_store``)."""
    separator = "&" if "?" in PG_DSN else "?"
    return f"{PG_DSN}{separator}schema=bench_{secrets.token_hex(5)}"


def open_location(location: str) -> Any:
    try:
        from sqlitestream import SqliteStreamError, open_store
    except ImportError as exc:  # pragma: no cover - an old checkout
        raise Unavailable(f"no PostgreSQL store in this sqlitestream ({exc})") from None
    try:
        return open_store(location)
    except SqliteStreamError as exc:
        raise Unavailable(f"PostgreSQL at {PG_DSN} unusable: {exc}".splitlines()[0]) from None


def drop(location: str) -> None:
    import psycopg

    parts = urlsplit(location)
    params = parse_qsl(parts.query, keep_blank_values=True)
    schema = dict(params)["schema"]
    dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in params if k != "schema"])))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def check_available() -> None:
    """``Unavailable`` unless a store can be opened on the server."""
    location = new_location()
    open_location(location).close()
    drop(location)


def _dsn_parts() -> dict[str, Any]:
    parts = urlsplit(PG_DSN)
    return {
        "dbname": parts.path.lstrip("/") or "postgres",
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        "password": parts.password or "",
    }


class EventSourcingPostgres(EventSourcingRecorder):
    """``eventsourcing.postgres.PostgresAggregateRecorder`` on the same server and database,
    in a schema of its own (same durability: the server's ``synchronous_commit``), one
    aggregate per session, driven exactly like its SQLite recorder."""

    label = "eventsourcing postgres"

    def __init__(self, path: Path | None = None, synchronous: str = "normal", session: str = "bench") -> None:
        try:
            es_pg = __import__("eventsourcing.postgres", fromlist=["_"])
            self._stored_event = __import__("eventsourcing.persistence", fromlist=["_"]).StoredEvent
            import psycopg
        except ImportError as exc:
            raise Unavailable(f"eventsourcing's PostgreSQL recorder is not installed ({exc})") from None
        self.schema = f"bench_es_{secrets.token_hex(5)}"
        try:
            with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE SCHEMA "{self.schema}"')
            self.datastore = es_pg.PostgresDatastore(
                **_dsn_parts(), schema=self.schema, originator_id_type="text", pool_size=16
            )
            self.recorder = es_pg.PostgresAggregateRecorder(self.datastore, events_table_name="stored_events")
            self.recorder.create_table()
        except Exception as exc:
            raise Unavailable(f"PostgreSQL at {PG_DSN} unusable: {exc}".splitlines()[0]) from None
        self.session = session
        self.version = 0
        self.counter = 0

    def durability(self) -> str:
        return "the server's synchronous_commit, localhost server"

    def close(self) -> None:
        self.datastore.close()
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


class PostgresOurs(OurStore):
    """``PostgresSessionStore`` driven exactly like the SQLite store; durability is the
    server's ``synchronous_commit`` (the ``synchronous`` argument does not apply)."""

    label = "sqlitestream postgres"

    def __init__(self, path: Path, synchronous: str, session: str = "bench") -> None:
        self.location = new_location()
        super().__init__(open_location(self.location), session)

    def durability(self) -> str:
        return f"synchronous_commit={self.store.store_info().synchronous_commit}, localhost server"

    def close(self) -> None:
        super().close()
        drop(self.location)


def cross_postgres(session: str, count: int, seed: int, writer_class: Any) -> list[float]:
    """Milliseconds from a writer process's append (stamped in the event) to this process's
    long-poll holding it, both on their own PostgresSessionStore."""
    location = new_location()
    store = open_location(location)
    writer = writer_class("postgres", location, session, seed)
    try:
        return timed_wakes(store, session, writer, count)[0]
    finally:
        writer.close()
        store.close()
        drop(location)


_RAW_SCHEMA = (
    "CREATE TABLE streams (session_id text PRIMARY KEY, latest_seq bigint NOT NULL)",
    "CREATE TABLE events (session_id text NOT NULL, seq bigint NOT NULL, id text NOT NULL UNIQUE, "
    "type text NOT NULL, ts bigint NOT NULL, data jsonb NOT NULL, PRIMARY KEY (session_id, seq))",
)
_RAW_BUMP = (
    "INSERT INTO streams (session_id, latest_seq) VALUES (%s, %s) ON CONFLICT (session_id) "
    "DO UPDATE SET latest_seq = streams.latest_seq + excluded.latest_seq RETURNING latest_seq"
)
_RAW_INSERT = "INSERT INTO events (session_id, seq, id, type, ts, data) VALUES (%s, %s, %s, %s, %s, %s)"


class RawPsycopgSharedCommits:
    """The single appends of ``writers`` writers (each to its own session) committed
    ``writers`` to a transaction by one thread on one psycopg connection, each append two
    statements (raise the session's counter, insert the event with it) and the whole
    transaction one pipeline, so one round trip: what sharing commits can gain at most on a
    server, with no queue, no hand-off and no pool. ``writers=1`` is a lone writer's limit."""

    def __init__(self, writers: int) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise Unavailable(f"psycopg is not installed ({exc})") from None
        self.schema = f"bench_raw_{secrets.token_hex(5)}"
        try:
            self.conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
        except psycopg.Error as exc:
            raise Unavailable(f"PostgreSQL at {PG_DSN} unusable: {exc}".splitlines()[0]) from None
        self.conn.execute(f'CREATE SCHEMA "{self.schema}"')
        self.conn.execute(f'SET search_path TO "{self.schema}"')
        for statement in _RAW_SCHEMA:
            self.conn.execute(statement)
        self.writers = writers
        self.counter = 0

    def append(self, n: int) -> None:
        from psycopg.types.json import Jsonb

        from .workloads import new_event_id, now_micros, payload

        sessions = [f"raw{k}" for k in range(self.writers)]
        for start in range(self.counter, self.counter + n, self.writers):
            with self.conn.pipeline(), self.conn.transaction():
                cursors = [(self.conn.execute(_RAW_BUMP, (session, 1)), session) for session in sessions]
                for k, (cursor, session) in enumerate(cursors):
                    seq = cursor.fetchone()[0]  # type: ignore[index]
                    row = (
                        session,
                        seq,
                        new_event_id(),
                        "message_sent",
                        now_micros(),
                        Jsonb(payload(start + k)),
                    )
                    self.conn.execute(_RAW_INSERT, row)
        self.counter += n

    def append_batch(self, n: int, size: int) -> None:
        """Batches of ``size`` to one session, each one pipelined transaction: raise the counter
        by ``size``, then one ``executemany`` of the rows (no id probe, no records returned):
        the least a batch costs on a schema like the store's."""
        from psycopg.types.json import Jsonb

        from .workloads import new_event_id, now_micros, payload

        for start in range(self.counter, self.counter + n, size):
            with self.conn.pipeline(), self.conn.transaction():
                row = self.conn.execute(_RAW_BUMP, ("batch", size)).fetchone()
                latest = row[0]  # type: ignore[index]
                ts = now_micros()
                rows = [
                    (
                        "batch",
                        latest - size + k + 1,
                        new_event_id(),
                        "message_sent",
                        ts,
                        Jsonb(payload(start + k)),
                    )
                    for k in range(size)
                ]
                self.conn.cursor().executemany(_RAW_INSERT, rows)
        self.counter += n

    def close(self) -> None:
        self.conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        self.conn.close()
