"""Sizes and repetition counts of a quick and a full run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    quick: bool
    workdir: Path
    cache_dir: Path
    reps: int
    append_n: int  # single appends per repetition at synchronous=normal
    append_full_n: int  # ... at synchronous=full (each commit pays an fsync)
    batch_events: int  # events per repetition, in batches of ``batch_size``
    batch_size: int
    read_events: int  # events in the session every reader walks in pages of 100
    latest_calls: int
    scale_sizes: tuple[tuple[int, int], ...]  # (sessions, events per session)
    scale_pages: int  # page reads timed per size and repetition
    wake_count: int
    idle_window_s: float
    contention_s: float
    contention_reps: int
    memory_events: int
    thread_count: int  # threads appending on one store object
    thread_events: int  # events per repetition across them, at synchronous=normal
    thread_full_events: int  # ... at synchronous=full
    pg_writers: int  # threads appending on one PostgreSQL store object
    pg_thread_events: int
    cli_runs: int
    peers: bool
    poll_interval_ms: int | None  # None: the store's default

    @classmethod
    def for_mode(cls, *, quick: bool, workdir: Path, cache_dir: Path) -> Settings:
        if quick:
            return cls(
                quick=True,
                workdir=workdir,
                cache_dir=cache_dir,
                reps=3,
                append_n=200,
                append_full_n=30,
                batch_events=2_000,
                batch_size=100,
                read_events=2_000,
                latest_calls=2_000,
                scale_sizes=((1, 1_000), (100, 1_000)),
                scale_pages=200,
                wake_count=60,
                idle_window_s=1.0,
                contention_s=1.0,
                contention_reps=1,
                memory_events=20_000,
                thread_count=8,
                thread_events=2_000,
                thread_full_events=400,
                pg_writers=16,
                pg_thread_events=800,
                cli_runs=3,
                peers=True,
                poll_interval_ms=None,
            )
        return cls(
            quick=False,
            workdir=workdir,
            cache_dir=cache_dir,
            reps=7,
            append_n=3_000,
            append_full_n=1_000,
            batch_events=20_000,
            batch_size=100,
            read_events=20_000,
            latest_calls=20_000,
            scale_sizes=((1, 1_000), (1_000, 1_000), (1_000, 10_000)),
            scale_pages=2_000,
            wake_count=1_000,
            idle_window_s=5.0,
            contention_s=4.0,
            contention_reps=3,
            memory_events=1_000_000,
            thread_count=8,
            thread_events=16_000,
            thread_full_events=4_000,
            pg_writers=16,
            pg_thread_events=8_000,
            cli_runs=20,
            peers=True,
            poll_interval_ms=None,
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def store_options(self) -> dict[str, Any]:
        """Keyword arguments for ``SQLiteSessionStore``: only what the run sets."""
        return {} if self.poll_interval_ms is None else {"poll_interval_ms": self.poll_interval_ms}
