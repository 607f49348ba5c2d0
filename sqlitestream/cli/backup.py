"""``sqlitestream backup DEST``: a consistent copy of a live SQLite store file, through
:meth:`SQLiteSessionStore.backup`. Registered on the group in ``cli``."""

from __future__ import annotations

import click

from sqlitestream.cli.common import (
    db_option,
    open_store,
    progress_option,
    store_location,
)


@click.command()
@click.argument("dest", type=click.Path(dir_okay=False))
@click.option(
    "--overwrite", is_flag=True, help="Replace DEST if it exists (in one rename; it keeps its permissions)."
)
@progress_option
@db_option
def backup(dest: str, overwrite: bool, progress: bool | None) -> None:
    """Write a consistent copy of the SQLite store to DEST, while other processes write.

    DEST is a complete store file, one snapshot of the store: open it with --db DEST, check it
    with `sqlitestream --db DEST check`, restore it by moving it into place while no process
    has the store open. DEST appears only once it is complete (a failed or interrupted backup
    leaves nothing); an existing DEST is refused unless --overwrite. A new DEST gets the
    permissions of the umask, as a new store does. A PostgreSQL store has no file to copy: use
    pg_dump --schema=NAME, or `sqlitestream copy --to FILE.db`, or `sqlitestream export`.

    \b
    Example:
      sqlitestream --db events.db backup events-backup.db
    """
    from sqlitestream import SQLiteSessionStore
    from sqlitestream.cli.output import ProgressCallback
    from sqlitestream.locations import is_postgres_location

    if is_postgres_location(store_location()):
        raise click.ClickException(
            "a PostgreSQL store has no file to back up: use pg_dump --schema=NAME, or copy it "
            "into a SQLite file with `sqlitestream copy --from URL --to FILE.db`, or "
            "`sqlitestream export -o FILE.jsonl`"
        )
    store = open_store(readonly=True)
    if not isinstance(store, SQLiteSessionStore):
        raise click.ClickException(f"{store.path} is not a SQLite store file; nothing to back up")
    on_progress = ProgressCallback("backing up (pages)", enabled=progress)
    try:
        written = store.backup(dest, overwrite=overwrite, on_progress=on_progress)
    finally:
        on_progress.finish()
    click.echo(f"backed up {store.path} to {written}")
