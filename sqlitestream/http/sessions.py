"""``/v1/sessions/{session_id}``: every session of the store as a Durable Streams JSON stream.

Its messages are the session's events in the export format (``Event.to_dict()``), in sequence
order; the offset after sequence N is ``format_offset(N, G)``, so a resume is a cursor read
(``after=N``); M is a mark of event N, its id hashed to 48 bits (0 where there is no event to
mark: the start, or a log whose events were all trimmed). So an offset of a session since
deleted and written again is told apart (410 ``session_replaced``) instead of resuming in the
middle of the new log, while a trim leaves the offsets of the events it keeps as they were and
a copy of the log (export and import keep ids) has the same offsets. An
offset whose next events were trimmed away is refused (410 ``offset_trimmed``), as the
protocol answers an offset past retention. A session without events reads as 404. POST appends one event object or an
array of them as one batch (``append_events``: contiguous sequences, all or nothing,
duplicate ids return the stored events); with producer headers the batch is appended with
:meth:`~sqlitestream.producers.SessionProducers.append_events_as` (epoch fencing, sequence gaps,
retries stored once, the stamp committed with the batch); on a store without producer state
events without an ``id`` get one made of the producer's stamp, so only retries are handled. Long-poll and SSE wait through :class:`~sqlitestream.AsyncStore`,
holding no thread.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from sqlitestream.aio import AsyncStore
from sqlitestream.bytestreams import format_offset, media_type, parse_offset
from sqlitestream.errors import SessionNotFoundError, SqliteStreamError, ValidationError
from sqlitestream.http import protocol
from sqlitestream.http.errors import error_response, json_error
from sqlitestream.http.live import Shutdown, until_shutdown
from sqlitestream.http.streams import BodyTooLarge, Limits, cached_page, read_body, sse_slices, too_large
from sqlitestream.models import Event, StoredEvent, parse_timestamp
from sqlitestream.producers import SessionProducers

T = TypeVar("T")

PAGE = 1000  # events per response at most
DELETE_CHECK_MS = 5000  # an open SSE response notices a deleted session within this, at most
JSON_TYPE = "application/json"
_EVENT_FIELDS = ("id", "type", "session_id", "run_id", "timestamp", "data", "metadata", "sequence_number")
_FIELD_IN_MESSAGE = re.compile(r"\A(id|type|session_id|run_id|timestamp|data|metadata)\b")


def _replaced(session_id: str) -> Response:
    return json_error(
        410,
        "session_replaced",
        f"session {session_id!r} was deleted and written again since this offset: read it from -1",
    )


def _trimmed(session_id: str, after: int, first: int) -> Response:
    return json_error(
        410,
        "offset_trimmed",
        f"events {after + 1}..{first - 1} of session {session_id!r} were trimmed: read on from -1 "
        f"(the first retained event is {first})",
    )


def _mark(event_id: str) -> int:
    """An event's mark in offsets: its id hashed to 48 bits, plus one so that 0 stays free for
    offsets that mark no event."""
    digest = hashlib.blake2b(event_id.encode("utf-8"), digest_size=6).digest()
    return int.from_bytes(digest, "big") + 1


def _offset(event: StoredEvent) -> str:
    return format_offset(event.sequence_number or 0, _mark(event.id))


def _body(events: list[StoredEvent]) -> bytes:
    return orjson.dumps([event.to_dict() for event in events])


class SessionRoutes:
    """The handlers for sessions, on the app's :class:`~sqlitestream.AsyncStore`."""

    def __init__(self, store: AsyncStore, limits: Limits, shutdown: Shutdown, *, allow_delete: bool) -> None:
        self._store = store
        self._limits = limits
        self._shutdown = shutdown
        self._allow_delete = allow_delete

    async def handle(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        try:
            if request.method in ("GET", "HEAD"):
                return await self._get(request, session_id)
            if request.method == "POST":
                return await self._post(request, session_id)
            if request.method == "DELETE":
                if not self._allow_delete:
                    return json_error(
                        405, "method_not_allowed", "deleting sessions is not allowed on this server"
                    )
                await self._store.delete_session(session_id)
                return Response(status_code=204)
            return json_error(405, "method_not_allowed", "a session is created by its first event (POST)")
        except BodyTooLarge:
            return too_large(self._limits.max_body_bytes)
        except SqliteStreamError as exc:
            return error_response(exc, field=_field_of(exc))

    async def _latest(self, session_id: str) -> int:
        latest = await self._store.get_latest_sequence(session_id)
        if latest == 0:
            raise _no_session(session_id)
        return latest

    async def _tail_offset(self, session_id: str, latest: int) -> str:
        """The offset after the session's latest event."""
        found = await self._store.get_events(session_id, after=latest - 1, limit=1)
        return _offset(found[0]) if found else format_offset(latest, 0)

    async def _refusal(self, session_id: str, after: int, mark: int) -> Response | None:
        """Why a read from the offset ``(after, mark)`` cannot go on (a 410), or None."""
        if after == 0:
            return None
        found = await self._store.get_events(session_id, after=after - 1, limit=1)
        if found and found[0].sequence_number == after:
            return None if mark in (0, _mark(found[0].id)) else _replaced(session_id)
        latest = await self._store.get_latest_sequence(session_id)
        if after > latest:
            return _replaced(session_id)
        first = found[0].sequence_number or 0 if found else latest + 1
        return _trimmed(session_id, after, first) if after < first - 1 else None

    async def _get(self, request: Request, session_id: str) -> Response:
        latest = await self._latest(session_id)
        if request.method == "HEAD":
            # With an offset, HEAD also says whether a read from it could go on (the viewer
            # asks before it reconnects: an EventSource cannot see a 410).
            given = request.query_params.get("offset")
            if given not in (None, "-1", "now"):
                refusal = await self._refusal(session_id, *parse_offset(given))
                if refusal is not None:
                    return Response(status_code=refusal.status_code, headers={"cache-control": "no-store"})
            headers = {
                "content-type": JSON_TYPE,
                protocol.NEXT_OFFSET: await self._tail_offset(session_id, latest),
                "cache-control": "no-store",
            }
            return Response(status_code=200, headers=headers)
        params = request.query_params
        offset, live = params.get("offset"), params.get("live")
        if live is not None and live not in ("long-poll", "sse"):
            raise ValidationError(f"live must be long-poll or sse, got {live!r}")
        if live is not None and offset is None:
            raise ValidationError("live reads need an offset")
        if offset == "now":
            after, mark = parse_offset(await self._tail_offset(session_id, latest))
        else:
            after, mark = parse_offset(offset or "-1")
            refusal = await self._refusal(session_id, after, mark)
            if refusal is not None:
                return refusal
        start = format_offset(after, mark)
        if live == "sse":
            return StreamingResponse(
                self._sse(session_id, after, start, params.get("cursor")),
                headers={
                    "content-type": "text/event-stream",
                    "cache-control": "no-cache",
                    "x-accel-buffering": "no",
                },
            )
        wait_ms = int(self._limits.long_poll_timeout_s * 1000) if live == "long-poll" else 0
        events, more = await self._page(session_id, after, wait_ms)
        if live == "long-poll" and not events:
            headers = {
                protocol.NEXT_OFFSET: start,
                protocol.UP_TO_DATE: "true",
                protocol.CURSOR: protocol.cursor(params.get("cursor")),
                "cache-control": "no-store",
            }
            return Response(status_code=204, headers=headers)
        end = _offset(events[-1]) if events else start
        headers = {"content-type": JSON_TYPE, protocol.NEXT_OFFSET: end}
        if not more:
            headers[protocol.UP_TO_DATE] = "true"
        if live == "long-poll":
            headers[protocol.CURSOR] = protocol.cursor(params.get("cursor"))
        if offset == "now" and not events:
            headers["cache-control"] = "no-store"
            return Response(b"[]", status_code=200, headers=headers)
        tag = f'"session:{session_id}:{start}:{end}"'
        return cached_page(request, _body(events), headers, tag, has_data=bool(events))

    async def _page(self, session_id: str, after: int, wait_ms: int) -> tuple[list[StoredEvent], bool]:
        """Up to :data:`PAGE` events after ``after`` (waiting up to ``wait_ms`` for the first,
        or until shutdown), and whether more were there."""
        read = self._store.get_events(
            session_id, after=after, limit=PAGE + 1, wait_timeout_ms=wait_ms or None
        )
        events = await self._until_shutdown(read, [])
        return events[:PAGE], len(events) > PAGE

    async def _until_shutdown(self, call: Awaitable[T], instead: T) -> T:
        """``call``'s result, or ``instead`` once the server shuts down first."""
        return await until_shutdown(self._shutdown, call, instead)

    async def _sse(
        self, session_id: str, after: int, next_offset: str, client_cursor: str | None
    ) -> AsyncIterator[bytes]:
        announce = True
        try:
            async for remaining_ms in sse_slices(self._shutdown):
                wait_ms = 0 if announce else min(remaining_ms, DELETE_CHECK_MS)
                events, more = await self._page(session_id, after, wait_ms)
                if not events and not announce and await self._store.get_latest_sequence(session_id) < after:
                    # Deleted or shorter than our offset: end the response; the client's next
                    # request learns which (404, or 410 if replaced). A delete releases the
                    # waiters, so this is at once, unless it came before the wait registered:
                    # then the wait's slice bounds it.
                    return
                if events:
                    yield protocol.sse_data(_body(events), base64_encoded=False)
                    after, next_offset = events[-1].sequence_number or after, _offset(events[-1])
                if events or announce:
                    control: dict[str, Any] = {
                        "streamNextOffset": next_offset,
                        "streamCursor": protocol.cursor(client_cursor),
                    }
                    if not more:
                        control["upToDate"] = True
                    yield protocol.sse_control(control)
                    announce = False
        except SqliteStreamError:
            return

    async def _post(self, request: Request, session_id: str) -> Response:
        content_type = request.headers.get("content-type")
        if content_type is None or media_type(content_type) != JSON_TYPE:
            raise ValidationError("events are posted as application/json")
        producer = protocol.producer(request.headers)
        body = await read_body(request, self._limits.max_body_bytes)
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"the body is not valid JSON: {exc}") from None
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise ValidationError("the body is an empty JSON array: post at least one event")
        fenced = producer is not None and isinstance(self._store.store, SessionProducers)
        # A store without producer state (PostgreSQL, for now) still stores a retry once: the
        # events get ids made of the stamp, so the retry's ids are duplicates. Event ids are
        # unique store-wide, so the stamp names the session too (its length first, so that no
        # session and producer id containing ":" make another pair's stamp).
        stamp = (
            None
            if producer is None or fenced
            else f"{len(session_id)}:{session_id}:{producer.id}:{producer.epoch}:{producer.seq}"
        )
        events = [_event(item, session_id, index, stamp) for index, item in enumerate(items)]
        if producer is None or not fenced:
            stored = await self._store.append_events(events)
            tail = max(stored, key=lambda event: event.sequence_number or 0)
            headers = {protocol.NEXT_OFFSET: _offset(tail)}
            if producer is None:
                return Response(status_code=204, headers=headers)
            headers[protocol.PRODUCER_EPOCH] = str(producer.epoch)
            headers[protocol.PRODUCER_SEQ] = str(producer.seq)
            return Response(status_code=200, headers=headers)
        result = await self._store.append_events_as(producer, events)
        headers = {protocol.PRODUCER_EPOCH: str(result.epoch), protocol.PRODUCER_SEQ: str(result.seq)}
        if result.duplicate:  # stored before: as for byte streams, 204 and the tail as it is now
            latest = await self._store.get_latest_sequence(session_id)
            headers[protocol.NEXT_OFFSET] = await self._tail_offset(session_id, latest)
            return Response(status_code=204, headers=headers)
        tail = max(result.events, key=lambda event: event.sequence_number or 0)
        headers[protocol.NEXT_OFFSET] = _offset(tail)
        return Response(status_code=200, headers=headers)


