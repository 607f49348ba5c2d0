"""Measurement and reporting: interleaved repetitions, medians with spread, ratios, targets.

Absolute times on a shared machine are noise; what we report is each variant's median over
repetitions that were interleaved with its baseline's (so a slow patch of the machine hits
both), and the median of the per-repetition ratios.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Stat:
    """A median with its spread (min and max over the repetitions) and the raw samples."""

    median: float
    low: float
    high: float
    samples: list[float]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stat:
        values = [float(value) for value in samples]
        return cls(statistics.median(values), min(values), max(values), values)

    @property
    def spread_pct(self) -> float:
        """Half the min-max range as a percentage of the median."""
        if not self.median:
            return 0.0
        return 50.0 * (self.high - self.low) / abs(self.median)

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "samples": self.samples,
        }


@dataclass
class Row:
    """One measured variant of a case (or one measured quantity)."""

    label: str
    stat: Stat
    unit: str
    ratio: Stat | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            **self.stat.to_json(),
            "ratio": None if self.ratio is None else self.ratio.to_json(),
            "note": self.note,
        }


@dataclass
class Target:
    """One of the issue's targets, checked against a measured figure."""

    text: str
    value: float
    met: bool
    unit: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "value": self.value, "unit": self.unit, "met": self.met}


@dataclass
class CaseResult:
    name: str
    title: str
    baseline: str | None = None
    rows: list[Row] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, label: str) -> Row | None:
        for row in self.rows:
            if row.label == label:
                return row
        return None

    def skip(self, label: str, reason: str) -> None:
        self.skipped.append((label, " ".join(reason.split())))

    def target(self, text: str, value: float, met: bool, unit: str = "") -> None:
        self.targets.append(Target(text, value, met, unit))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "baseline": self.baseline,
            "rows": [row.to_json() for row in self.rows],
            "skipped": [{"label": label, "reason": reason} for label, reason in self.skipped],
            "targets": [target.to_json() for target in self.targets],
            "notes": self.notes,
        }


def interleave(variants: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Run each variant's one-repetition callable ``reps`` times, rotating the order each
    round so no variant always runs first (warm caches) or last (a tired machine)."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(variants[name]())
    return samples


def ratio_stat(samples: list[float], baseline: list[float], *, lower_is_better: bool = False) -> Stat:
    """Per-repetition ratios (variant / baseline for rates, baseline / variant for times), so
    that a ratio above 1 always means "better than the baseline"."""
    pairs = zip(samples, baseline)
    if lower_is_better:
        ratios = [b / s if s else math.inf for s, b in pairs]
    else:
        ratios = [s / b if b else math.inf for s, b in pairs]
    return Stat.of(ratios)


def add_rows(
    case: CaseResult,
    samples: dict[str, list[float]],
    unit: str,
    *,
    baseline: str | None = None,
    lower_is_better: bool = False,
    notes: dict[str, str] | None = None,
) -> None:
    base = samples.get(baseline) if baseline else None
    for label, values in samples.items():
        ratio = None
        if base is not None:
            ratio = ratio_stat(values, base, lower_is_better=lower_is_better)
        case.rows.append(Row(label, Stat.of(values), unit, ratio, (notes or {}).get(label, "")))


# Rendering ----------------------------------------------------------------------------------


def human(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit in {"ms", "us", "%", "MB", "x"}:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def render_case(case: CaseResult) -> str:
    lines = [f"== {case.name}: {case.title}"]
    if case.rows:
        header = ("variant", "median", "unit", "spread", "ratio", "ratio range", "note")
        table = [header]
        for row in case.rows:
            ratio = "" if row.ratio is None else f"{row.ratio.median:.2f}x"
            ratio_range = "" if row.ratio is None else f"{row.ratio.low:.2f}-{row.ratio.high:.2f}"
            table.append(
                (
                    row.label,
                    human(row.stat.median, row.unit),
                    row.unit,
                    f"±{row.stat.spread_pct:.0f}%",
                    ratio,
                    ratio_range,
                    row.note,
                )
            )
        widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
        for index, line in enumerate(table):
            cells = [
                str(cell).rjust(width) if 0 < i < 6 else str(cell).ljust(width)
                for i, (cell, width) in enumerate(zip(line, widths))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
            if index == 0:
                lines.append("  " + "  ".join("-" * width for width in widths))
    if case.baseline:
        lines.append(f"  ratios are per-repetition, against {case.baseline!r} (>1 = better)")
    for target in case.targets:
        mark = "MET " if target.met else "MISS"
        lines.append(f"  [{mark}] {target.text}: {human(target.value, target.unit)}{target.unit}")
    for label, reason in case.skipped:
        lines.append(f"  skipped {label}: {reason}")
    for note in case.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def render_markdown(cases: Sequence[CaseResult]) -> str:
    """One Markdown table of every row, for the README."""
    out = ["| case | variant | median | spread | ratio |", "| --- | --- | ---: | ---: | ---: |"]
    for case in cases:
        for row in case.rows:
            ratio = "" if row.ratio is None else f"{row.ratio.median:.2f}x"
            out.append(
                f"| {case.name} | {row.label} | {human(row.stat.median, row.unit)} {row.unit} "
                f"| ±{row.stat.spread_pct:.0f}% | {ratio} |"
            )
    out.append("")
    out.append("| target | measured | met |")
    out.append("| --- | ---: | :---: |")
    for case in cases:
        for target in case.targets:
            out.append(
                f"| {target.text} | {human(target.value, target.unit)}{target.unit} "
                f"| {'yes' if target.met else '**no**'} |"
            )
    return "\n".join(out)
