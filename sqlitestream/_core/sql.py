"""SQL text that both SQL backends share, built from fixed fragments only: table and column
names come from this package, never from a caller, and every value is a bound parameter.

``mark`` is the backend's parameter placeholder: ``"?"`` for SQLite, ``"%s"`` for psycopg.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlitestream.store import EventFilter


def _names(columns: str) -> list[str]:
    return [name.strip() for name in columns.split(",")]


def insert(table: str, columns: str, mark: str) -> str:
    """``INSERT INTO table (columns) VALUES (...)`` with one placeholder per column."""
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(mark for _ in _names(columns))})"


def create(table: str, columns: str, mark: str) -> str:
    """Insert a record unless its ``id`` (the first column) is taken; a taken id inserts no row."""
    return insert(table, columns, mark) + " ON CONFLICT (id) DO NOTHING"


def upsert(table: str, columns: str, mark: str) -> str:
    """Insert a record, or replace every other column of the one with its ``id``."""
    updates = ", ".join(f"{name} = excluded.{name}" for name in _names(columns)[1:])
    return insert(table, columns, mark) + f" ON CONFLICT (id) DO UPDATE SET {updates}"


class EventQueries:
    """The page query of ``get_events`` for one events table: one statement per combination
    of filters present, built once and cached."""

    def __init__(self, table: str, page_columns: str, mark: str, since: Callable[[datetime], Any]) -> None:
        self._select = f"SELECT {page_columns} FROM {table} WHERE session_id = {mark}"
        self._mark = mark
        self._since = since  # how the backend binds a timestamp
        self._cache: dict[tuple[bool, ...], str] = {}

    def page(self, query: EventFilter, *, no_limit: Any) -> tuple[str, tuple[Any, ...]]:
        """The statement and its parameters; ``no_limit`` is the backend's LIMIT for none."""
        filters = (
            ("seq >", query.after),
            ("seq <", query.before),
            ("run_id =", query.run_id),
            ("type =", None if query.type is None else query.type.value),
            ("ts >=", None if query.since is None else self._since(query.since)),
        )
        present = tuple(value is not None for _, value in filters)
        sql = self._cache.get(present)
        if sql is None:
            where = "".join(
                f" AND {fragment} {self._mark}" for (fragment, _), used in zip(filters, present) if used
            )
            sql = self._cache[present] = f"{self._select}{where} ORDER BY seq LIMIT {self._mark}"
        values = tuple(value for _, value in filters if value is not None)
        return sql, (query.session_id, *values, no_limit if query.limit is None else query.limit)


def schema_section(schema_text: str, marker: str) -> tuple[str, ...]:
    """The statements of a ``schema.sql`` text from the comment ``marker`` to the next
    version's marker (``-- Added in version N``) or the end: an upgrade step that adds tables
    takes their text from the one place that defines them."""
    start = schema_text.index(marker)
    end = schema_text.find("\n-- Added in version ", start + len(marker))
    section = schema_text[start:] if end == -1 else schema_text[start:end]
    statements = (
        "\n".join(line for line in part.splitlines() if not line.lstrip().startswith("--")).strip()
        for part in section.split(";")
    )
    return tuple(statement for statement in statements if statement)
