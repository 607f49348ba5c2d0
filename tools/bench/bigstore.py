"""Large stores for the size and memory cases, bulk-loaded with raw SQL into a real store file
(created by sqlitestream, so the schema, stamps and WAL mode are the store's own) and cached
between runs, since 10M events take minutes to write.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import apsw

from sqlitestream import SQLiteSessionStore

from .workloads import dumps, payload, session_name

_CHUNK = 200_000
_INSERT = (
    "INSERT INTO events (session_id, seq, id, type, run_id, ts, data, metadata, position) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_BASE_MICROS = 1_700_000_000_000_000


def cached_store(cache_dir: Path, sessions: int, per_session: int) -> Path:
    """A store with ``sessions`` sessions named ``s00000``... of ``per_session`` events each,
    built once per schema version and reused."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"events-{sessions}x{per_session}-v{SQLiteSessionStore.SCHEMA_VERSION}.db"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    started = time.monotonic()
    total = sessions * per_session
    print(
        f"  building {path.name} ({total:,} events; cached for later runs) ...", file=sys.stderr, flush=True
    )
    SQLiteSessionStore(partial).close()  # the schema and stamps, exactly as the store makes them
    conn = apsw.Connection(str(partial))
    try:
        conn.pragma("journal_mode", "off")  # a throw-away build: no journal, no fsync
        conn.pragma("synchronous", "off")
        conn.pragma("cache_size", -512_000)
        metadata = dumps({})
        # One body per 1000 events keeps the load fast; the reads decode it all the same.
        bodies = [dumps(payload(i)) for i in range(1000)]
        rows: list[tuple[object, ...]] = []
        serial = 0
        conn.execute("BEGIN")
        for s in range(sessions):
            session = session_name(s)
            for seq in range(1, per_session + 1):
                serial += 1
                rows.append(
                    (
                        session,
                        seq,
                        f"evt_{serial:032x}",
                        "message_sent",
                        None,
                        _BASE_MICROS + serial,
                        bodies[serial % 1000],
                        metadata,
                        serial,  # the feed position: load order
                    )
                )
                if len(rows) >= _CHUNK:
                    conn.executemany(_INSERT, rows)
                    rows.clear()
                    conn.execute("COMMIT")
                    conn.execute("BEGIN")
            conn.execute("INSERT INTO streams (session_id, latest_seq) VALUES (?, ?)", (session, per_session))
        if rows:
            conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
        conn.pragma("journal_mode", "wal")
    finally:
        conn.close()
    os.replace(partial, path)
    print(f"  built in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return path
