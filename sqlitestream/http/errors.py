"""The one place library errors become HTTP responses. Messages of the library's own errors
name the request's problem; storage failures get a fixed message (a file path or a DSN in them
is nothing a client should see), and anything unexpected a plain 500."""

from __future__ import annotations

import logging

from starlette.responses import Response

from sqlitestream.errors import (
    ConflictError,
    NotFoundError,
    ProducerEpochError,
    ProducerSequenceGapError,
    SqliteStreamError,
    StorageError,
    StoreBusyError,
    StoreClosedError,
    StreamClosedError,
    StreamDeletedError,
    ValidationError,
)
from sqlitestream.http import protocol

_log = logging.getLogger("sqlitestream.http")


def error_response(exc: SqliteStreamError, *, field: str | None = None) -> Response:
    """The response for a library error (``field``: the request field it is about, if known)."""
    headers: dict[str, str] = {}
    if isinstance(exc, ValidationError):
        status, code = 400, "invalid_request"
    elif isinstance(exc, StreamDeletedError):
        status, code = 410, "gone"
    elif isinstance(exc, NotFoundError):
        status, code = 404, "not_found"
    elif isinstance(exc, StreamClosedError):
        status, code = 409, "stream_closed"
        headers = {protocol.CLOSED: "true", protocol.NEXT_OFFSET: exc.next_offset}
    elif isinstance(exc, ProducerEpochError):
        status, code = 403, "stale_producer_epoch"
        headers = {protocol.PRODUCER_EPOCH: str(exc.current_epoch)}
    elif isinstance(exc, ProducerSequenceGapError):
        status, code = 409, "producer_sequence_gap"
        headers = {
            protocol.PRODUCER_EXPECTED_SEQ: str(exc.expected),
            protocol.PRODUCER_RECEIVED_SEQ: str(exc.received),
        }
    elif isinstance(exc, ConflictError):
        status, code = 409, "conflict"
    elif isinstance(exc, (StoreBusyError, StoreClosedError)):
        return json_error(503, "unavailable", "the store is busy or closing; retry later")
    elif isinstance(exc, StorageError):
        _log.error("storage error: %s", exc)
        return json_error(500, "storage_error", "the store could not complete the request")
    else:
        _log.error("unexpected library error: %r", exc)
        return json_error(500, "internal_error", "internal error")
    return json_error(status, code, str(exc), headers=headers, field=field)


def json_error(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    field: str | None = None,
) -> Response:
    import orjson

    body: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return Response(
        orjson.dumps({"error": body}),
        status_code=status,
        headers={"content-type": "application/json", "cache-control": "no-store", **(headers or {})},
    )
