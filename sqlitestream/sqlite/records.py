"""The session and run records of the SQLite store: their reads and their writes (see
:class:`~sqlitestream.store.SessionStore` for what each promises).

Like :mod:`sqlitestream.sqlite.feed`, the functions take the store's accessors explicitly.
"""

from __future__ import annotations

from sqlitestream._core.rows import RUN_COLUMNS, SESSION_COLUMNS, RowCodec
from sqlitestream._core.sql import create, upsert
from sqlitestream._core.validate import check_choice, check_id, check_int
from sqlitestream.errors import ConflictError, RunNotFoundError, SessionNotFoundError
from sqlitestream.models import (
    Run,
    RunStatus,
    Session,
    SessionStatus,
    from_micros,
    from_micros_many,
    to_micros,
)
from sqlitestream.sqlite import feed as _feed
from sqlitestream.sqlite.appends import DELETE_PRODUCERS
from sqlitestream.sqlite.feed import Fetch, Write
from sqlitestream.store import SessionFilter, check_record

__all__ = [
    "create_session",
    "delete_session",
    "get_active_run",
    "get_run",
    "get_session",
    "list_runs",
    "list_sessions",
    "save_run",
    "save_session",
]

_ROWS = RowCodec(to_micros, from_micros, from_micros_many)
_CREATE_SESSION = create("sessions", SESSION_COLUMNS, "?")
_SAVE_SESSION = upsert("sessions", SESSION_COLUMNS, "?")
_SAVE_RUN = upsert("runs", RUN_COLUMNS, "?")


def create_session(write: Write, session: Session) -> None:
    check_record(session, Session, "session")
    row = _ROWS.session_row(session)
    with write("create a session") as conn:
        conn.execute(_CREATE_SESSION, row)
        if not conn.changes():
            raise ConflictError(f"session {session.id!r} already exists")


def save_session(write: Write, session: Session) -> None:
    check_record(session, Session, "session")
    row = _ROWS.session_row(session)
    with write("save a session") as conn:
        conn.execute(_SAVE_SESSION, row)


def get_session(fetch: Fetch, session_id: str) -> Session:
    session_id = check_id(session_id, "session_id")
    rows = fetch("read a session", f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,))
    if not rows:
        raise SessionNotFoundError(session_id)
    return _ROWS.session_from_row(rows[0])


def list_sessions(
    fetch: Fetch,
    *,
    status: SessionStatus | str | None = None,
    agent_id: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> list[Session]:
    wanted = SessionFilter.build(status=status, agent_id=agent_id, limit=limit, offset=offset)
    rows = fetch(
        "list sessions",
        f"SELECT {SESSION_COLUMNS} FROM sessions "
        "WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR agent_id = ?2) "
        "ORDER BY created_at, id LIMIT ?3 OFFSET ?4",
        (
            wanted.status_text,
            wanted.agent_id,
            -1 if wanted.limit is None else wanted.limit,
            wanted.offset,
        ),
    )
    return [_ROWS.session_from_row(row) for row in rows]


def delete_session(write: Write, session_id: str) -> str:
    """Delete the session and everything of it; return its checked id."""
    session_id = check_id(session_id, "session_id")
    with write("delete a session") as conn:
        conn.execute(_feed.RAISE_FLOOR)
        conn.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
        conn.execute("DELETE FROM streams WHERE session_id = ?", (session_id,))
        conn.execute("DELETE FROM runs WHERE session_id = ?", (session_id,))
        conn.execute(DELETE_PRODUCERS, (session_id,))
        conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
    return session_id


def save_run(write: Write, run: Run) -> None:
    check_record(run, Run, "run")
    row = _ROWS.run_row(run)
    with write("save a run") as conn:
        if not conn.execute("SELECT 1 FROM sessions WHERE id = ?", (run.session_id,)).fetchall():
            raise SessionNotFoundError(run.session_id)
        conn.execute(_SAVE_RUN, row)


def get_run(fetch: Fetch, run_id: str) -> Run:
    run_id = check_id(run_id, "run_id")
    rows = fetch("read a run", f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
    if not rows:
        raise RunNotFoundError(run_id)
    return _ROWS.run_from_row(rows[0])


def list_runs(
    fetch: Fetch, session_id: str, *, status: RunStatus | str | None = None, limit: int | None = None
) -> list[Run]:
    session_id = check_id(session_id, "session_id")
    wanted = None if status is None else check_choice(status, "status", RunStatus)
    limit = check_int(limit, "limit", minimum=1)
    rows = fetch(
        "list runs",
        f"SELECT {RUN_COLUMNS} FROM runs WHERE session_id = ?1 AND (?2 IS NULL OR status = ?2) "
        "ORDER BY started_at, id LIMIT ?3",
        (session_id, None if wanted is None else wanted.value, -1 if limit is None else limit),
    )
    return [_ROWS.run_from_row(row) for row in rows]


def get_active_run(fetch: Fetch, session_id: str) -> Run | None:
    session_id = check_id(session_id, "session_id")
    rows = fetch(
        "read the active run",
        f"SELECT {RUN_COLUMNS} FROM runs WHERE session_id = ? AND status = 'running' "
        "ORDER BY started_at DESC, id DESC LIMIT 1",
        (session_id,),
    )
    return _ROWS.run_from_row(rows[0]) if rows else None
