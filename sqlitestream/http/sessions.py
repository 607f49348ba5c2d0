"""``/v1/sessions/{session_id}``: every session of the store as a Durable Streams JSON stream."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from sqlitestream.http.errors import json_error
from sqlitestream.http.live import Shutdown
from sqlitestream.http.streams import Limits
from sqlitestream.store import SessionStore


class SessionRoutes:
    def __init__(self, store: SessionStore, limits: Limits, shutdown: Shutdown, *, allow_delete: bool) -> None:
        self._store = store
        self._limits = limits
        self._shutdown = shutdown
        self._allow_delete = allow_delete

    async def handle(self, request: Request) -> Response:
        return json_error(501, "not_implemented", "not yet")
