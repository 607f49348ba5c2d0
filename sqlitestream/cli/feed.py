"""The ``sqlitestream`` commands on the store-wide feed: ``events --all``, ``tail --all``
(their feed halves live here; ``reading`` dispatches) and ``consumers`` (list, reset, delete).
Registered on the group in ``main``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from sqlitestream.cli.common import PAGE, db_option, format_option, note, open_store, output_writer

if TYPE_CHECKING:
    from sqlitestream.cli.common import Store
    from sqlitestream.feed import FeedStore
    from sqlitestream.models import StoredEvent


def feed_store(store: Store) -> FeedStore:
    """The store as a ``FeedStore`` (every built-in store is one)."""
    from sqlitestream.feed import FeedStore

    if not isinstance(store, FeedStore):
        raise click.ClickException(f"the store at {store.path} has no store-wide feed")
    return store


def print_feed(store: Store, *, after: int, types: tuple[str, ...], limit: int | None, fmt: str) -> None:
    """``events --all``: the feed after position ``after``, in position order."""
    from sqlitestream.cli.output import FEED_COLUMNS

    feed = feed_store(store)
    writer = output_writer(fmt, FEED_COLUMNS)
    printed = 0
    cursor = after
    while limit is None or printed < limit:
        size = PAGE if limit is None else min(PAGE, limit - printed)
        page = feed.read_feed(after=cursor, limit=size, types=types or None)
        writer.write(event.to_dict() for event in page)
        printed += len(page)
        if len(page) < size:
            break
        cursor = page[-1].position
    writer.close()
    if printed == 0 and fmt == "table":
        note("no events")


def tail_feed(
    store: Store,
    *,
    count: int,
    after: int | None,
    follow: bool,
    wait_ms: int | None,
    types: tuple[str, ...],
    fmt: str,
) -> None:
    """``tail --all``: the feed's last ``count`` events, then (``follow``) each new one."""
    from sqlitestream.cli.output import FEED_COLUMNS

    feed = feed_store(store)
    wanted = types or None
    top = feed.get_last_position()
    floor = after or 0
    shown = _last_of_feed(feed, count, floor, top, wanted)
    writer = output_writer(fmt, FEED_COLUMNS)
    if follow:
        from sqlitestream.streaming import DEFAULT_WAIT_TIMEOUT_MS
        from sqlitestream.streaming import follow as follow_feed

        arriving = follow_feed(
            feed,
            None,
            after=max(floor, top),
            types=wanted,
            limit=PAGE,
            wait_timeout_ms=DEFAULT_WAIT_TIMEOUT_MS if wait_ms is None else wait_ms,
        )
        writer.write(event.to_dict() for event in shown)
        for event in arriving:
            writer.write([event.to_dict()])
    else:
        if wait_ms and not shown and count:
            shown = feed.read_feed(after=max(floor, top), limit=count, types=wanted, wait_timeout_ms=wait_ms)
        writer.write(event.to_dict() for event in shown)
    writer.close()


def _last_of_feed(
    feed: FeedStore, count: int, floor: int, top: int, types: tuple[str, ...] | None
) -> list[StoredEvent]:
    """The last ``count`` matching events at positions in (floor, top], read in windows that
    grow backwards from the top (the feed reads forwards only; positions may have holes)."""
    found: list[StoredEvent] = []
    upper = top
    window = max(count, 100)
    while count and upper > floor and len(found) < count:
        lower = max(floor, upper - window)
        found = [e for e in feed.read_feed(after=lower, types=types) if e.position <= upper] + found
        upper = lower
        window *= 4
    return found[-count:] if count else []


# consumers ------------------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@format_option
@db_option
@click.pass_context
def consumers(ctx: click.Context, fmt: str) -> None:
    """List the consumers' saved cursors, each with its lag: how many positions it is behind
    the feed's last position (for a consumer of one session, its cursor is a sequence number
    and the lag means little). The subcommands reset or delete one.

    \b
    Example:
      sqlitestream --db events.db consumers
      sqlitestream consumers reset billing --to 0
    """
    if ctx.invoked_subcommand is not None:
        return
    from sqlitestream.cli.output import CONSUMER_COLUMNS

    feed = feed_store(open_store(readonly=True))
    last = feed.get_last_position()
    rows: list[dict[str, Any]] = [
        {**cursor.to_dict(), "lag": max(0, last - cursor.position)} for cursor in feed.list_cursors()
    ]
    writer = output_writer(fmt, CONSUMER_COLUMNS)
    writer.write(rows)
    writer.close()
    if not rows and fmt == "table":
        note("no consumers")


@consumers.command()
@click.argument("name")
@click.option(
    "--to", "position", type=click.IntRange(min=0), required=True, metavar="N", help="The new cursor."
)
@db_option
def reset(name: str, position: int) -> None:
    """Set consumer NAME's cursor to N (0: it starts again from the beginning), whatever it
    was; the consumer resumes after N the next time it starts.

    \b
    Example:
      sqlitestream consumers reset billing --to 1200
    """
    feed = feed_store(open_store(readonly=False))
    before = feed.get_cursor(name)
    feed.save_cursor(name, position)
    click.echo(f"consumer {name}: cursor {before} -> {position}")


@consumers.command()
@click.argument("name")
@db_option
def delete(name: str) -> None:
    """Forget consumer NAME's cursor (nothing happens if it has none).

    \b
    Example:
      sqlitestream consumers delete old-projection
    """
    feed_store(open_store(readonly=False)).delete_cursor(name)
    click.echo(f"consumer {name}: deleted")
