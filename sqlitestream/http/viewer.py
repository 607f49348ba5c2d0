"""The live session viewer: two pages of plain HTML, CSS and JavaScript shipped in the package
(``sqlitestream/http/static``, no build step, nothing loaded from elsewhere) at ``/`` and
``/session?id=ID``, and the three JSON endpoints they read besides the session streams:

- ``GET /v1/sessions``: every session, newest activity first, with its agent, status, event
  count, latest sequence and last activity; filters ``status``, ``agent``, ``id`` (exact) and
  ``q`` (part of the id, any case); ``limit`` (1 to 1000, default 200). ETag and 304, so the
  page's periodic refresh costs one small response when nothing changed.
- ``GET /v1/runs?session_id=ID``: the session's saved runs (``Run.to_dict()``), oldest first.
- ``GET /v1/export?session_id=ID``: the session in the export format (JSON lines), as a
  download.

Session ids may contain ``/``, so these take the id as a query parameter rather than under
``/v1/sessions/{id}``, whose whole remainder is the id.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from sqlitestream.admin import AdminStore
from sqlitestream.aio import AsyncStore
from sqlitestream.errors import SessionNotFoundError, SqliteStreamError, ValidationError
from sqlitestream.http.errors import error_response
from sqlitestream.models import Session, SessionStatus

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000

# The pages load only their own files: no inline script, no other origin (what "works offline"
# needs anyway), and no framing.
_PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
_STATUSES = frozenset(status.value for status in SessionStatus)
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def routes(store: AsyncStore) -> list[BaseRoute]:
    """The viewer's routes, for the app's route list."""
    handlers = _Handlers(store)
    return [
        Route("/", _page("index.html"), methods=["GET", "HEAD"]),
        Route("/session", _page("session.html"), methods=["GET", "HEAD"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        Route("/v1/sessions", handlers.sessions, methods=["GET", "HEAD"]),
        Route("/v1/runs", handlers.runs, methods=["GET", "HEAD"]),
        Route("/v1/export", handlers.export, methods=["GET", "HEAD"]),
    ]


def _page(name: str) -> Any:
    async def page(request: Request) -> Response:
        return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    return page


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def _session_id(request: Request) -> str:
    session_id = request.query_params.get("session_id")
    if not session_id:
        raise ValidationError("session_id is required (?session_id=ID)")
    return session_id


def list_sessions(
    store: Any,
    *,
    status: str | None = None,
    agent: str | None = None,
    exact_id: str | None = None,
    contains: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The listing ``GET /v1/sessions`` answers (blocking: call it in a worker thread).

    Saved sessions and ids that only have events (agent and status then null) are merged; a
    status or agent filter keeps saved sessions only. Last activity is the newest of the
    session's ``updated_at`` and its newest event's time.
    """
    if status is not None and status not in _STATUSES:
        raise ValidationError(f"status must be one of {', '.join(sorted(_STATUSES))}, got {status!r}")
    saved: dict[str, Session]
    if exact_id is not None:
        # One session (the session page's summary): read only its own records.
        try:
            saved = {exact_id: store.get_session(exact_id)}
        except SessionNotFoundError:
            saved = {}
    else:
        saved = {session.id: session for session in store.list_sessions()}
    if isinstance(store, AdminStore):
        wanted = None if exact_id is None else [exact_id]
        streams = {info.session_id: info for info in store.list_streams(wanted)}
        logged = {sid: (s.event_count, s.latest_sequence, s.last_event_at) for sid, s in streams.items()}
    else:
        logged = {}
        for session_id in saved:
            latest = store.get_latest_sequence(session_id)
            logged[session_id] = (latest, latest, None)
    agents = sorted({session.agent_id for session in saved.values()})  # for the agent filter's hints
    rows: list[dict[str, Any]] = []
    needle = contains.lower() if contains else None
    for session_id in saved.keys() | logged.keys():
        session = saved.get(session_id)
        if status is not None and (session is None or session.status.value != status):
            continue
        if agent is not None and (session is None or session.agent_id != agent):
            continue
        if exact_id is not None and session_id != exact_id:
            continue
        if needle is not None and needle not in session_id.lower():
            continue
        count, latest, last_event_at = logged.get(session_id, (0, 0, None))
        moments = [m for m in (last_event_at, session.updated_at if session else None) if m is not None]
        rows.append(
            {
                "session_id": session_id,
                "agent_id": session.agent_id if session else None,
                "status": session.status.value if session else None,
                "event_count": count,
                "latest_sequence": latest,
                "last_activity": _iso(max(moments) if moments else None),
                "created_at": _iso(session.created_at) if session else None,
                "parent_session_id": session.parent_session_id if session else None,
                "_order": max(moments) if moments else None,
            }
        )
    # Newest activity first; the id breaks ties so the order never flickers between refreshes.
    rows.sort(key=lambda row: row["session_id"])
    rows.sort(key=lambda row: (row["_order"] is not None, row["_order"] or 0), reverse=True)
    for row in rows:
        del row["_order"]
    return {"sessions": rows[:limit], "total": len(rows), "agents": agents}


class _Handlers:
    def __init__(self, store: AsyncStore) -> None:
        self._store = store

    async def sessions(self, request: Request) -> Response:
        params = request.query_params
        try:
            listing = await run_in_threadpool(
                list_sessions,
                self._store.store,
                status=params.get("status") or None,
                agent=params.get("agent") or None,
                exact_id=params.get("id") or None,
                contains=params.get("q") or None,
                limit=_limit(params.get("limit")),
            )
        except SqliteStreamError as exc:
            return error_response(exc)
        body = orjson.dumps(listing)
        tag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        headers = {"etag": tag, "cache-control": "no-cache"}
        if tag in {part.strip() for part in request.headers.get("if-none-match", "").split(",")}:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def runs(self, request: Request) -> Response:
        try:
            runs = await self._store.list_runs(_session_id(request))
        except SqliteStreamError as exc:
            return error_response(exc)
        body = orjson.dumps({"runs": [run.to_dict() for run in runs]})
        return Response(body, media_type="application/json", headers={"cache-control": "no-store"})

    async def export(self, request: Request) -> Response:
        store = self._store.store
        try:
            session_id = _session_id(request)
            if not isinstance(store, AdminStore):
                raise ValidationError("this store cannot export sessions")
            # Checks the id exists (SessionNotFoundError: a 404) before the response starts.
            records = await run_in_threadpool(store.export_records, [session_id])
        except SqliteStreamError as exc:
            return error_response(exc)
        stem = _UNSAFE_FILENAME.sub("_", session_id)[:100] or "session"
        headers = {
            "content-disposition": f'attachment; filename="{stem}.jsonl"',
            "cache-control": "no-store",
        }
        return StreamingResponse(_lines(records), media_type="application/x-ndjson", headers=headers)


def _lines(records: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """The export as JSON lines, written as ``sqlitestream export`` writes them, a page of
    records per chunk (Starlette iterates this in a worker thread)."""
    batch: list[str] = []
    try:
        for record in records:
            batch.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            if len(batch) >= 500:
                yield ("\n".join(batch) + "\n").encode("utf-8")
                batch.clear()
    except SqliteStreamError:
        # Deleted or closed while streaming: the download ends short (a complete export is
        # gap-free from sequence 1, so the reader sees where it stops).
        pass
    if batch:
        yield ("\n".join(batch) + "\n").encode("utf-8")
