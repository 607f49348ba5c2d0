"""The ``sqlitestream`` command: inspect, follow, append to, export/import, check and migrate a
store. A thin client: every command calls the public library API (the ``SessionStore``
contract plus the SQLite store's administration methods).

Exit codes: 0 success; 1 an error (one ``Error: ...`` line on stderr) or problems found by
``check``; 2 a usage error; 130 interrupted (Ctrl-C); 141 the output pipe was closed early
(``... | head``). No command prints a traceback (set ``SQLITESTREAM_DEBUG=1`` to see one for
an unexpected error).
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

import click

from sqlitestream import __version__
from sqlitestream.cli.backup import backup
from sqlitestream.cli.common import (
    DB_ENV,
    DB_HELP,
    DEFAULT_DB,
    DEMO_EVENTS,
    DEMO_INTERVAL_MS,
    DEMO_MIN_EVENTS,
    CommandGroup,
    Config,
    db_option,
    format_option,
    max_event_bytes_option,
    note,
    open_store,
    output_writer,
    progress_option,
    store_location,
    store_options,
    write_one,
)
from sqlitestream.cli.feed import consumers
from sqlitestream.cli.reading import (
    EVENT_TYPE,
    events,
    latest,
    session_id_argument,
    tail,
)
from sqlitestream.cli.retention import compact, trim
from sqlitestream.cli.serve import serve
from sqlitestream.cli.stats import stats
from sqlitestream.cli.transfer import copy, export_, import_

__all__ = ["cli", "main"]

# The group -----------------------------------------------------------------------------------


@click.group(
    cls=CommandGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    default=DEFAULT_DB,
    show_default=True,
    envvar=DB_ENV,
    show_envvar=True,
    help=DB_HELP + " Also accepted after the command.",
)
@click.version_option(__version__, "--version", prog_name="sqlitestream")
@click.pass_context
def cli(ctx: click.Context, db: str) -> None:
    """Inspect, follow, append to, export/import, check and migrate a sqlitestream store.

    The store is the SQLite file or postgresql:// URL given by --db (before or after the
    command) or $SQLITESTREAM_DB.
    Commands that only read never create or change it, and work while other processes write.

    \b
    Example:
      sqlitestream --db events.db tail s1 --follow
    """
    ctx.obj = Config(db=db)


# Schema ---------------------------------------------------------------------------------------


@cli.command()
@db_option
def init() -> None:
    """Create the store, or upgrade its schema; print the schema version.

    \b
    Example:
      sqlitestream --db events.db init
    """
    store = open_store(readonly=False, create=True)
    version = store.store_info().schema_version
    if store.upgraded_from == 0:
        click.echo(f"created store {store.path} (schema version {version})")
    elif store.upgraded_from is None:
        click.echo(f"store {store.path} is up to date (schema version {version})")
    else:
        click.echo(f"upgraded store {store.path} from schema version {store.upgraded_from} to {version}")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only show the pending upgrades.")
@click.option("--no-backup", is_flag=True, help="Do not write a backup copy first.")
@click.option(
    "--backup",
    "backup_path",
    type=click.Path(dir_okay=False),
    help="Where to write the backup (default: DB.schema-vN.bak next to the store).",
)
@db_option
def migrate(dry_run: bool, no_backup: bool, backup_path: str | None) -> None:
    """Show and apply pending schema upgrades, writing a backup copy of a SQLite file first.

    The backup is a consistent copy of the file as it was (refused if the backup file already
    exists). A PostgreSQL store is not backed up to a file (--backup is refused): run
    pg_dump --schema=NAME first. A store newer than this sqlitestream is refused and left
    unchanged.

    \b
    Example:
      sqlitestream --db events.db migrate --dry-run
      sqlitestream --db events.db migrate
    """
    from sqlitestream.locations import (
        inspect_schema,
        is_postgres_location,
        migrate_schema,
    )

    location = store_location()
    if no_backup and backup_path is not None:
        raise click.UsageError("--backup and --no-backup exclude each other")
    postgres = is_postgres_location(location)
    if postgres and backup_path is not None:
        raise click.UsageError(
            "--backup: a PostgreSQL store is not backed up to a file; run pg_dump --schema=NAME first"
        )
    status = inspect_schema(location)
    click.echo(
        f"store {status.path}: schema version {status.version}; "
        f"this sqlitestream uses version {status.code_version}"
    )
    if status.up_to_date:
        click.echo("nothing to upgrade")
        return
    for step in status.pending:
        click.echo(f"upgrade {step.from_version} -> {step.to_version}:")
        for statement in step.statements:
            click.echo(f"  {statement};")
    if dry_run:
        click.echo("dry run: nothing was changed")
        return
    if postgres:
        no_backup = True
        note("no backup written: back up a PostgreSQL store with pg_dump --schema=NAME first")
    if not no_backup and backup_path is None:
        backup_path = f"{status.path}.schema-v{status.version}.bak"
    result = migrate_schema(location, backup_path=None if no_backup else backup_path)
    if result.backup_path is not None:
        click.echo(f"backup written to {result.backup_path}")
    click.echo(f"upgraded to schema version {result.to_version}")


# Inspecting -----------------------------------------------------------------------------------


@cli.command()
@format_option
@db_option
def info(fmt: str) -> None:
    """Path, file and WAL size, schema version, journal mode, synchronous level, and the numbers
    of sessions, runs, events and streams (session ids with events).

    \b
    Example:
      sqlitestream --db events.db info --format json
    """
    from sqlitestream.cli.output import FIELD_COLUMNS

    write_one(fmt, open_store(readonly=True).store_info().to_dict(), FIELD_COLUMNS)


@cli.command()
@click.option("--status", metavar="STATUS", help="Only saved sessions with this status (e.g. active).")
@click.option("--agent", metavar="AGENT_ID", help="Only saved sessions of this agent id.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most this many rows.")
@format_option
@db_option
def sessions(status: str | None, agent: str | None, limit: int | None, fmt: str) -> None:
    """Saved sessions, and every session id in the log, with event count and latest sequence.

    Saved sessions come first (oldest first), then ids that only have events. With --status
    or --agent only saved sessions are listed.

    \b
    Example:
      sqlitestream --db events.db sessions --status active --format jsonl
    """
    from sqlitestream.cli.output import SESSION_COLUMNS

    store = open_store(readonly=True)
    saved = store.list_sessions(status=status, agent_id=agent)
    streams = {stream.session_id: stream for stream in store.list_streams()}
    rows: list[dict[str, Any]] = []
    for session in saved:
        stream = streams.pop(session.id, None)
        rows.append(_session_row(session.to_dict(), stream, saved=True))
    if status is None and agent is None:
        for session_id, stream in streams.items():
            rows.append(_session_row({"id": session_id}, stream, saved=False))
    if limit is not None:
        rows = rows[:limit]
    writer = output_writer(fmt, SESSION_COLUMNS)
    writer.write(rows)
    writer.close()
    if not rows and fmt == "table":
        note("no sessions")


def _session_row(record: dict[str, Any], stream: Any, *, saved: bool) -> dict[str, Any]:
    blank = dict.fromkeys(
        (
            "agent_id",
            "status",
            "parent_session_id",
            "metadata",
            "context",
            "tags",
            "created_at",
            "updated_at",
        ),
    )
    return {
        **blank,
        **record,
        "saved": saved,
        "event_count": 0 if stream is None else stream.event_count,
        "first_sequence": 1 if stream is None else stream.first_sequence,
        "latest_sequence": 0 if stream is None else stream.latest_sequence,
        "last_event_at": None if stream is None else stream.to_dict()["last_event_at"],
    }


@cli.command()
@session_id_argument
@click.option("--status", metavar="STATUS", help="Only runs with this status (e.g. running).")
@format_option
@db_option
def runs(session_id: str, status: str | None, fmt: str) -> None:
    """The session's runs, oldest first.

    \b
    Example:
      sqlitestream --db events.db runs s1 --status failed
    """
    from sqlitestream.cli.output import RUN_COLUMNS

    found = open_store(readonly=True).list_runs(session_id, status=status)
    writer = output_writer(fmt, RUN_COLUMNS)
    writer.write(run.to_dict() for run in found)
    writer.close()
    if not found and fmt == "table":
        note("no runs")


# Writing --------------------------------------------------------------------------------------


def _json_object(value: str | None, option: str) -> dict[str, Any] | None:
    """The JSON object given to --data/--metadata: inline, @FILE, or - (stdin)."""
    import json

    if value is None:
        return None
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc.strerror}", param_hint=option) from None
    else:
        text = value
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(
            f"must be a JSON object ({{...}}), got a JSON {type(parsed).__name__}", param_hint=option
        )
    return parsed


@cli.command()
@session_id_argument
@click.option("--type", "type_", type=EVENT_TYPE, required=True, help="The event type (e.g. message_sent).")
@click.option("--data", metavar="JSON|@FILE|-", help="The event data: a JSON object, @FILE, or - for stdin.")
@click.option(
    "--metadata", metavar="JSON|@FILE|-", help="The event metadata: a JSON object, @FILE, or - for stdin."
)
@click.option("--run-id", metavar="RUN_ID", help="The run the event belongs to.")
@click.option("--id", "event_id", metavar="ID", help="The event id (default: a new unique id).")
@click.option(
    "--expected-sequence",
    type=click.IntRange(min=0),
    metavar="N",
    help="Append only if the session's latest sequence is N (0: empty).",
)
@max_event_bytes_option
@format_option
@db_option
def append(
    session_id: str,
    type_: str,
    data: str | None,
    metadata: str | None,
    run_id: str | None,
    event_id: str | None,
    expected_sequence: int | None,
    max_event_bytes: int | None,
    fmt: str,
) -> None:
    """Append one event and print it as stored, with its sequence number.

    An id that the session already holds prints the original event and writes nothing. Bad
    JSON, an unknown type or a failed --expected-sequence write nothing. Creates the store if
    it does not exist.

    \b
    Example:
      sqlitestream --db events.db append s1 --type message_sent --data '{"text": "hi"}'
    """
    from sqlitestream.cli.output import EVENT_COLUMNS
    from sqlitestream.models import Event

    if data == "-" and metadata == "-":
        raise click.UsageError("only one of --data and --metadata can read stdin")
    fields: dict[str, Any] = {
        "data": _json_object(data, "--data") or {},
        "metadata": _json_object(metadata, "--metadata") or {},
        "run_id": run_id,
    }
    if event_id is not None:
        fields["id"] = event_id
    event = Event(type=type_, session_id=session_id, **fields)
    store = open_store(readonly=False, create=True, **store_options(max_event_bytes))
    stored = store.append_event_with_sequence(event, expected_sequence=expected_sequence)
    writer = output_writer(fmt, EVENT_COLUMNS)
    writer.write([stored.to_dict()])
    writer.close()


@cli.command("delete-session")
@session_id_argument
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@db_option
def delete_session(session_id: str, yes: bool) -> None:
    """Delete a session: its saved record, runs, events and sequence counter.

    \b
    Example:
      sqlitestream --db events.db delete-session s1 --yes
    """
    from sqlitestream.errors import SessionNotFoundError

    store = open_store(readonly=False)
    try:
        store.get_session(session_id)
        saved = True
    except SessionNotFoundError:
        saved = False
    streams = store.list_streams([session_id])
    events_count = streams[0].event_count if streams else 0
    runs_count = len(store.list_runs(session_id))
    if not saved and not events_count and not runs_count:
        raise click.ClickException(f"no session {session_id} in the store; nothing was deleted")
    what = f"{'its saved record, ' if saved else ''}{runs_count} run(s) and {events_count} event(s)"
    if not yes:
        try:
            confirmed = click.confirm(f"Delete session {session_id}: {what}?", err=True)
        except click.Abort:  # no answer (end of input)
            click.echo(err=True)
            confirmed = False
        if not confirmed:
            raise click.ClickException("not confirmed; nothing was deleted")
    store.delete_session(session_id)
    click.echo(f"deleted session {session_id}: {what}")


# Checking -------------------------------------------------------------------------------------


@cli.command()
@format_option
@progress_option
@db_option
def check(fmt: str, progress: bool | None) -> None:
    """Check the store: SQLite's integrity check plus the log's invariants for every session
    (sequences exactly 1..latest, the stored latest sequence equal to the highest, event ids
    unique). Prints what it finds; exits 1 when anything is wrong. --json and --nl print the
    report as one object; --csv prints one finding per row.

    \b
    Example:
      sqlitestream --db events.db check
    """
    from sqlitestream.cli.output import FINDING_COLUMNS, ProgressCallback

    store = open_store(readonly=True)
    on_progress = ProgressCallback("checking sessions", enabled=progress)
    try:
        report = store.check_integrity(on_progress=on_progress)
    finally:
        on_progress.finish()
    if fmt in ("json", "jsonl"):
        write_one(fmt, report.to_dict(), FINDING_COLUMNS)
    else:
        writer = output_writer(fmt, FINDING_COLUMNS)
        writer.write(finding.to_dict() for finding in report.findings)
        writer.close()
    if fmt == "table":
        summary = f"{report.sessions_checked} session(s), {report.events_checked} event(s) checked"
        click.echo(f"ok: {summary}" if report.ok else f"{len(report.findings)} problem(s): {summary}")
    if not report.ok:
        raise click.ClickException(f"the store has {len(report.findings)} problem(s)")


# The demo -------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--events",
    "count",
    type=click.IntRange(min=DEMO_MIN_EVENTS),
    default=DEMO_EVENTS,
    show_default=True,
    metavar="N",
    help=f"How many agent events to emit (at least {DEMO_MIN_EVENTS}: the run's start, a "
    "message, its token usage and its end come with every run).",
)
@click.option(
    "--interval-ms",
    type=click.IntRange(min=0),
    default=DEMO_INTERVAL_MS,
    show_default=True,
    metavar="MS",
    help="Pause between emitted events.",
)
@db_option
def demo(count: int, interval_ms: int) -> None:
    """Run the main job: a second process records an agent session through SessionManager
    while this one follows it live, printing each event with its sequence number and how
    long after its append it was seen; then a summary with wake latencies.

    Creates the store (--db) if needed, and ends by printing commands to look at the
    recorded session.

    \b
    Example:
      sqlitestream demo --events 20
    """
    from sqlitestream.cli.demo import run_demo

    location = store_location()
    summary = run_demo(location, events=count, interval_ms=interval_ms, echo=click.echo)
    db = "" if location == DEFAULT_DB else f" --db {shlex.quote(location)}"
    click.echo("\nTry next:")
    click.echo(f"  sqlitestream{db} events {summary.session_id}")
    click.echo(f"  sqlitestream{db} tail -f {summary.session_id}   (Ctrl-C to stop)")
    click.echo(f"  sqlitestream{db} runs {summary.session_id}")
    click.echo(f"  sqlitestream{db} stats")


for _command in (
    events,
    latest,
    tail,
    consumers,
    export_,
    import_,
    copy,
    backup,
    stats,
    trim,
    compact,
    serve,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """The console-script entry point (``sqlitestream``, ``python -m sqlitestream``)."""
    cli.main(args=argv, prog_name="sqlitestream")
