"""The ``sqlitestream`` commands that move whole sessions: ``export`` (JSON lines, lossless),
``import`` and ``copy`` (between any two stores, SQLite or PostgreSQL). Registered on the
group in ``cli``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import click

from sqlitestream.cli.common import (
    PAGE,
    complete_session_id,
    db_option,
    max_event_bytes_option,
    note,
    open_location,
    open_store,
    progress_option,
    store_options,
)
from sqlitestream.errors import SqliteStreamError

# Export and import ------------------------------------------------------------------------------


@click.command("export")
@click.argument("session_ids", nargs=-1, shell_complete=complete_session_id)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="Write to this file instead of stdout (replaced only when complete; a new "
    "file gets the permissions of the umask, a replaced one keeps its own).",
)
@progress_option
@db_option
def export_(session_ids: tuple[str, ...], output: str, progress: bool | None) -> None:
    """Write sessions, runs and events as JSON lines: the lossless export format.

    With no SESSION_IDS, every session in the store (saved or only in the log). The format is
    specified in docs/export-format.md; `sqlitestream import` loads it.

    A row the store cannot read (a damaged file) is reported on stderr and the export goes on,
    exiting 1 at the end: to stdout everything readable is written; a file given with -o is
    then left as it was (it is replaced only by a complete export).

    \b
    Example:
      sqlitestream --db events.db export -o backup.jsonl
      sqlitestream --db events.db export s1 s2 | gzip > two.jsonl.gz
    """
    from sqlitestream.cli.output import Progress, dumps
    from sqlitestream.cli.reading import damaged_rows_error
    from sqlitestream.damage import DamagedRow

    store = open_store(readonly=True)
    wanted = list(session_ids) or None
    damaged: list[DamagedRow] = []

    def report(row: DamagedRow) -> None:
        note(f"Error: {row.message}")
        damaged.append(row)

    records = store.export_records(wanted, on_damaged=report)
    total = sum(stream.event_count for stream in store.list_streams(wanted))
    bar = Progress("exporting events", total, enabled=progress)

    def lines() -> Iterator[bytes]:
        for record in records:
            if record["kind"] == "event":
                bar.update()
            yield (dumps(record) + "\n").encode("utf-8")
        if damaged:
            # Raised from inside, so a file given with -o is not replaced by a partial export.
            bar.finish()
            done = "written to stdout" if output == "-" else f"read, but {output} was left as it was"
            raise damaged_rows_error([(row.session_id, row.sequence) for row in damaged], done)

    try:
        if output == "-":
            _write_stdout(lines())
        else:
            _write_file(output, lines())
    finally:
        bar.finish()


def _write_stdout(chunks: Iterable[bytes]) -> None:
    stream = sys.stdout.buffer
    batch: list[bytes] = []
    try:
        for chunk in chunks:
            batch.append(chunk)
            if len(batch) >= PAGE:
                stream.write(b"".join(batch))
                batch.clear()
    finally:  # also what came before a failure: stdout shows everything that was read
        stream.write(b"".join(batch))
        stream.flush()


def _write_file(path: str, chunks: Iterable[bytes]) -> None:
    """Write to a temporary file next to ``path`` and rename it: never a half-written export.

    The file gets the mode ``open(path, "w")`` would give it: an existing file's own, else
    0o666 less the umask (a temporary file is private until it is renamed).
    """
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    try:
        handle, temporary = tempfile.mkstemp(prefix=".export-", dir=directory)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            os.fchmod(out.fileno(), mode)
        try:
            os.replace(temporary, path)
        except OSError as exc:
            raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        os.unlink(temporary)
        raise


def _umask() -> int:
    # The only portable way to read the umask is to set it; this process is single-threaded
    # here and sets it straight back.
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@max_event_bytes_option
@progress_option
@db_option
def import_(file: str, max_event_bytes: int | None, progress: bool | None) -> None:
    """Load an export (FILE, or - for stdin) into the store, creating the store if needed.

    Idempotent: events already present by id are skipped and counted. Each session is
    imported atomically with its sequence numbers (a session of more than 1,000 events in
    transactions of 1,000, so memory stays bounded); the first conflict stops the import (the
    sessions and batches before it stay imported, and a re-run continues). Records are numbered
    from 1, one per non-blank line.
    An export of a store that takes larger events than the default needs --max-event-bytes.

    \b
    Example:
      sqlitestream --db restored.db import backup.jsonl
    """
    if file == "-":
        source = sys.stdin.buffer
        size = None
    else:
        try:
            source = open(file, "rb")  # noqa: SIM115 - closed by the context below
        except OSError as exc:
            raise click.BadParameter(f"cannot read {file}: {exc.strerror}", param_hint="FILE") from None
        click.get_current_context().call_on_close(source.close)
        size = os.fstat(source.fileno()).st_size
    from sqlitestream.cli.output import Progress

    store = open_store(readonly=False, create=True, **store_options(max_event_bytes))
    bar = Progress("importing (bytes)" if size is not None else "importing (lines)", size, enabled=progress)

    def records() -> Iterator[Any]:
        import json

        record = 0
        for line_number, line in enumerate(source, 1):
            bar.update(len(line) if size is not None else 1)
            if not line.strip():
                continue
            record += 1
            try:
                yield json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise _bad_line(record, line_number, exc) from None

    try:
        report = store.import_records(records())
    finally:
        bar.finish()
    click.echo(
        f"imported {len(report.sessions)} session(s): "
        f"session records {report.sessions_added} added, {report.sessions_updated} updated, "
        f"{report.sessions_unchanged} unchanged; "
        f"runs {report.runs_added} added, {report.runs_updated} updated, "
        f"{report.runs_unchanged} unchanged; "
        f"events {report.events_added} added, {report.events_skipped} skipped (already present)"
    )


def _bad_line(record: int, line: int, exc: ValueError | RecursionError) -> SqliteStreamError:
    """Record numbers count the records (as the library's messages do); the line is named
    too where blank lines make it differ."""
    from json import JSONDecodeError

    from sqlitestream.errors import ValidationError

    where = f"record {record}" if record == line else f"record {record} (line {line})"
    if isinstance(exc, RecursionError):
        # The decoder gives up at Python's recursion limit; an event may be nested 100 levels.
        return ValidationError(f"{where} is nested too deeply to read (events allow 100 levels)")
    detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, JSONDecodeError) else str(exc)
    return ValidationError(f"{where} is not JSON: {detail}")


@click.command()
@click.option(
    "--from",
    "source",
    required=True,
    metavar="SRC",
    help="The store to copy from: a SQLite file or a postgresql:// URL.",
)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="DST",
    help="The store to copy into (created if needed): a SQLite file or a postgresql:// URL.",
)
@max_event_bytes_option
@progress_option
def copy(source: str, target: str, max_event_bytes: int | None, progress: bool | None) -> None:
    """Copy every session, run and event from SRC into DST, e.g. from SQLite to PostgreSQL.

    Ids, payloads, timestamps and sequence numbers are kept exactly. Idempotent: a re-run
    copies nothing twice (events already in DST by id are skipped and counted); each session
    is copied atomically (a session of more than 1,000 events in transactions of 1,000, so
    memory stays bounded), and the first conflict stops the copy. A SQLite file that the copy
    created is removed again when the copy fails. SRC and DST must be different stores.
    --db is not used. Copying from a store that takes larger events than the default needs
    --max-event-bytes.

    \b
    Example:
      sqlitestream copy --from events.db --to postgresql://app@db.internal/app
      sqlitestream copy --from 'postgresql://app@db.internal/app?schema=agents' --to back.db
    """
    from sqlitestream.cli.output import Progress
    from sqlitestream.locations import is_postgres_location

    src = open_location(source, readonly=True)
    created = not is_postgres_location(target) and not os.path.lexists(target)
    if not created and _same_store(src.path, target):
        raise click.UsageError(f"--from and --to name the same store ({src.path}): nothing to copy")
    try:
        dst = open_location(target, readonly=False, create=True, **store_options(max_event_bytes))
    except BaseException:
        if created:  # the open may have made the file before it failed (e.g. no descriptors left)
            _remove_store_file(os.path.abspath(target))
        raise
    if is_postgres_location(target) and dst.path == src.path:
        raise click.UsageError(f"--from and --to name the same store ({src.path}): nothing to copy")
    bar = Progress("copying events", sum(s.event_count for s in src.list_streams()), enabled=progress)
    try:
        report = dst.import_records(
            src.export_records(),
            on_session=lambda done: bar.update(done.events_added + done.events_skipped),
        )
    except BaseException:
        if created:
            dst.close()
            _remove_store_file(dst.path)
        raise
    finally:
        bar.finish()
    click.echo(
        f"copied {len(report.sessions)} session(s) from {src.path} to {dst.path}: "
        f"session records {report.sessions_added} added, {report.sessions_updated} updated, "
        f"{report.sessions_unchanged} unchanged; "
        f"runs {report.runs_added} added, {report.runs_updated} updated, "
        f"{report.runs_unchanged} unchanged; "
        f"events {report.events_added} added, {report.events_skipped} skipped (already present)"
    )


def _same_store(source_path: str, target: str) -> bool:
    """Whether the SQLite file ``target`` (which exists) is the store at ``source_path``."""
    try:
        return os.path.samefile(source_path, target)
    except (OSError, ValueError):
        return False


def _remove_store_file(path: str) -> None:
    """Remove a SQLite store file this command created, with the files beside it."""
    for name in (path, path + "-wal", path + "-shm", path + "-lock", path + "-journal"):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
