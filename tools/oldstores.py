"""Stores as older schema versions left them, for upgrade tests and the crash test.

A store is written with today's code (through the public API, so any data a test needs can be
put in), then taken back to an older version by undoing each later step in one transaction:

* version 2 -> 1: the ``runs_running`` index did not exist;
* version 3 -> 2: there were no byte streams' tables (``ds_*``);
* version 4 -> 3: events had no ``position``, and there was no ``feed`` nor ``cursors`` table;
* version 5 -> 4: there was no ``session_producers`` table.

The SQLite events table of versions 2 and 3 is spelled out below as their ``schema.sql`` had it.
"""

from __future__ import annotations

import os

import apsw

__all__ = ["SQLITE_V2_EVENTS", "downgrade_postgres_store", "downgrade_sqlite_store"]

SQLITE_V2_EVENTS = """CREATE TABLE events (
    session_id TEXT NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    id         TEXT NOT NULL,
    type       TEXT NOT NULL,
    run_id     TEXT,
    ts         INTEGER NOT NULL,
    data       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) STRICT, WITHOUT ROWID"""

_SQLITE_UNDO = {
    5: ("DROP TABLE session_producers",),
    4: (
        SQLITE_V2_EVENTS.replace("CREATE TABLE events", "CREATE TABLE events_v2"),
        "INSERT INTO events_v2 SELECT session_id, seq, id, type, run_id, ts, data, metadata FROM events",
        "DROP TABLE events",
        "ALTER TABLE events_v2 RENAME TO events",
        "CREATE UNIQUE INDEX events_by_id ON events (id)",
        "DROP TABLE feed",
        "DROP TABLE cursors",
    ),
    3: ("DROP TABLE ds_producers", "DROP TABLE ds_chunks", "DROP TABLE ds_streams"),
    2: ("DROP INDEX runs_running",),
}

_POSTGRES_UNDO = {
    3: ("DROP TABLE ds_producers", "DROP TABLE ds_chunks", "DROP TABLE ds_streams"),
    2: (
        "ALTER TABLE events DROP COLUMN position",
        "DROP TABLE feed",
        "DROP TABLE cursors",
    ),
}


def downgrade_sqlite_store(path: str | os.PathLike[str], version: int) -> None:
    """Take the closed store file at ``path`` back to schema ``version`` (1 to 4), keeping its data."""
    conn = apsw.Connection(os.fspath(path))
    try:
        current = int(conn.pragma("user_version"))
        with conn:
            for step in range(current, version, -1):
                for statement in _SQLITE_UNDO[step]:
                    conn.execute(statement)
            conn.pragma("user_version", version)
    finally:
        conn.close()


def downgrade_postgres_store(dsn: str, schema: str, version: int) -> None:
    """Take the PostgreSQL store in ``schema`` back to schema ``version`` (1), keeping its data."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute(f'SET LOCAL search_path TO "{schema}"')
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        assert row is not None
        for step in range(int(row[0]), version, -1):
            for statement in _POSTGRES_UNDO[step]:
                conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = %s", (version,))
