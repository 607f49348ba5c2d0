"""``/v1/feed``: the store-wide feed (:class:`~sqlitestream.feed.FeedStore`) as a Durable Streams
JSON stream, read the way ``/v1/sessions/{id}`` is.

Its messages are the events of every session (``StoredEvent.to_dict()``, ``position``
included) in position order, that is commit order. The offset after position P is
``format_offset(P, 0)``: positions are never reused, so a feed offset needs no generation, and
one that has a second half is an offset of something else (a 400). ``after=P`` is the same
read with a plain position. ``limit`` (1 to 1000) bounds a page; ``types`` (comma-separated
event types) keeps only those; with ``types`` a page that reaches the end of the feed moves the
offset to the feed's last position as it was before the read, so a follower of rare types does
not re-scan the others on every wake. Every query parameter is checked (an unknown one is a
400, so a typo never reads the whole feed); nothing here writes. Long-poll and SSE wait through
:class:`~sqlitestream.AsyncStore`, holding no thread, and wake on appends by any process or, on
PostgreSQL, any node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from sqlitestream.aio import AsyncStore
from sqlitestream.bytestreams import format_offset, parse_offset
from sqlitestream.errors import SqliteStreamError, ValidationError
from sqlitestream.feed import FeedFilter, FeedStore
from sqlitestream.http import protocol
from sqlitestream.http.errors import error_response, json_error
from sqlitestream.http.live import Shutdown, until_shutdown
from sqlitestream.http.streams import Limits, cached_page, sse_slices
from sqlitestream.models import StoredEvent

__all__ = ["FEED_PATH", "MAX_LIMIT", "FeedRoutes"]

FEED_PATH = "/v1/feed"
MAX_LIMIT = 1000
"""The most events one response (or one SSE data event) carries, and the default ``limit``."""
JSON_TYPE = "application/json"
_PARAMETERS = frozenset({"offset", "after", "live", "cursor", "limit", "types"})


def feed_offset(position: int) -> str:
    return format_offset(position, 0)


@dataclass(frozen=True, slots=True)
class FeedRead:
    """A checked ``GET /v1/feed``: ``after`` is None for ``offset=now`` (the tip, read later)."""

    after: int | None
    limit: int
    types: tuple[str, ...] | None
    live: str | None
    cursor: str | None

    @classmethod
    def parse(cls, params: QueryParams) -> FeedRead:
        """Every parameter checked; ``ValidationError`` (a 400) naming the first bad one."""
        unknown = sorted(set(params.keys()) - _PARAMETERS)
        if unknown:
            known = ", ".join(sorted(_PARAMETERS))
            raise ValidationError(f"unknown query parameter {unknown[0]!r} (the feed takes {known})")
        for name in _PARAMETERS:
            if len(params.getlist(name)) > 1:
                raise ValidationError(f"{name} is given more than once")
        offset, after_text, live = params.get("offset"), params.get("after"), params.get("live")
        if offset is not None and after_text is not None:
            raise ValidationError("give offset or after, not both")
        if live is not None and live not in ("long-poll", "sse"):
            raise ValidationError(f"live must be long-poll or sse, got {live!r}")
        if live is not None and offset is None and after_text is None:
            raise ValidationError("live reads need an offset (or after)")
        after: int | None
        if after_text is not None:
            after = protocol.decimal(after_text, "after")
        elif offset == "now":
            after = None
        else:
            after, second = parse_offset(offset or "-1")
            if second != 0:
                raise ValidationError(f"offset {offset!r} is not a feed offset (its second half must be 0)")
        limit_text = params.get("limit")
        limit = MAX_LIMIT
        if limit_text is not None:
            if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= MAX_LIMIT:
                raise ValidationError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit_text!r}")
            limit = int(limit_text)
        types_text = params.get("types")
        types = None
        if types_text is not None:
            names = [name.strip() for name in types_text.split(",")]
            if not all(names):
                raise ValidationError(f"types must be event types separated by commas, got {types_text!r}")
            checked = FeedFilter.build(types=names).type_values
            assert checked is not None
            types = tuple(checked)
        return cls(after=after, limit=limit, types=types, live=live, cursor=params.get("cursor"))


def _body(events: list[StoredEvent]) -> bytes:
    return orjson.dumps([event.to_dict() for event in events])


class FeedRoutes:
    """The feed's handler, on the app's :class:`~sqlitestream.AsyncStore` (a 501 when its store
    is no :class:`~sqlitestream.feed.FeedStore`)."""

    def __init__(self, store: AsyncStore, limits: Limits, shutdown: Shutdown) -> None:
        self._store = store
        self._limits = limits
        self._shutdown = shutdown

    async def handle(self, request: Request) -> Response:
        if not isinstance(self._store.store, FeedStore):
            return json_error(501, "not_implemented", "this store has no store-wide feed")
        if request.method not in ("GET", "HEAD"):
            return json_error(
                405, "method_not_allowed", "the feed is read-only: append to /v1/sessions/{session_id}"
            )
        try:
            if request.method == "HEAD":
                tip = await self._store.get_last_position()
                headers = {"content-type": JSON_TYPE, protocol.NEXT_OFFSET: feed_offset(tip)}
                return Response(status_code=200, headers={**headers, "cache-control": "no-store"})
            return await self._get(request, FeedRead.parse(request.query_params))
        except SqliteStreamError as exc:
            return error_response(exc)

    async def _get(self, request: Request, read: FeedRead) -> Response:
        now = read.after is None
        after = await self._store.get_last_position() if read.after is None else read.after
        if read.live == "sse":
            return StreamingResponse(
                self._sse(read, after),
                headers={
                    "content-type": "text/event-stream",
                    "cache-control": "no-cache",
                    "x-accel-buffering": "no",
                },
            )
        wait_ms = int(self._limits.long_poll_timeout_s * 1000) if read.live == "long-poll" else 0
        events, more, end = await self._page(read, after, wait_ms)
        if read.live == "long-poll" and not events:
            headers = {
                protocol.NEXT_OFFSET: feed_offset(end),
                protocol.UP_TO_DATE: "true",
                protocol.CURSOR: protocol.cursor(read.cursor),
                "cache-control": "no-store",
            }
            return Response(status_code=204, headers=headers)
        headers = {"content-type": JSON_TYPE, protocol.NEXT_OFFSET: feed_offset(end)}
        if not more:
            headers[protocol.UP_TO_DATE] = "true"
        if read.live == "long-poll":
            headers[protocol.CURSOR] = protocol.cursor(read.cursor)
        if now and not events:
            return Response(b"[]", status_code=200, headers={**headers, "cache-control": "no-store"})
        # A page names its query: the same offsets with other types or another limit differ.
        query = f"{','.join(read.types or ())}:{read.limit}"
        tag = f'"feed:{feed_offset(after)}:{feed_offset(end)}:{query}"'
        return cached_page(request, _body(events), headers, tag, has_data=bool(events))

    async def _page(self, read: FeedRead, after: int, wait_ms: int) -> tuple[list[StoredEvent], bool, int]:
        """Up to ``read.limit`` events after ``after`` (waiting up to ``wait_ms`` for the first,
        or until shutdown), whether more were there, and the position to go on from."""
        # Read before the events: every position up to it is committed, so a filtered page that
        # came back short has seen all of them and may skip to it (never past an unseen event).
        tip = await self._store.get_last_position() if read.types is not None else 0
        call = self._store.read_feed(
            after=after, limit=read.limit + 1, types=read.types, wait_timeout_ms=wait_ms or None
        )
        events = await until_shutdown(self._shutdown, call, [])
        page, more = events[: read.limit], len(events) > read.limit
        end = page[-1].position if page else after
        if not more:
            end = max(end, tip)
        return page, more, end

    async def _sse(self, read: FeedRead, after: int) -> AsyncIterator[bytes]:
        announce = True
        try:
            async for remaining_ms in sse_slices(self._shutdown):
                events, more, end = await self._page(read, after, 0 if announce else remaining_ms)
                if events or announce or end != after:
                    control: dict[str, Any] = {
                        "streamNextOffset": feed_offset(end),
                        "streamCursor": protocol.cursor(read.cursor),
                    }
                    if not more:
                        control["upToDate"] = True
                    data = protocol.sse_data(_body(events), base64_encoded=False) if events else b""
                    # One write for the data and its control event, as for byte streams: with
                    # thousands of followers woken at once, the sends are much of the cost.
                    yield data + protocol.sse_control(control)
                    announce = False
                after = end
        except SqliteStreamError:
            # The store failed (a database restart, say): end the response; the client
            # reconnects from the last offset it was given and misses nothing.
            return
