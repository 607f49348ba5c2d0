"""The ``sqlitestream`` commands that read one session's log: ``events``, ``latest`` and
``tail`` (with ``--all``, the store-wide feed instead: see ``feed``); and reading a page of
events around a damaged row. Registered on the group in ``main``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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
    from sqlitestream.cli.output import Writer
    from sqlitestream.damage import DamagedRow
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


def damaged_rows_error(rows: Sequence[tuple[str, int]], done: str) -> click.ClickException:
    """The error a command ends with after reading past damaged rows, given as (session id,
    sequence) (each was reported on stderr as it was met); ``done`` says what became of the
    others ("printed", ...)."""
    sessions: dict[str, list[str]] = {}
    for session_id, sequence in rows:
        sessions.setdefault(session_id, []).append(str(sequence))
    where = "; ".join(
        f"session {session_id} sequence {', '.join(seqs)}" for session_id, seqs in sessions.items()
    )
    if len(sessions) == 1:
        session_id, seqs = next(iter(sessions.items()))
        where = f"of session {session_id} could not be read (sequence {', '.join(seqs)})"
    else:
        where = f"could not be read ({where})"
    return click.ClickException(
        f"{len(rows)} event(s) {where}; the others were {done}. `sqlitestream check` lists every damaged row"
    )


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
    from sqlitestream.damage import read_page

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
        raise damaged_rows_error([(session_id, sequence) for sequence in damaged], "printed")
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

    A row the store cannot read (a damaged file) is reported on stderr and skipped, as by
    `events`: it counts as one of the N, the healthy events around it are printed, and
    without --follow the command exits 1 at the end; --follow goes on following after it.

    \b
    Example:
      sqlitestream --db events.db tail s1 -n 5 --follow --format jsonl
      sqlitestream tail --all -f
    """
    from sqlitestream.cli.output import EVENT_COLUMNS
    from sqlitestream.damage import DamagedRow, read_page
    from sqlitestream.errors import SchemaVersionError, StorageError, StoreBusyError

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
    last = _last_events(store, session_id, count, floor, top, filters, matches)
    damaged = [item for item in last if isinstance(item, DamagedRow)]
    cursor = max(floor, top)
    if follow:
        from sqlitestream.streaming import DEFAULT_WAIT_TIMEOUT_MS
        from sqlitestream.streaming import follow as follow_session

        def restarted() -> None:
            note(f"session {session_id} was deleted or restarted; following it from sequence 1")

        def arriving(after: int) -> Iterator[StoredEvent]:
            return follow_session(
                store,
                session_id,
                after=after,
                limit=PAGE,
                on_restart=restarted,
                wait_timeout_ms=DEFAULT_WAIT_TIMEOUT_MS if wait_ms is None else wait_ms,
                **filters,
            )

        # Made before the first lines are printed: it tells the log they came from.
        events = arriving(cursor)
        _write_with_damage(writer, last)
        while True:
            try:
                for event in events:
                    cursor = event.sequence_number
                    if matches(event):
                        writer.write([event.to_dict()])
                writer.close()
                return
            except StorageError as exc:
                if isinstance(exc, (StoreBusyError, SchemaVersionError)):
                    raise
                # A page of the follower held a row the store cannot read: print the events
                # before it, report it, and follow on after it.
                page, damage = read_page(
                    store, session_id, after=cursor, before=None, limit=PAGE, filters=filters
                )
                if damage is None:
                    raise
                _write_with_damage(writer, [*(e for e in page if matches(e)), damage])
                cursor = damage.sequence
                events = arriving(cursor)
    if wait_ms and not last and count:
        arrived = store.get_events(session_id, after=cursor, limit=count, wait_timeout_ms=wait_ms, **filters)
        last = [event for event in arrived if matches(event)]
    _write_with_damage(writer, last)
    writer.close()
    if damaged:
        raise damaged_rows_error([(row.session_id, row.sequence) for row in damaged], "printed")


def _write_with_damage(writer: Writer, items: Sequence[StoredEvent | DamagedRow]) -> None:
    """Events written in order, each damaged row among them reported on stderr in its place."""
    from sqlitestream.damage import DamagedRow

    run: list[StoredEvent] = []
    for item in items:
        if isinstance(item, DamagedRow):
            writer.write(event.to_dict() for event in run)
            run = []
            note(f"Error: {item.message}")
        else:
            run.append(item)
    writer.write(event.to_dict() for event in run)


def _last_events(
    store: Store,
    session_id: str,
    count: int,
    floor: int,
    top: int,
    filters: dict[str, Any],
    matches: Callable[[StoredEvent], bool],
) -> list[StoredEvent | DamagedRow]:
    """The last ``count`` matching events in (floor, top], read backwards in growing windows
    (the store reads forwards only, and a filter may match few events). A damaged row takes
    its place among them (as in ``events``, it counts)."""
    from sqlitestream.damage import DamagedRow

    found: list[StoredEvent | DamagedRow] = []
    upper = top + 1  # "before" is exclusive
    window = max(count, 100)
    while count and upper - 1 > floor and len(found) < count:
        lower = max(floor, upper - 1 - window)
        window_items = _window(store, session_id, lower, upper, filters)
        found = [item for item in window_items if isinstance(item, DamagedRow) or matches(item)] + found
        upper = lower + 1
        window *= 4
    return found[-count:] if count else []


def _window(
    store: Store, session_id: str, lower: int, upper: int, filters: dict[str, Any]
) -> list[StoredEvent | DamagedRow]:
    """The events in (lower, upper), damaged rows in their places."""
    from sqlitestream.damage import read_page

    items: list[StoredEvent | DamagedRow] = []
    cursor = lower
    while True:
        page, damage = read_page(store, session_id, after=cursor, before=upper, limit=PAGE, filters=filters)
        items.extend(page)
        if damage is not None:
            items.append(damage)
            cursor = damage.sequence
        elif len(page) < PAGE:
            return items
        else:
            cursor = page[-1].sequence_number
