"""What the ``sqlitestream`` commands share: the command group class that turns failures into
exit codes and one ``Error:`` line (in command-line terms), the shared options (``--db``, the
output formats, the store options), and opening the store they name."""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from sqlitestream.cli.output import FORMATS
from sqlitestream.errors import SqliteStreamError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from sqlitestream.admin import AdminStore
    from sqlitestream.cli.output import Column, Writer

    Store = AdminStore

DEFAULT_DB = "sqlitestream.db"
DB_ENV = "SQLITESTREAM_DB"
PAGE = 1000
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
_DB_AFTER_COMMAND = "sqlitestream.db"  # ctx.meta key: a --db given after the command
DEMO_EVENTS = 30
DEMO_INTERVAL_MS = 100
DEMO_MIN_EVENTS = 5
"""The demo's defaults and its smallest run, here so ``demo --help`` shows them without
loading the demo (which loads the manager)."""

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Config:
    db: str


class CommandGroup(click.Group):
    """The command group; turns every failure inside a command into an exit code and at most
    one ``Error:`` line, so no traceback reaches the user."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
            return result
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except SqliteStreamError as exc:
            raise click.ClickException(in_cli_terms(_one_line(exc))) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            _silence_stdout()
            raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise click.ClickException(
                    "file descriptors ran out: this process has as many files open as it may; "
                    "raise the limit (ulimit -n) and run the command again"
                ) from None
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None
        except Exception as exc:
            if os.environ.get("SQLITESTREAM_DEBUG"):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {exc} (set SQLITESTREAM_DEBUG=1 to see where)"
            ) from None


def _one_line(exc: BaseException) -> str:
    # A note is a sentence of its own (e.g. how far an import got).
    text = "; ".join([str(exc), *getattr(exc, "__notes__", [])])
    return " ".join(text.split())


# The library speaks to Python callers (keyword arguments); a command-line user needs the
# option or command that does the same. Each pattern is a phrase of a library message.
_CLI_TERMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"open it with readonly=True to read it"),
        "the commands that only read (info, sessions, events, tail, export, check) still work",
    ),
    (re.compile(r"\(create=False: nothing was created; "), "(nothing was created; "),
    (
        re.compile(r"over the store's max_event_bytes=(\d+)"),
        r"over the limit of \1 bytes (raise it with --max-event-bytes)",
    ),
    (re.compile(r"readonly=True needs a store file"), "a command that only reads needs a store file"),
    (re.compile(r"^dest '"), "DEST '"),
    (re.compile(r"or pass overwrite=True"), "or give --overwrite"),
    (
        re.compile(r"close stores no longer needed, or raise the limit \(ulimit -n\)"),
        "raise the limit (ulimit -n) and run the command again",
    ),
)


def in_cli_terms(message: str) -> str:
    """A library error message with its Python argument names put as the command line's
    options and commands."""
    for pattern, replacement in _CLI_TERMS:
        message = pattern.sub(replacement, message)
    return message


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # no real file descriptor (e.g. output captured in a test)


# The store: --db before or after the command ----------------------------------------------------

DB_HELP = "The store: a SQLite file, or a postgresql:// URL (optionally with ?schema=NAME)."


def _remember_db(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_DB_AFTER_COMMAND] = value


def db_option(func: F) -> F:
    """``--db`` after the command (``sqlitestream events s1 --db app.db``), the same option as
    the group's ``--db`` before it; giving both with different stores is a usage error."""
    return click.option(
        "--db",
        type=click.Path(dir_okay=False),
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_remember_db,
        help=f"{DB_HELP} Default: $SQLITESTREAM_DB, else {DEFAULT_DB}.",
    )(func)


def store_location(ctx: click.Context | None = None) -> str:
    """The store the command works on: ``--db`` after the command, else before it, else
    ``$SQLITESTREAM_DB``, else ``sqlitestream.db``."""
    ctx = click.get_current_context() if ctx is None else ctx
    config = ctx.find_object(Config)
    before = DEFAULT_DB if config is None else config.db
    after = ctx.meta.get(_DB_AFTER_COMMAND)
    if after is None:
        return before
    root = ctx.find_root()
    if root.get_parameter_source("db") is ParameterSource.COMMANDLINE and before != after:
        raise click.UsageError(f"--db is given twice, as {before} and as {after}: give it once")
    return str(after)


def max_event_bytes_option(func: F) -> F:
    return click.option(
        "--max-event-bytes",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="Accept events with up to N bytes of data and metadata (the store's default: "
        "1048576). Give the limit the store's writers use.",
    )(func)


