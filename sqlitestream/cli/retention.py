"""``sqlitestream trim`` and ``sqlitestream compact``: retention through
:class:`~sqlitestream.retention.RetentionStore`. Registered on the group in ``cli``."""

from __future__ import annotations

import os
import re
from datetime import timedelta

import click

from sqlitestream.cli.common import db_option, open_store, progress_option

_AGE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Age(click.ParamType[timedelta]):
    """An age such as ``30d``: a whole number and one of s, m, h, d, w."""

    name = "age"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = _AGE.fullmatch(str(value).strip())
        if match is None:
            self.fail(f"{value!r} is not an age such as 90s, 15m, 12h, 30d or 2w", param, ctx)
        try:
            return timedelta(**{_UNITS[match[2]]: int(match[1])})
        except OverflowError:
            self.fail(f"{value!r} is too long an age", param, ctx)


@click.command()
@click.option(
    "--session", "session_id", metavar="ID", help="Trim only this session (default: every session)."
)
@click.option(
    "--keep-last", type=click.IntRange(min=0), metavar="N", help="Keep the newest N events of each session."
)
@click.option(
    "--older-than", type=Age(), metavar="AGE", help="Remove events older than AGE (90s, 15m, 12h, 30d, 2w)."
)
@click.option(
    "--before-sequence",
    type=click.IntRange(min=1),
    metavar="N",
    help="Remove events below sequence N (with --session).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@progress_option
@db_option
def trim(
    session_id: str | None,
    keep_last: int | None,
    older_than: timedelta | None,
    before_sequence: int | None,
    dry_run: bool,
    progress: bool | None,
) -> None:
    """Remove the oldest events of every session (or of one), keeping each log gap-free from
    its new first sequence. With several limits, the one that removes more wins. Sequence
    numbers and feed positions are never reused; a reader whose cursor was trimmed away reads
    on from the first retained event. On a SQLite store created by this version the file
    shrinks (see `sqlitestream compact` for older stores).

    \b
    Examples:
      sqlitestream trim --keep-last 1000 --dry-run
      sqlitestream trim --older-than 30d
      sqlitestream trim --session ses_1 --before-sequence 500
    """
    from sqlitestream.cli.output import ProgressCallback
    from sqlitestream.retention import RetentionStore

    if keep_last is None and older_than is None and before_sequence is None:
        raise click.UsageError("say what to trim: --keep-last N, --older-than AGE or --before-sequence N")
    if before_sequence is not None and session_id is None:
        raise click.UsageError("--before-sequence needs --session ID (sequence numbers are per session)")
    store = open_store(readonly=dry_run)
    if not isinstance(store, RetentionStore):
        raise click.ClickException(f"{store.path} cannot trim its sessions")
    verb = "would remove" if dry_run else "removed"
    if session_id is not None:
        removed = store.trim_session(
            session_id,
            keep_last=keep_last,
            older_than=older_than,
            before_sequence=before_sequence,
            dry_run=dry_run,
        )
        click.echo(f"{verb} {removed} event(s) from session {session_id}")
        return
    bar = ProgressCallback("trimming sessions", enabled=progress)
    sessions = 0

    def on_progress(done: int, total: int) -> None:
        nonlocal sessions
        sessions = total
        bar(done, total)

    try:
        removed = store.trim_store(
            keep_last=keep_last, older_than=older_than, dry_run=dry_run, on_progress=on_progress
        )
    finally:
        bar.finish()
    click.echo(f"{verb} {removed} event(s) from {sessions} session(s)")


@click.command()
@db_option
def compact() -> None:
    """Rewrite a SQLite store file without its free pages, and switch a store created before
    incremental auto-vacuum to it, so that later trims give disk space back at once.

    Atomic (an interruption leaves the old file), but it needs free disk as large as the file,
    and this process's writes wait while it runs; readers in other processes go on.

    \b
    Example:
      sqlitestream --db events.db compact
    """
    from sqlitestream import SQLiteSessionStore

    store = open_store(readonly=False)
    if not isinstance(store, SQLiteSessionStore):
        raise click.ClickException(
            f"{store.path} is not a SQLite store file; PostgreSQL reclaims space with VACUUM"
        )
    before = os.path.getsize(store.path)
    store.compact()
    after = os.path.getsize(store.path)
    click.echo(f"compacted {store.path}: {before:,} -> {after:,} bytes")
