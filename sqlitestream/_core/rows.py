"""Records as table rows and back, shared by the SQLite and PostgreSQL stores.

Both schemas use the same tables, columns and column order; payloads are the compact JSON text
the records encode to. Only timestamps differ (SQLite: INTEGER microseconds since the epoch;
PostgreSQL: timestamptz), so each store uses a :class:`RowCodec` with its own time conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import repeat
from typing import Any

from sqlitestream._core import codec
from sqlitestream.errors import StorageError
from sqlitestream.models import (
    Event,
    EventType,
    Run,
    Session,
    StoredEvent,
    stored_event,
)

EVENT_COLUMNS = "session_id, seq, id, type, run_id, ts, data, metadata, position"
PAGE_COLUMNS = "seq, id, type, run_id, ts, data, metadata, position"
"""A cursor page's columns: its rows all belong to the session the query names."""
SESSION_COLUMNS = "id, agent_id, status, parent_session_id, metadata, context, tags, created_at, updated_at"
RUN_COLUMNS = (
    "id, session_id, status, input, output, error, metadata, turn_count, token_usage, started_at, ended_at"
)

_EVENT_TYPES = {member.value: member for member in EventType}


def optional_encode(value: Any) -> str | None:
    return None if value is None else codec.encode(value)


def optional_decode(text: str | None) -> Any:
    return None if text is None else codec.decode(text)


_DAMAGE = (ValueError, KeyError, TypeError, OverflowError, RecursionError)
"""What converting a stored row raises when the row holds what no writer of ours stores (bad
JSON, an unknown event type, an out-of-range time; ValidationError is a ValueError)."""


def _objects(values: list[Any]) -> list[dict[str, Any]]:
    """``values``, all of them JSON objects (``ValueError`` otherwise)."""
    if values and set(map(type, values)) != {dict}:
        raise ValueError("not a JSON object")
    return values


def _damaged(what: str, part: str, cause: BaseException) -> StorageError:
    return StorageError(
        f"the stored {what} cannot be read: its {part} is damaged ({type(cause).__name__}: "
        f"{cause}); 'sqlitestream check' lists every damaged row"
    )


