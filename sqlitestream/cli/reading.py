"""The ``sqlitestream`` commands that read one session's log: ``events``, ``latest`` and
``tail`` (with ``--all``, the store-wide feed instead: see ``feed``); and reading a page of
events around a damaged row. Registered on the group in ``main``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from sqlitestream.cli.common import (
    PAGE,
    complete_session_id,
    db_option,
    format_option,
    note,
    open_store,
    output_writer,
    write_one,
)

if TYPE_CHECKING:
    from sqlitestream.cli.common import Store
    from sqlitestream.models import StoredEvent


class EventTypeChoice(click.Choice[str]):
    """The event types as a ``click.Choice`` (shown in ``--help``, offered by shell
    completion), read from ``EventType`` only when first needed: the records module is not
    loaded by commands that never look at a type (start-up time)."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        from sqlitestream.models import EventType

        return tuple(member.value for member in EventType)

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        pass  # fixed: the event types


EVENT_TYPE = EventTypeChoice()
session_id_argument = click.argument("session_id", shell_complete=complete_session_id)
optional_session_id = click.argument("session_id", required=False, shell_complete=complete_session_id)
all_option = click.option(
    "--all",
    "whole_feed",
    is_flag=True,
    help="The store-wide feed (every session, in commit order) instead of one session.",
)
after_position_option = click.option(
    "--after-position",
    type=click.IntRange(min=0),
    metavar="N",
    help="With --all: only events at positions > N.",
)


def _one_log(
    session_id: str | None, whole_feed: bool, after_position: int | None, **session_only: Any
) -> None:
    """Refuse a command line that names both a session and --all, or neither, or mixes their
    options."""
    if whole_feed == (session_id is not None):
        raise click.UsageError("give a SESSION_ID, or --all for the store-wide feed (not both)")
    if whole_feed:
        given = [f"--{name.replace('_', '-')}" for name, value in session_only.items() if value]
        if given:
            raise click.UsageError(
                f"{', '.join(given)}: for one session only; with --all use --after-position"
            )
    elif after_position is not None:
        raise click.UsageError("--after-position goes with --all; for one session use --after")


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time, e.g. 2026-05-01T12:00:00Z", param_hint="--since"
        ) from None
    if moment.tzinfo is None:
        raise click.BadParameter(
            f"{value!r} has no UTC offset; add one, e.g. 2026-05-01T12:00:00Z", param_hint="--since"
        )
    return moment


def _type_filter(types: tuple[str, ...]) -> tuple[dict[str, Any], Callable[[StoredEvent], bool]]:
    """The store filter for the ``--type`` options and the check the CLI applies itself: the
    store matches one type; several are matched here, on events read without a type filter."""
    if len(types) <= 1:
        return {"type": types[0] if types else None}, lambda event: True
    wanted = frozenset(types)
    return {"type": None}, lambda event: event.type.value in wanted


@dataclass(frozen=True, slots=True)
class Damage:
    """An event row the store cannot read: its sequence number and the store's message."""

    sequence: int
    message: str


def read_page(
    store: Store,
    session_id: str,
    *,
    after: int | None,
    before: int | None,
    limit: int,
    filters: dict[str, Any],
) -> tuple[list[StoredEvent], Damage | None]:
    """Up to ``limit`` events after ``after``; when the page holds a row the store cannot read
    (``StorageError`` naming it), the healthy events before that row and the damaged row.

    The damaged row is found by halving the sequence range the page covers, each probe a
    bounded read; so a store with damage costs a few more reads, a healthy one none.
    """
    from sqlitestream.errors import SchemaVersionError, StorageError, StoreBusyError

    def read(upper: int | None) -> list[StoredEvent]:
        return store.get_events(session_id, after=after, before=upper, limit=limit, **filters)

    try:
        return read(before), None
    except StorageError as exc:
        if isinstance(exc, (StoreBusyError, SchemaVersionError)):
            raise
        failure = exc
    low = (after or 0) + 1
    high = before - 1 if before is not None else store.get_latest_sequence(session_id)
    # The first damaged row is the smallest ``s`` in [low, high] for which reading up to and
    # including ``s`` fails.
    while low < high:
        middle = (low + high) // 2
        try:
            read(middle + 1)
            low = middle + 1
        except StorageError:
            high = middle
    try:
        read(low + 1)
    except StorageError as exc:
        return read(low), Damage(low, str(exc))
    raise failure  # not a damaged row after all: the store's error as it was