def store_options(max_event_bytes: int | None) -> dict[str, Any]:
    return {} if max_event_bytes is None else {"max_event_bytes": max_event_bytes}


def open_store(*, readonly: bool, create: bool = False, **options: Any) -> Store:
    """The store named by ``--db``, closed when the command ends.

    A store that does not exist is never created unless ``create``: read-only commands and
    ``delete-session`` say so and exit 1. ``options`` go to the store (``max_event_bytes``).
    """
    return open_location(store_location(), readonly=readonly, create=create, **options)


def open_location(db: str, *, readonly: bool, create: bool = False, **options: Any) -> Store:
    """The store at ``db`` (a SQLite file, or a ``postgresql://`` URL with an optional
    ``schema`` parameter), closed when the command ends; created only if ``create``."""
    from sqlitestream.locations import open_store as open_at

    store = open_at(db, readonly=readonly, create=create, **options)
    click.get_current_context().call_on_close(store.close)
    return store


def note(message: str) -> None:
    click.echo(message, err=True)


# Completion --------------------------------------------------------------------------------------


def complete_session_id(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Session ids of the store named on the command line (or $SQLITESTREAM_DB) that start
    with what is typed; nothing at all when the store cannot be read (completion must never
    print an error into the user's shell)."""
    from click.shell_completion import CompletionItem

    try:
        location = ctx.meta.get(_DB_AFTER_COMMAND)
        if location is None:
            root = ctx.find_root()
            location = root.params.get("db") or os.environ.get(DB_ENV) or DEFAULT_DB
        from sqlitestream.locations import open_store as open_at

        with open_at(location, readonly=True, create=False) as store:
            ids = [stream.session_id for stream in store.list_streams()]
            ids += [session.id for session in store.list_sessions()]
    except Exception:  # noqa: BLE001 - any failure means: no suggestions
        return []
    return [CompletionItem(sid) for sid in sorted(set(ids)) if sid.startswith(incomplete)]


# Output formats ----------------------------------------------------------------------------------

_FORMAT_FLAGS = (
    ("table", "--table", "Aligned columns (the default)."),
    ("json", "--json", "One JSON document (same as --format json)."),
    ("jsonl", "--nl", "Newline-delimited JSON: one object per line (same as --format jsonl)."),
    ("csv", "--csv", "CSV with a header row (same as --format csv)."),
)


def format_option(func: F) -> F:
    """``--format table|json|jsonl|csv`` and its shortcuts ``--table``, ``--json``, ``--nl``,
    ``--csv``; the command gets the chosen one as ``fmt``. Asking for two different formats
    is a usage error."""

    @functools.wraps(func)
    def with_format(*args: Any, **kwargs: Any) -> Any:
        chosen = {kwargs.pop("format_choice")} - {None}
        for name, _flag, _help in _FORMAT_FLAGS:
            if kwargs.pop(f"format_{name}"):
                chosen.add(name)
        if len(chosen) > 1:
            raise click.UsageError(
                f"the output formats {' and '.join(sorted(str(c) for c in chosen))} exclude each "
                "other: give one of --format, --table, --json, --nl, --csv"
            )
        kwargs["fmt"] = chosen.pop() if chosen else "table"
        return func(*args, **kwargs)

    decorated: Callable[..., Any] = with_format
    for name, flag, text in reversed(_FORMAT_FLAGS):
        decorated = click.option(flag, f"format_{name}", is_flag=True, help=text)(decorated)
    decorated = click.option(
        "--format",
        "format_choice",
        type=click.Choice(FORMATS),
        default=None,
        help="table (default): aligned columns, cut to fit a terminal; json: one document; "
        "jsonl: one object per line (lossless); csv: a header row, then one row per record.",
    )(decorated)
    return decorated  # type: ignore[return-value]


def progress_option(func: F) -> F:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show progress on stderr (default: only when stderr is a terminal).",
    )(func)


def output_writer(fmt: str, columns: tuple[Column, ...], *, header: bool = True) -> Writer:
    from sqlitestream.cli.output import make_writer

    return make_writer(fmt, columns, header=header)


def write_one(fmt: str, record: dict[str, Any], columns: tuple[Column, ...]) -> None:
    """Print one record: ``json`` as one object (not an array of one), ``table`` as lines of
    ``field  value``, ``jsonl`` and ``csv`` as one row."""
    from sqlitestream.cli.output import dumps

    if fmt == "json":
        click.echo(dumps(record))
        return
    writer = output_writer(fmt, columns, header=fmt != "table")
    rows: Iterable[dict[str, Any]] = (
        [{"field": key, "value": value} for key, value in record.items()] if fmt == "table" else [record]
    )
    writer.write(rows)
    writer.close()