class RowCodec:
    """Row <-> record conversion for one store's timestamp representation."""

    def __init__(
        self,
        time_to_db: Callable[[datetime], Any],
        time_from_db: Callable[[Any], datetime],
        times_from_db: Callable[[Sequence[Any]], list[datetime]] | None = None,
    ) -> None:
        self._to_db = time_to_db
        self._from_db = time_from_db
        self._many_from_db = times_from_db or (lambda values: [time_from_db(v) for v in values])

    def event_row(self, event: Event, seq: int, position: int) -> tuple[Any, ...]:
        """The event's row, in ``EVENT_COLUMNS`` order."""
        return self.encoded_event_row(
            event, seq, position, codec.encode(event.data), codec.encode(event.metadata)
        )

    def encoded_event_row(
        self, event: Event, seq: int, position: int, data: str, metadata: str
    ) -> tuple[Any, ...]:
        """:meth:`event_row` with the event's payload already encoded (``codec.encode`` of its
        ``data`` and ``metadata``), for a store that encoded it to check its size."""
        return (
            event.session_id,
            seq,
            event.id,
            # _value_ (the enum docs' name for a member's value, a plain attribute) rather than
            # .value, an enum property that runs Python code: 1,934 -> 502 instructions
            # (callgrind), on every append.
            event.type._value_,
            event.run_id,
            self._to_db(event.timestamp),
            data,
            metadata,
            position,
        )

    def new_event_row(self, event: Event, seq: int) -> tuple[Any, ...]:
        """The event's row without its position, for an insert that takes the next one."""
        return (
            event.session_id,
            seq,
            event.id,
            event.type.value,
            event.run_id,
            self._to_db(event.timestamp),
            codec.encode(event.data),
            codec.encode(event.metadata),
        )

    def event_from_row(self, row: Sequence[Any]) -> StoredEvent:
        """An event from its row in ``EVENT_COLUMNS`` order."""
        return self.events_from_page(row[0], (row[1:],))[0]

    def events_from_rows(self, rows: Sequence[Sequence[Any]]) -> list[StoredEvent]:
        """Rows of any sessions in ``EVENT_COLUMNS`` order (a feed page) as events."""
        if not rows:
            return []
        session_ids, seqs, ids, types, run_ids, times, datas, metadatas, positions = zip(*rows)
        try:
            return list(
                map(
                    stored_event,
                    map(_EVENT_TYPES.__getitem__, types),
                    session_ids,
                    _objects(codec.decode_many(datas)),
                    _objects(codec.decode_many(metadatas)),
                    run_ids,
                    ids,
                    self._many_from_db(times),
                    seqs,
                    positions,
                )
            )
        except _DAMAGE:
            for row in rows:  # the first damaged row raises, naming its session
                self.events_from_page(row[0], (row[1:],))
            raise

    def events_from_page(self, session_id: str, rows: Sequence[Sequence[Any]]) -> list[StoredEvent]:
        """One session's rows in ``PAGE_COLUMNS`` order as events.

        A page read spends most of its time here, so it converts column by column: the JSON
        texts (:func:`codec.decode_many`) and the timestamps (the codec's ``times_from_db``)
        each in one call for the page."""
        if not rows:
            return []
        seqs, ids, types, run_ids, times, datas, metadatas, positions = zip(*rows)
        try:
            return list(
                map(
                    stored_event,
                    map(_EVENT_TYPES.__getitem__, types),
                    repeat(session_id),
                    _objects(codec.decode_many(datas)),
                    _objects(codec.decode_many(metadatas)),
                    run_ids,
                    ids,
                    self._many_from_db(times),
                    seqs,
                    positions,
                )
            )
        except _DAMAGE as exc:
            raise self._damaged_event(session_id, rows, exc) from exc

    def _damaged_event(
        self, session_id: str, rows: Sequence[Sequence[Any]], exc: BaseException
    ) -> StorageError:
        """The error for a page holding a row that no writer of ours could have stored (edited
        behind the store's back or damaged): it names the first such row."""
        for seq, event_id, type_, _run_id, ts, data, metadata, _position in rows:
            for part, convert, value in (
                ("type", _EVENT_TYPES.__getitem__, type_),
                ("timestamp", self._from_db, ts),
                ("data", codec.decode_object, data),
                ("metadata", codec.decode_object, metadata),
            ):
                try:
                    convert(value)
                except _DAMAGE as cause:
                    where = f"event {event_id!r} (sequence {seq} of session {session_id!r})"
                    return _damaged(where, part, cause)
        return _damaged(f"a page of session {session_id!r}", "a column", exc)

    def session_row(self, session: Session) -> tuple[Any, ...]:
        """The session's row, in ``SESSION_COLUMNS`` order."""
        return (
            session.id,
            session.agent_id,
            session.status.value,
            session.parent_session_id,
            codec.encode(session.metadata),
            codec.encode(session.context),
            codec.encode(session.tags),
            self._to_db(session.created_at),
            self._to_db(session.updated_at),
        )

    def session_from_row(self, row: Sequence[Any]) -> Session:
        try:
            return Session(
                id=row[0],
                agent_id=row[1],
                status=row[2],
                parent_session_id=row[3],
                metadata=codec.decode(row[4]),
                context=codec.decode(row[5]),
                tags=codec.decode(row[6]),
                created_at=self._from_db(row[7]),
                updated_at=self._from_db(row[8]),
            )
        except _DAMAGE as exc:
            raise _damaged(f"session {row[0]!r}", "a column", exc) from exc

    def run_row(self, run: Run) -> tuple[Any, ...]:
        """The run's row, in ``RUN_COLUMNS`` order."""
        return (
            run.id,
            run.session_id,
            run.status.value,
            optional_encode(run.input),
            optional_encode(run.output),
            optional_encode(run.error),
            codec.encode(run.metadata),
            run.turn_count,
            codec.encode(run.token_usage),
            self._to_db(run.started_at),
            None if run.ended_at is None else self._to_db(run.ended_at),
        )

    def run_from_row(self, row: Sequence[Any]) -> Run:
        try:
            return Run(
                id=row[0],
                session_id=row[1],
                status=row[2],
                input=optional_decode(row[3]),
                output=optional_decode(row[4]),
                error=optional_decode(row[5]),
                metadata=codec.decode(row[6]),
                turn_count=row[7],
                token_usage=codec.decode(row[8]),
                started_at=self._from_db(row[9]),
                ended_at=None if row[10] is None else self._from_db(row[10]),
            )
        except _DAMAGE as exc:
            raise _damaged(f"run {row[0]!r}", "a column", exc) from exc
