"""The ``sqlitestream`` commands that move whole sessions: ``export`` (JSON lines, lossless),
``import`` and ``copy`` (between any two stores, SQLite or PostgreSQL). Registered on the
group in ``cli``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import click

from sqlitestream.cli.common import PAGE, open_location, open_store, progress_option
from sqlitestream.errors import SqliteStreamError

# Export and import ------------------------------------------------------------------------------


@click.command("export")
@click.argument("session_ids", nargs=-1)
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="Write to this file instead of stdout (replaced only when complete).")
@progress_option
def export_(session_ids: tuple[str, ...], output: str, progress: bool | None) -> None:
    """Write sessions, runs and events as JSON lines: the lossless export format.

    With no SESSION_IDS, every session in the store (saved or only in the log). The format is
    specified in docs/export-format.md; `sqlitestream import` loads it.

    \b
    Example:
      sqlitestream --db events.db export -o backup.jsonl
      sqlitestream --db events.db export s1 s2 | gzip > two.jsonl.gz
    """
    from sqlitestream.cli.output import Progress, dumps

    store = open_store(readonly=True)
    wanted = list(session_ids) or None
    records = store.export_records(wanted)
    total = sum(stream.event_count for stream in store.list_streams(wanted))
    bar = Progress("exporting events", total, enabled=progress)

    def lines() -> Iterator[bytes]:
        for record in records:
            if record["kind"] == "event":
                bar.update()
            yield (dumps(record) + "\n").encode("utf-8")

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
    for chunk in chunks:
        batch.append(chunk)
        if len(batch) >= PAGE:
            stream.write(b"".join(batch))
            batch.clear()
    stream.write(b"".join(batch))
    stream.flush()


def _write_file(path: str, chunks: Iterable[bytes]) -> None:
    """Write to a temporary file next to ``path`` and rename it: never a half-written export."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".export-", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@progress_option
def import_(file: str, progress: bool | None) -> None:
    """Load an export (FILE, or - for stdin) into the store, creating the store if needed.

    Idempotent: events already present by id are skipped and counted. Each session is
    imported atomically with its sequence numbers; the first conflict stops the import (the
    sessions before it stay imported).

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

    store = open_store(readonly=False, create=True)
    bar = Progress("importing (bytes)" if size is not None else "importing (lines)", size, enabled=progress)

    def records() -> Iterator[Any]:
        import json

        for number, line in enumerate(source, 1):
            bar.update(len(line) if size is not None else 1)
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise _bad_line(number, exc) from None

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


def _bad_line(number: int, exc: Exception) -> SqliteStreamError:
    from sqlitestream.errors import ValidationError

    return ValidationError(f"line {number} is not JSON: {exc}")


@click.command()
@click.option("--from", "source", required=True, metavar="SRC",
              help="The store to copy from: a SQLite file or a postgresql:// URL.")
@click.option("--to", "target", required=True, metavar="DST",
              help="The store to copy into (created if needed): a SQLite file or a postgresql:// URL.")
@progress_option
def copy(source: str, target: str, progress: bool | None) -> None:
    """Copy every session, run and event from SRC into DST, e.g. from SQLite to PostgreSQL.

    Ids, payloads, timestamps and sequence numbers are kept exactly. Idempotent: a re-run
    copies nothing twice (events already in DST by id are skipped and counted); each session
    is copied atomically, and the first conflict stops the copy. --db is not used.

    \b
    Example:
      sqlitestream copy --from events.db --to postgresql://app@db.internal/app
      sqlitestream copy --from 'postgresql://app@db.internal/app?schema=agents' --to back.db
    """
    from sqlitestream.cli.output import Progress

    src = open_location(source, readonly=True)
    dst = open_location(target, readonly=False, create=True)
    bar = Progress("copying events", sum(s.event_count for s in src.list_streams()), enabled=progress)
    try:
        report = dst.import_records(
            src.export_records(),
            on_session=lambda done: bar.update(done.events_added + done.events_skipped),
        )
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