def _no_session(session_id: str) -> SqliteStreamError:
    return SessionNotFoundError(session_id)


class _EventError(ValidationError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def _field_of(exc: SqliteStreamError) -> str | None:
    return exc.field if isinstance(exc, _EventError) else None


def _event(item: object, session_id: str, index: int, stamp: str | None) -> Event:
    """One posted event, validated as any new event; the error names the field."""
    where = f"events[{index}]"
    if not isinstance(item, dict):
        raise _EventError(f"{where} must be a JSON object, got {type(item).__name__}", where)
    unknown = sorted(set(item) - set(_EVENT_FIELDS))
    if unknown:
        raise _EventError(f"{where} has unknown fields: {', '.join(unknown)}", f"{where}.{unknown[0]}")
    if item.get("session_id", session_id) != session_id:
        raise _EventError(
            f"{where}.session_id must be {session_id!r} (the URL's session)", f"{where}.session_id"
        )
    if "type" not in item:
        raise _EventError(f"{where}.type is required", f"{where}.type")
    fields = {name: item[name] for name in ("type", "data", "metadata", "run_id", "id") if name in item}
    if "id" not in fields and stamp is not None:
        fields["id"] = f"{stamp}:{index}"
    try:
        if "timestamp" in item:
            fields["timestamp"] = parse_timestamp(item["timestamp"], "timestamp")
        return Event(session_id=session_id, **fields)
    except ValidationError as exc:
        match = _FIELD_IN_MESSAGE.match(str(exc))
        field = f"{where}.{match.group(1)}" if match else where
        raise _EventError(f"{where}: {exc}", field) from None
