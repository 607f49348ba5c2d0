"""Output for the command line: one writer per ``--format``, the columns of each record kind in
the ``table`` format, and progress reporting on stderr.

Writers take JSON-ready dicts (the records' ``to_dict()``): ``json`` and ``jsonl`` print them
unchanged (lossless); ``table`` picks columns and shortens what does not fit the terminal.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

__all__ = [
    "FORMATS",
    "Column",
    "Writer",
    "make_writer",
    "Progress",
    "EVENT_COLUMNS",
    "SESSION_COLUMNS",
    "RUN_COLUMNS",
    "FINDING_COLUMNS",
    "FIELD_COLUMNS",
]

FORMATS = ("table", "json", "jsonl")
_GAP = "  "
_ELLIPSIS = "…"
_MIN_SHRUNK = 6


def dumps(value: Any) -> str:
    """Compact JSON (UTF-8 text kept as is)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its header, how to show a record's value, and when it is cut short to
    fit the terminal: ``shrink`` 0 never (sequence numbers, times), else the higher the
    sooner (ids before payloads)."""

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
        self, columns: Sequence[Column], out: IO[str], *, width: int, header: bool = True
    ) -> None:
        self._columns = list(columns)
        self._out = out
        self._width = max(width, 20)
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
                max(len(text) for text in texts)
                for texts in zip(headers if self._header else [""] * len(headers), *rows)
            ]
            self._widths = self._fit(natural)
            if self._header:
                lines.append(self._line(headers))
        else:
            # Later rows (tail --follow) may hold longer numbers: fixed columns grow, never cut.
            for index, column in enumerate(self._columns):
                if not column.shrink:
                    wanted = max(len(row[index]) for row in rows)
                    self._widths[index] = max(self._widths[index], wanted)
        lines.extend(self._line(row) for row in rows)
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()

    def close(self) -> None:
        pass

    def _fit(self, natural: list[int]) -> list[int]:
        """Cut shrinkable columns, the highest ``shrink`` first, until a line fits the width."""
        widths = list(natural)
        excess = sum(widths) + len(_GAP) * (len(widths) - 1) - self._width
        order = sorted(
            (index for index, column in enumerate(self._columns) if column.shrink),
            key=lambda index: -self._columns[index].shrink,
        )
        for index in order:
            if excess <= 0:
                break
            floor = min(widths[index], max(len(self._columns[index].header), _MIN_SHRUNK))
            cut = min(excess, widths[index] - floor)
            widths[index] -= cut
            excess -= cut
        return widths

    def _line(self, cells: list[str]) -> str:
        assert self._widths is not None
        parts = []
        last = len(cells) - 1
        for index, (text, width) in enumerate(zip(cells, self._widths)):
            if len(text) > width:
                text = text[: max(width - 1, 0)] + _ELLIPSIS
            parts.append(text if index == last else text.ljust(width))
        line = _GAP.join(parts).rstrip()
        # When even the narrowest columns do not fit, the line is cut rather than wrapped.
        return line if len(line) <= self._width else line[: self._width - 1] + _ELLIPSIS


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
    return TableWriter(columns, out, width=shutil.get_terminal_size().columns, header=header)


def _cell(value: str) -> str:
    # One table row per record: line breaks and tabs inside a value would break the layout.
    return value.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")


def _time(value: Any) -> str:
    """'2026-03-01 12:00:00.123' (UTC, milliseconds) from an ISO 8601 string."""
    if not value:
        return ""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(str(value)).astimezone(timezone.utc)
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
    Column("RUN", _text("run_id"), shrink=2),
    Column("DATA", _json("data"), shrink=1),
    Column("ID", _text("id"), shrink=3),
)
SESSION_COLUMNS = (
    Column("SESSION", _text("id"), shrink=1),
    Column("AGENT", _text("agent_id"), shrink=2),
    Column("STATUS", _text("status")),
    Column("EVENTS", _text("event_count")),
    Column("LATEST", _text("latest_sequence")),
    Column("CREATED (UTC)", _when("created_at")),
    Column("LAST EVENT (UTC)", _when("last_event_at")),
)
RUN_COLUMNS = (
    Column("RUN", _text("id"), shrink=3),
    Column("STATUS", _text("status")),
    Column("TURNS", _text("turn_count")),
    Column("STARTED (UTC)", _when("started_at")),
    Column("ENDED (UTC)", _when("ended_at")),
    Column("TOKENS", _json("token_usage"), shrink=2),
    Column("ERROR", _json("error"), shrink=1),
)
FINDING_COLUMNS = (
    Column("KIND", _text("kind")),
    Column("SESSION", _text("session_id"), shrink=2),
    Column("PROBLEM", _text("message"), shrink=1),
)
FIELD_COLUMNS = (
    Column("FIELD", _text("field")),
    Column("VALUE", _text("value"), shrink=1),
)
"""For one record shown as lines of ``field  value`` (``info``)."""


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
