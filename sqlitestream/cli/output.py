"""Output for the command line: one writer per ``--format``, the columns of each record kind in
the ``table`` format, and progress reporting on stderr.

Writers take JSON-ready dicts (the records' ``to_dict()``): ``json`` and ``jsonl`` print them
unchanged (lossless); ``csv`` prints every field, nested values as JSON text; ``table`` picks
columns and, on a terminal, shortens payloads that do not fit it (ids are never cut).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import IO, Any, Protocol

__all__ = [
    "CONSUMER_COLUMNS",
    "EVENT_COLUMNS",
    "FEED_COLUMNS",
    "FIELD_COLUMNS",
    "FINDING_COLUMNS",
    "FORMATS",
    "RUN_COLUMNS",
    "SESSION_COLUMNS",
    "STATS_COLUMNS",
    "TYPE_COLUMNS",
    "Column",
    "Progress",
    "Writer",
    "make_writer",
]

FORMATS = ("table", "json", "jsonl", "csv")
_GAP = "  "
_ELLIPSIS = "…"
_MIN_SHRUNK = 6


def dumps(value: Any) -> str:
    """Compact JSON (UTF-8 text kept as is)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its header, how to show a record's value, and when it is cut short to
    fit the terminal: ``shrink`` 0 never (ids, sequence numbers, times), else the higher the
    sooner."""

    header: str
    show: Callable[[dict[str, Any]], str]
    shrink: int = 0


class Writer(Protocol):
    def write(self, records: Iterable[dict[str, Any]]) -> None:
        """Print records (a batch; may be called again with more) and flush."""

    def close(self) -> None:
        """Finish the output (e.g. close the JSON array)."""


class TableWriter:
    """Aligned columns under a header, each line cut to the terminal width.

    Column widths come from the first batch, so rows printed one at a time (``tail
    --follow``) stay aligned with the header; a later, longer value in a column that is never
    cut (a sequence number) widens it rather than being cut.
    """

    def __init__(
        self, columns: Sequence[Column], out: IO[str], *, width: int | None, header: bool = True
    ) -> None:
        self._columns = list(columns)
        self._out = out
        self._width = None if width is None else max(width, 20)
        self._header = header
        self._widths: list[int] | None = None

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        rows = [[_cell(column.show(record)) for column in self._columns] for record in records]
        if not rows:
            return
        lines = []
        if self._widths is None:
            headers = [column.header for column in self._columns]
            natural = [
                max(display_width(text) for text in texts)
                for texts in zip(headers if self._header else [""] * len(headers), *rows)
            ]
            self._widths = self._fit(natural)
            if self._header:
                lines.append(self._line(headers))
        else:
            # Later rows (tail --follow) may hold longer numbers: fixed columns grow, never cut.
            for index, column in enumerate(self._columns):
                if not column.shrink:
                    wanted = max(display_width(row[index]) for row in rows)
                    self._widths[index] = max(self._widths[index], wanted)
        lines.extend(self._line(row) for row in rows)
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()

    def close(self) -> None:
        pass

    def _fit(self, natural: list[int]) -> list[int]:
        """Cut shrinkable columns, the highest ``shrink`` first, until a line fits the width."""
        widths = list(natural)
        if self._width is None:
            return widths
        excess = sum(widths) + len(_GAP) * (len(widths) - 1) - self._width
        order = sorted(
            (index for index, column in enumerate(self._columns) if column.shrink),
            key=lambda index: -self._columns[index].shrink,
        )
        for index in order:
            if excess <= 0:
                break
            floor = min(widths[index], max(display_width(self._columns[index].header), _MIN_SHRUNK))
            cut = min(excess, widths[index] - floor)
            widths[index] -= cut
            excess -= cut
        return widths

    def _line(self, cells: list[str]) -> str:
        assert self._widths is not None
        parts = []
        last = len(cells) - 1
        for index, (text, width) in enumerate(zip(cells, self._widths)):
            shown = display_width(text)
            if shown > width:
                text = _clip(text, max(width - 1, 0)) + _ELLIPSIS
                shown = display_width(text)
            parts.append(text if index == last else text + " " * (width - shown))
        # A line whose uncut columns (ids, numbers, times) alone are wider than the terminal is
        # left long: the terminal wraps it, and every id stays whole, to be copied.
        return _GAP.join(parts).rstrip()


class JsonWriter:
    """One JSON array, one record per line inside it."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._count = 0

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        chunks = []
        for record in records:
            chunks.append(("[\n" if self._count == 0 else ",\n") + dumps(record))
            self._count += 1
        if chunks:
            self._out.write("".join(chunks))
            self._out.flush()

    def close(self) -> None:
        self._out.write("[]\n" if self._count == 0 else "\n]\n")
        self._out.flush()


