"""The Durable Streams protocol's HTTP vocabulary: header names, parsing request headers into
the library's arguments (``ValidationError`` on bad input: a 400), cursors, ETags, SSE frames."""

from __future__ import annotations

import base64
import random
import re
import time
from collections.abc import Mapping
from datetime import datetime

import orjson

from sqlitestream.bytestreams import MAX_SAFE_INTEGER, Producer, StreamRead, is_json, media_type
from sqlitestream.errors import ValidationError

NEXT_OFFSET = "Stream-Next-Offset"
UP_TO_DATE = "Stream-Up-To-Date"
CLOSED = "Stream-Closed"
CURSOR = "Stream-Cursor"
TTL = "Stream-TTL"
EXPIRES_AT = "Stream-Expires-At"
SEQ = "Stream-Seq"
FORKED_FROM = "Stream-Forked-From"
FORK_OFFSET = "Stream-Fork-Offset"
FORK_SUB_OFFSET = "Stream-Fork-Sub-Offset"
PRODUCER_ID = "Producer-Id"
PRODUCER_EPOCH = "Producer-Epoch"
PRODUCER_SEQ = "Producer-Seq"
PRODUCER_EXPECTED_SEQ = "Producer-Expected-Seq"
PRODUCER_RECEIVED_SEQ = "Producer-Received-Seq"
SSE_ENCODING = "Stream-SSE-Data-Encoding"

EXPOSED_HEADERS = (
    NEXT_OFFSET,
    UP_TO_DATE,
    CLOSED,
    CURSOR,
    TTL,
    EXPIRES_AT,
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
    PRODUCER_EXPECTED_SEQ,
    PRODUCER_RECEIVED_SEQ,
    SSE_ENCODING,
    "ETag",
    "Location",
)

_DECIMAL = re.compile(r"\A(0|[1-9][0-9]*)\Z")
# RFC 3339 date-time (fromisoformat then reads it; it alone would take more shapes).
_RFC3339 = re.compile(r"\A\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")
_CURSOR_EPOCH_S = 1728432000  # 2024-10-09T00:00:00Z, the protocol's default cursor epoch
_CURSOR_INTERVAL_S = 20


def decimal(value: str, header: str, *, maximum: int = MAX_SAFE_INTEGER) -> int:
    """A non-negative decimal integer without sign, leading zeros, point or exponent."""
    if not _DECIMAL.match(value) or int(value) > maximum:
        raise ValidationError(f"{header} must be a non-negative integer, got {value!r}")
    return int(value)


def is_true(value: str | None) -> bool:
    """A presence header (``Stream-Closed``): only ``true``, in any case, counts."""
    return value is not None and value.strip().lower() == "true"


def expires_at(value: str) -> datetime:
    if not _RFC3339.match(value.strip()):
        raise ValidationError(f"{EXPIRES_AT} must be an RFC 3339 timestamp, got {value!r}")
    try:
        return datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise ValidationError(f"{EXPIRES_AT} must be an RFC 3339 timestamp, got {value!r}") from None


def format_expires_at(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def producer(headers: Mapping[str, str]) -> Producer | None:
    """The idempotent producer's stamp: all three headers or none (a 400 otherwise)."""
    given = [headers.get(name) for name in (PRODUCER_ID, PRODUCER_EPOCH, PRODUCER_SEQ)]
    if all(value is None for value in given):
        return None
    if any(value is None for value in given):
        raise ValidationError(f"{PRODUCER_ID}, {PRODUCER_EPOCH} and {PRODUCER_SEQ} go together")
    producer_id, epoch, seq = (str(value) for value in given)
    if not producer_id.strip():
        raise ValidationError(f"{PRODUCER_ID} must not be empty")
    return Producer(producer_id, decimal(epoch, PRODUCER_EPOCH), decimal(seq, PRODUCER_SEQ))


def cursor(client_cursor: str | None) -> str:
    """The ``Stream-Cursor`` of a live response: the current 20 s interval since the epoch,
    and always past the client's own cursor (by 1 to 3600 s of jitter) so that a CDN never
    serves one cached response in a loop."""
    current = int((time.time() - _CURSOR_EPOCH_S) // _CURSOR_INTERVAL_S)
    if client_cursor is not None and _DECIMAL.match(client_cursor):
        given = int(client_cursor)
        if given >= current:
            jitter_s = random.randint(1, 3600)
            return str(given + max(1, jitter_s // _CURSOR_INTERVAL_S))
    return str(current)


def etag(read: StreamRead) -> str:
    closed = ":c" if read.closed else ""
    return f'"{read.state.generation}:{read.start_offset}:{read.next_offset}{closed}"'


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    if not if_none_match:
        return False
    wanted = {part.strip().removeprefix("W/") for part in if_none_match.split(",")}
    return tag in wanted or "*" in wanted


def sse_encoded(content_type: str) -> bool:
    """Binary streams' SSE data events are base64 (text and JSON go as they are)."""
    return not (is_json(content_type) or media_type(content_type).startswith("text/"))


def sse_data(payload: bytes, *, base64_encoded: bool) -> bytes:
    """One ``data`` event: each line of the payload its own ``data:`` line (no space after the
    colon: it would become part of the data for clients that keep it)."""
    if base64_encoded:
        text = base64.b64encode(payload).decode("ascii")
        return b"event: data\ndata:" + text.encode("ascii") + b"\n\n"
    text = payload.decode("utf-8", errors="replace")
    lines = re.split(r"\r\n|\r|\n", text)
    return b"event: data\n" + b"".join(b"data:" + line.encode() + b"\n" for line in lines) + b"\n"


def sse_control(fields: Mapping[str, object]) -> bytes:
    return b"event: control\ndata:" + orjson.dumps(dict(fields)) + b"\n\n"
