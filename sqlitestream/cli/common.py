"""What the ``sqlitestream`` commands share: the command group class that turns failures into
exit codes and one ``Error:`` line, the shared options, and opening the store named by
``--db`` (or any location, for ``copy``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sqlitestream.cli.output import FORMATS
from sqlitestream.errors import SqliteStreamError

if TYPE_CHECKING:
    from sqlitestream.admin import AdminStore
    from sqlitestream.cli.output import Column, Writer

    Store = AdminStore

DEFAULT_DB = "sqlitestream.db"
DB_ENV = "SQLITESTREAM_DB"
PAGE = 1000
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

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
            raise click.ClickException(_one_line(exc)) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            _silence_stdout()
            raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None
        except Exception as exc:
            if os.environ.get("SQLITESTREAM_DEBUG"):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {exc} (set SQLITESTREAM_DEBUG=1 to see where)"
            ) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join([str(exc), *getattr(exc, "__notes__", [])])
    return " ".join(text.split())


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # no real file descriptor (e.g. output captured in a test)


# Shared options ------------------------------------------------------------------------------


def format_option(func: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table: aligned, cut to the terminal width; json: one array; jsonl: one object "
        "per line (lossless).",
    )(func)


def progress_option(func: F) -> F:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show progress on stderr (default: only when stderr is a terminal).",
    )(func)


def output_writer(fmt: str, columns: tuple[Column, ...], *, header: bool = True) -> Writer:
    from sqlitestream.cli.output import make_writer

    return make_writer(fmt, columns, header=header)


def open_store(*, readonly: bool, create: bool = False) -> Store:
    """The store named by ``--db``, closed when the command ends.

    A store that does not exist is never created unless ``create``: read-only commands and
    ``delete-session`` say so and exit 1.
    """
    return open_location(click.get_current_context().find_object(Config).db, readonly=readonly, create=create)  # type: ignore[union-attr]


def open_location(db: str, *, readonly: bool, create: bool = False) -> Store:
    """The store at ``db`` (a SQLite file, or a ``postgresql://`` URL with an optional
    ``schema`` parameter), closed when the command ends; created only if ``create``."""
    from sqlitestream.locations import open_store as open_at

    store = open_at(db, readonly=readonly, create=create)
    click.get_current_context().call_on_close(store.close)
    return store


def note(message: str) -> None:
    click.echo(message, err=True)