class CsvWriter:
    """A header row, then one row per record, with every field of the first record (nested
    values as compact JSON, None as an empty cell), like ``sqlite-utils --csv``."""

    def __init__(self, out: IO[str]) -> None:
        import csv

        self._out = out
        self._csv = csv
        self._writer: Any = None

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            if self._writer is None:
                self._writer = self._csv.DictWriter(
                    self._out, fieldnames=list(record), extrasaction="ignore", lineterminator="\n"
                )
                self._writer.writeheader()
            self._writer.writerow({key: _csv_cell(value) for key, value in record.items()})
        self._out.flush()

    def close(self) -> None:
        pass


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list, bool)):
        return dumps(value)
    return value


class JsonlWriter:
    """One JSON object per line: the lossless format, streamable."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        text = "".join(dumps(record) + "\n" for record in records)
        if text:
            self._out.write(text)
            self._out.flush()

    def close(self) -> None:
        pass


def make_writer(
    fmt: str, columns: Sequence[Column], out: IO[str] | None = None, *, header: bool = True
) -> Writer:
    """The writer for ``--format fmt`` on ``out`` (stdout by default)."""
    out = sys.stdout if out is None else out
    if fmt == "json":
        return JsonWriter(out)
    if fmt == "jsonl":
        return JsonlWriter(out)
    if fmt == "csv":
        return CsvWriter(out)
    return TableWriter(columns, out, width=table_width(out), header=header)


def table_width(out: IO[str]) -> int | None:
    """How wide a table may be: ``$COLUMNS`` when set (the user asked, as for ``ls``), else the
    terminal's width when ``out`` is one, else no limit: a pipe or a file gets whole values."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    return shutil.get_terminal_size().columns if tty else None


_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}
_KEPT = frozenset("\u200d")  # the zero-width joiner inside emoji sequences: shown, not escaped


def _cell(value: str) -> str:
    """One table cell on one line, safe for the terminal: every character that is not
    printable (C0 and C1 controls such as ESC and BEL, DEL, line and paragraph separators,
    bidirectional overrides) is shown as an escape (``\\n``, ``\\x1b``, ``\\u202e``)."""
    if value.isprintable():
        return value
    return "".join(
        char if char.isprintable() or char in _KEPT else _ESCAPES.get(char) or _escape(char) for char in value
    )


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def display_width(text: str) -> int:
    """The columns ``text`` takes in a terminal: wide (CJK, most emoji) characters take two,
    combining marks none. ASCII is measured without loading ``wcwidth``."""
    if text.isascii():
        return len(text)
    from wcwidth import wcswidth

    width = wcswidth(text)
    return len(text) if width < 0 else width


def _clip(text: str, width: int) -> str:
    """The longest start of ``text`` that takes at most ``width`` columns."""
    if text.isascii():
        return text[:width]
    from wcwidth import wcwidth

    used = 0
    for index, char in enumerate(text):
        used += max(wcwidth(char), 0)
        if used > width:
            return text[:index]
    return text


def _time(value: Any) -> str:
    """'2026-03-01 12:00:00.123' (UTC, milliseconds) from an ISO 8601 string."""
    if not value:
        return ""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]