@click.command()
@optional_session_id
@all_option
@after_position_option
@click.option(
    "--after", type=click.IntRange(min=0), metavar="N", help="Only events with sequence number > N."
)
@click.option(
    "--before", type=click.IntRange(min=1), metavar="N", help="Only events with sequence number < N."
)
@click.option("--run-id", metavar="RUN_ID", help="Only events of this run.")
@click.option(
    "--type",
    "types",
    type=EVENT_TYPE,
    multiple=True,
    help="Only events of this type; repeat it for events of any of several types.",
)
@click.option("--since", metavar="TIME", help="Only events at or after this ISO 8601 time (with an offset).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N events.")
@format_option
@db_option
def events(
    session_id: str | None,
    whole_feed: bool,
    after_position: int | None,
    after: int | None,
    before: int | None,
    run_id: str | None,
    types: tuple[str, ...],
    since: str | None,
    limit: int | None,
    fmt: str,
) -> None:
    """The session's events, oldest first, filtered exactly like the store's get_events; with
    --all instead of a session, the store-wide feed: every session's events in commit order
    (position), from --after-position on.

    A row the store cannot read (a damaged file) does not stop the listing: the healthy
    events around it are printed, the damaged one is reported on stderr, and the command
    exits 1 at the end (`sqlitestream check` lists every damaged row). Damaged rows count
    towards --limit, so the next page starts where it would in a healthy store.

    \b
    Example:
      sqlitestream --db events.db events s1 --after 100 --limit 50 --format jsonl
      sqlitestream events s1 --type message_sent --type message_received --nl
      sqlitestream events --all --after-position 5000 --limit 100
    """
    from sqlitestream.cli.output import EVENT_COLUMNS

    _one_log(session_id, whole_feed, after_position, after=after, before=before, run_id=run_id, since=since)
    store = open_store(readonly=True)
    if session_id is None:
        from sqlitestream.cli.feed import print_feed

        print_feed(store, after=after_position or 0, types=types, limit=limit, fmt=fmt)
        return
    type_filter, matches = _type_filter(types)
    filters: dict[str, Any] = {"run_id": run_id, "since": _since(since), **type_filter}
    writer = output_writer(fmt, EVENT_COLUMNS)
    counted = 0  # events printed, and damaged rows in their place
    printed = 0
    damaged: list[int] = []
    cursor = after
    while limit is None or counted < limit:
        size = PAGE if limit is None or len(types) > 1 else min(PAGE, limit - counted)
        page, damage = read_page(store, session_id, after=cursor, before=before, limit=size, filters=filters)
        shown = [event for event in page if matches(event)]
        room = None if limit is None else limit - counted
        writer.write(event.to_dict() for event in shown[:room])
        counted += len(shown[:room])
        printed += len(shown[:room])
        if room is not None and len(shown) >= room:
            break
        if damage is not None:
            note(f"Error: {damage.message}")
            damaged.append(damage.sequence)
            counted += 1
            cursor = damage.sequence
            continue
        if len(page) < size:
            break
        cursor = page[-1].sequence_number
    writer.close()
    if damaged:
        listed = ", ".join(str(sequence) for sequence in damaged)
        raise click.ClickException(
            f"{len(damaged)} event(s) of session {session_id} could not be read (sequence "
            f"{listed}); the others were printed. `sqlitestream check` lists every damaged row"
        )
    if printed == 0 and fmt == "table":
        note("no events")


@click.command()
@session_id_argument
@format_option
@db_option
def latest(session_id: str, fmt: str) -> None:
    """Print the session's latest sequence number (0 when it has no events); with --json,
    --nl or --csv as a record with the session id.

    \b
    Example:
      sqlitestream --db events.db latest s1
      sqlitestream latest s1 --json
    """
    sequence = open_store(readonly=True).get_latest_sequence(session_id)
    if fmt == "table":
        click.echo(sequence)
        return
    from sqlitestream.cli.output import FIELD_COLUMNS

    write_one(fmt, {"session_id": session_id, "latest_sequence": sequence}, FIELD_COLUMNS)


