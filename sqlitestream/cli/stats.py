"""``sqlitestream stats``: where a store's events and bytes are, per session and per event
type, and how big its files are. Built on the public admin API (``store_info``,
``list_streams``) and reading every event once."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import click

from sqlitestream.cli.common import (
    PAGE,
    db_option,
    format_option,
    open_store,
    output_writer,
    progress_option,
)


@dataclass(frozen=True, slots=True)
class SessionStats:
    """One session id's events: how many, and the bytes of their data and metadata as
    stored (compact UTF-8 JSON, what ``max_event_bytes`` limits)."""

    session_id: str
    events: int
    bytes: int
    largest_event_bytes: int
    last_event_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "events": self.events,
            "bytes": self.bytes,
            "largest_event_bytes": self.largest_event_bytes,
            "last_event_at": self.last_event_at,
        }


def _payload_bytes(data: dict[str, Any], metadata: dict[str, Any]) -> int:
    from sqlitestream.cli.output import dumps

    return len(dumps(data).encode()) + len(dumps(metadata).encode())


@click.command()
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    metavar="N",
    help="How many of the busiest and largest sessions to name (table and json).",
)
@format_option
@progress_option
@db_option
def stats(top: int, fmt: str, progress: bool | None) -> None:
    """Event counts and payload bytes per session, the busiest (most events) and largest
    (most bytes) sessions, events per type, and the store's file and WAL size.

    Reads every event once (read-only, while others write). --json prints one object;
    --nl and --csv print one row per session.

    \b
    Example:
      sqlitestream --db events.db stats
      sqlitestream stats --json --top 3
    """
    from sqlitestream.cli.output import Progress

    store = open_store(readonly=True)
    info = store.store_info()
    streams = store.list_streams()
    types: Counter[str] = Counter()
    per_session: list[SessionStats] = []
    bar = Progress("reading events", sum(stream.event_count for stream in streams), enabled=progress)
    try:
        for stream in streams:
            count = total = largest = 0
            after = 0
            while True:
                page = store.get_events(stream.session_id, after=after, limit=PAGE)
                for event in page:
                    size = _payload_bytes(event.data, event.metadata)
                    count += 1
                    total += size
                    largest = max(largest, size)
                    types[event.type.value] += 1
                bar.update(len(page))
                if len(page) < PAGE:
                    break
                after = page[-1].sequence_number
            last = stream.to_dict()["last_event_at"]
            per_session.append(SessionStats(stream.session_id, count, total, largest, last))
    finally:
        bar.finish()
    busiest = sorted(per_session, key=lambda s: (-s.events, s.session_id))[:top]
    largest_sessions = sorted(per_session, key=lambda s: (-s.bytes, s.session_id))[:top]
    facts = {
        key: value
        for key, value in info.to_dict().items()
        if key in ("backend", "path", "file_bytes", "wal_bytes", "table_bytes", "sessions", "runs")
        and value is not None
    }
    facts["session_ids"] = len(per_session)
    facts["events"] = sum(s.events for s in per_session)
    facts["event_bytes"] = sum(s.bytes for s in per_session)
    if fmt == "json":
        from sqlitestream.cli.output import dumps

        click.echo(
            dumps(
                {
                    "store": facts,
                    "busiest": [s.to_dict() for s in busiest],
                    "largest": [s.to_dict() for s in largest_sessions],
                    "event_types": dict(types.most_common()),
                }
            )
        )
        return
    if fmt in ("jsonl", "csv"):
        writer = output_writer(fmt, ())
        writer.write(s.to_dict() for s in per_session)
        writer.close()
        return
    _table(facts, busiest, largest_sessions, types)


def _table(
    facts: dict[str, Any], busiest: list[SessionStats], largest: list[SessionStats], types: Counter[str]
) -> None:
    from sqlitestream.cli.output import FIELD_COLUMNS, STATS_COLUMNS, TYPE_COLUMNS

    writer = output_writer("table", FIELD_COLUMNS, header=False)
    writer.write({"field": key, "value": value} for key, value in facts.items())
    for title, rows in (
        ("busiest sessions (most events)", busiest),
        ("largest sessions (most bytes)", largest),
    ):
        if rows:
            click.echo(f"\n{title}:")
            writer = output_writer("table", STATS_COLUMNS)
            writer.write(s.to_dict() for s in rows)
    if types:
        click.echo("\nevent types:")
        writer = output_writer("table", TYPE_COLUMNS)
        writer.write({"type": name, "events": count} for name, count in types.most_common())