def _text(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda record: "" if record.get(key) is None else str(record[key])


def _json(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda record: "" if record.get(key) in (None, {}) else dumps(record[key])


def _when(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda record: _time(record.get(key))


EVENT_COLUMNS = (
    Column("SEQ", _text("sequence_number")),
    Column("TIME (UTC)", _when("timestamp")),
    Column("TYPE", _text("type")),
    Column("RUN", _text("run_id")),
    Column("DATA", _json("data"), shrink=1),
    Column("ID", _text("id")),
)
FEED_COLUMNS = (
    Column("POS", _text("position")),
    Column("SESSION", _text("session_id")),
    *EVENT_COLUMNS,
)
CONSUMER_COLUMNS = (
    Column("CONSUMER", _text("name")),
    Column("POSITION", _text("position")),
    Column("LAG", _text("lag")),
    Column("UPDATED (UTC)", _when("updated_at")),
)
SESSION_COLUMNS = (
    Column("SESSION", _text("id")),
    Column("AGENT", _text("agent_id")),
    Column("STATUS", _text("status")),
    Column("EVENTS", _text("event_count")),
    Column("LATEST", _text("latest_sequence")),
    Column("CREATED (UTC)", _when("created_at")),
    Column("LAST EVENT (UTC)", _when("last_event_at")),
)
RUN_COLUMNS = (
    Column("RUN", _text("id")),
    Column("STATUS", _text("status")),
    Column("TURNS", _text("turn_count")),
    Column("STARTED (UTC)", _when("started_at")),
    Column("ENDED (UTC)", _when("ended_at")),
    Column("TOKENS", _json("token_usage"), shrink=2),
    Column("ERROR", _json("error"), shrink=1),
)
FINDING_COLUMNS = (
    Column("KIND", _text("kind")),
    Column("SESSION", _text("session_id")),
    Column("PROBLEM", _text("message"), shrink=1),
)
FIELD_COLUMNS = (
    Column("FIELD", _text("field")),
    Column("VALUE", _text("value"), shrink=1),
)
"""For one record shown as lines of ``field  value`` (``info``)."""
STATS_COLUMNS = (
    Column("SESSION", _text("session_id")),
    Column("EVENTS", _text("events")),
    Column("BYTES", _text("bytes")),
    Column("LARGEST EVENT", _text("largest_event_bytes")),
    Column("LAST EVENT (UTC)", _when("last_event_at")),
)
TYPE_COLUMNS = (
    Column("TYPE", _text("type")),
    Column("EVENTS", _text("events")),
)


class Progress:
    """Progress of long work on stderr: a bar on a terminal; with ``forced`` and no terminal,
    a line at every 10% (or every 10,000 items when the total is unknown); otherwise nothing.
    """

    def __init__(self, label: str, total: int | None, *, enabled: bool | None) -> None:
        import click

        stream = sys.stderr
        tty = stream.isatty()
        self._label = label
        self._total = total
        self._done = 0
        self._next_line = 0
        self._stream = stream
        self._lines = bool(enabled) and not tty
        self._bar: Any = None
        if (enabled is None or enabled) and tty:
            self._bar = click.progressbar(length=total, label=label, file=stream)
            self._bar.__enter__()

    def update(self, count: int = 1) -> None:
        self._done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self._lines and self._done >= self._next_line:
            self._line()
            step = max(self._total // 10, 1) if self._total else 10_000
            self._next_line = (self._done // step + 1) * step

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        elif self._lines:
            self._line(final=True)
            self._lines = False

    def _line(self, final: bool = False) -> None:
        if self._total:
            text = f"{self._label} {self._done}/{self._total} ({100 * self._done // self._total}%)"
        else:
            text = f"{self._label} {self._done}"
        self._stream.write(text + (" done\n" if final else "\n"))
        self._stream.flush()


class ProgressCallback:
    """An ``on_progress(done, total)`` callback for the API's long operations, drawing a
    :class:`Progress` that starts at the first call (when the total is known) and is ended by
    :meth:`finish` (call it in a ``finally``)."""

    def __init__(self, label: str, *, enabled: bool | None) -> None:
        self._label = label
        self._enabled = enabled
        self._bar: Progress | None = None
        self._shown = 0

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = Progress(self._label, total, enabled=self._enabled)
        self._bar.update(done - self._shown)
        self._shown = done

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.finish()