@click.command()
@optional_session_id
@all_option
@after_position_option
@click.option(
    "-n",
    "--lines",
    "count",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    metavar="N",
    help="How many of the latest events to print first.",
)
@click.option(
    "--after", type=click.IntRange(min=0), metavar="N", help="Only events with sequence number > N."
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until interrupted.")
@click.option(
    "--wait-ms",
    type=click.IntRange(min=0),
    metavar="MS",
    help="Long-poll timeout of each read (with --follow; default 30000). Without "
    "--follow: wait up to MS for a first event when there is none yet.",
)
@click.option(
    "--type",
    "types",
    type=EVENT_TYPE,
    multiple=True,
    help="Only events of this type; repeat it for events of any of several types.",
)
@click.option("--run-id", metavar="RUN_ID", help="Only events of this run.")
@format_option
@db_option
def tail(
    session_id: str | None,
    whole_feed: bool,
    after_position: int | None,
    count: int,
    after: int | None,
    follow: bool,
    wait_ms: int | None,
    types: tuple[str, ...],
    run_id: str | None,
    fmt: str,
) -> None:
    """The session's last N events; with --follow, then every new event as it is appended.
    With --all instead of a session: the store-wide feed's (every session, in commit order).

    Following uses the store's long-poll (no busy polling) and sees appends from any process;
    each event is flushed as it is printed, so it works in a pipe. A session deleted while
    followed (and perhaps written again) is followed again from sequence 1, with a note on
    stderr. Ctrl-C ends it (exit 130).

    \b
    Example:
      sqlitestream --db events.db tail s1 -n 5 --follow --format jsonl
      sqlitestream tail --all -f
    """
    from sqlitestream.cli.output import EVENT_COLUMNS

    if follow and fmt == "json":
        raise click.UsageError("--follow prints events as they come: use --format jsonl or table")
    _one_log(session_id, whole_feed, after_position, after=after, run_id=run_id)
    store = open_store(readonly=True)
    if session_id is None:
        from sqlitestream.cli.feed import tail_feed

        tail_feed(
            store, count=count, after=after_position, follow=follow, wait_ms=wait_ms, types=types, fmt=fmt
        )
        return
    type_filter, matches = _type_filter(types)
    filters: dict[str, Any] = {"run_id": run_id, **type_filter}
    # Let the store check the other arguments up front (before=1 matches nothing).
    store.get_events(session_id, after=after, before=1, **filters)
    top = store.get_latest_sequence(session_id)
    floor = after or 0
    writer = output_writer(fmt, EVENT_COLUMNS)
    shown = _last_events(store, session_id, count, floor, top, filters, matches)
    cursor = max(floor, top)
    if follow:
        from sqlitestream.streaming import DEFAULT_WAIT_TIMEOUT_MS
        from sqlitestream.streaming import follow as follow_session

        def restarted() -> None:
            note(f"session {session_id} was deleted or restarted; following it from sequence 1")

        # Made before the first lines are printed: it tells the log they came from.
        arriving = follow_session(
            store,
            session_id,
            after=cursor,
            limit=PAGE,
            on_restart=restarted,
            wait_timeout_ms=DEFAULT_WAIT_TIMEOUT_MS if wait_ms is None else wait_ms,
            **filters,
        )
        writer.write(event.to_dict() for event in shown)
        for event in arriving:
            if matches(event):
                writer.write([event.to_dict()])
    else:
        if wait_ms and not shown and count:
            arrived = store.get_events(
                session_id, after=cursor, limit=count, wait_timeout_ms=wait_ms, **filters
            )
            shown = [event for event in arrived if matches(event)]
        writer.write(event.to_dict() for event in shown)
    writer.close()


def _last_events(
    store: Store,
    session_id: str,
    count: int,
    floor: int,
    top: int,
    filters: dict[str, Any],
    matches: Callable[[StoredEvent], bool],
) -> list[StoredEvent]:
    """The last ``count`` matching events in (floor, top], read backwards in growing windows
    (the store reads forwards only, and a filter may match few events)."""
    found: list[StoredEvent] = []
    upper = top + 1  # "before" is exclusive
    window = max(count, 100)
    while count and upper - 1 > floor and len(found) < count:
        lower = max(floor, upper - 1 - window)
        window_events = store.get_events(session_id, after=lower, before=upper, **filters)
        found = [event for event in window_events if matches(event)] + found
        upper = lower + 1
        window *= 4
    return found[-count:] if count else []
