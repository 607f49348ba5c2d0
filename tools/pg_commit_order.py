"""What serialises appends on PostgreSQL: plain psycopg, one connection per thread, each
append one autocommit statement shaped like the store's (bump the session's counter, insert
the event), with or without the two things that can serialise commits: the feed row's update
(positions in commit order, the row locked until commit) and ``pg_notify``. Prints, for each
combination, one writer's rate, 16 writers' aggregate and their ratio, per repetition. Then
the limit group commit works against: one connection committing 16 appends (16 sessions) per
transaction, the feed row taken once and one ``NOTIFY`` statement, against one writer's
single appends (feed row and ``NOTIFY`` both).

    python -m tools.pg_commit_order --seconds 3 --reps 3 [--dsn URL] [--synchronous-commit off]

It is a measurement, not a test: run it on a quiet machine (one writer's rate is the bar every
ratio is measured against, and a loaded scheduler moves it more than any lock does).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import threading
import time

import psycopg

DEFAULT_DSN = os.environ.get("SQLITESTREAM_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def create_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".events (session_id text, seq bigint, id text UNIQUE, '
            "data text, position bigint, PRIMARY KEY (session_id, seq))"
        )
        conn.execute(f'CREATE TABLE "{schema}".streams (session_id text PRIMARY KEY, latest_seq bigint)')
        conn.execute(f'CREATE TABLE "{schema}".feed (only_row int PRIMARY KEY, last_position bigint)')
        conn.execute(f'INSERT INTO "{schema}".feed VALUES (1, 0)')
        conn.execute(f'CREATE SEQUENCE "{schema}".positions')


def append_sql(schema: str, *, feed_row: bool, notify: bool) -> str:
    """One append as one statement; positions from the feed row or from a sequence."""
    s = f'"{schema}"'
    taken = (
        f"taken AS (UPDATE {s}.feed SET last_position = last_position + 1 RETURNING last_position), "
        if feed_row
        else ""
    )
    position = "last_position" if feed_row else f"nextval('{s}.positions')"
    sources = "bump, taken" if feed_row else "bump"
    notified = ", pg_notify('sqlitestream_commit_order', 'x')" if notify else ""
    return (
        f"WITH bump AS (INSERT INTO {s}.streams AS c VALUES (%s, 1) ON CONFLICT (session_id) "
        "DO UPDATE SET latest_seq = c.latest_seq + 1 RETURNING latest_seq), "
        f"{taken}inserted AS (INSERT INTO {s}.events SELECT %s, latest_seq, %s, %s, {position} "
        f"FROM {sources} RETURNING seq{notified}) SELECT * FROM inserted"
    )


def rate(dsn: str, sql: str, writers: int, seconds: float, synchronous_commit: str) -> float:
    """Appends a second of ``writers`` threads, each on its own connection and session."""
    counts = [0] * writers
    ready = threading.Barrier(writers + 1)
    deadline: list[float] = []

    def write(index: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"SET synchronous_commit = {synchronous_commit}")
            session = f"s{index}-{secrets.token_hex(4)}"
            ready.wait()
            while time.monotonic() < deadline[0]:
                conn.execute(sql, (session, session, secrets.token_hex(12), '{"text": "x"}')).fetchall()
                counts[index] += 1

    threads = [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    deadline.append(time.monotonic() + seconds)
    ready.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def grouped_sql(schema: str) -> str:
    """Appends to the sessions of one array in one statement: the shape of a shared
    transaction of the store's group commit."""
    s = f'"{schema}"'
    return (
        f"WITH bump AS (INSERT INTO {s}.streams AS c SELECT unnest(%s::text[]), 1 ON CONFLICT "
        "(session_id) DO UPDATE SET latest_seq = c.latest_seq + 1 RETURNING session_id, latest_seq), "
        f"taken AS (UPDATE {s}.feed SET last_position = last_position + cardinality(%s::text[]) "
        "RETURNING last_position), "
        f"inserted AS (INSERT INTO {s}.events SELECT b.session_id, b.latest_seq, "
        "b.session_id || '-' || b.latest_seq, %s, t.last_position - row_number() OVER () + 1 "
        "FROM bump AS b, taken AS t RETURNING pg_notify('sqlitestream_commit_order', session_id)) "
        "SELECT count(*) FROM inserted"
    )


def grouped_rate(dsn: str, schema: str, group: int, seconds: float, synchronous_commit: str) -> float:
    """Appends a second of one connection committing ``group`` appends per transaction."""
    sql = grouped_sql(schema)
    sessions = [f"g{index}-{secrets.token_hex(4)}" for index in range(group)]
    count = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET synchronous_commit = {synchronous_commit}")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            conn.execute(sql, (sessions, sessions, '{"text": "x"}')).fetchall()
            count += group
    return count / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.pg_commit_order", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--synchronous-commit", choices=("on", "off"), default="on")
    args = parser.parse_args(argv)
    schema = f"commit_order_{secrets.token_hex(4)}"
    create_schema(args.dsn, schema)
    try:
        for feed_row in (True, False):
            for notify in (True, False):
                sql = append_sql(schema, feed_row=feed_row, notify=notify)
                ones, manys = [], []
                for _ in range(args.reps):
                    ones.append(rate(args.dsn, sql, 1, args.seconds, args.synchronous_commit))
                    manys.append(rate(args.dsn, sql, args.writers, args.seconds, args.synchronous_commit))
                ratios = [many / one for one, many in zip(ones, manys, strict=True)]
                print(
                    f"feed row {'yes' if feed_row else 'no '}, notify {'yes' if notify else 'no '}: "
                    f"1 writer {statistics.median(ones):7.0f}/s, {args.writers} writers "
                    f"{statistics.median(manys):7.0f}/s, ratio {statistics.median(ratios):.2f}x "
                    f"(per repetition {', '.join(f'{r:.2f}' for r in ratios)})",
                    flush=True,
                )
        single = append_sql(schema, feed_row=True, notify=True)
        ones, groups = [], []
        for _ in range(args.reps):
            ones.append(rate(args.dsn, single, 1, args.seconds, args.synchronous_commit))
            groups.append(grouped_rate(args.dsn, schema, args.writers, args.seconds, args.synchronous_commit))
        ratios = [group / one for one, group in zip(ones, groups, strict=True)]
        print(
            f"{args.writers} appends per commit, one connection: {statistics.median(groups):7.0f}/s, "
            f"ratio {statistics.median(ratios):.2f}x one writer "
            f"(per repetition {', '.join(f'{r:.2f}' for r in ratios)})",
            flush=True,
        )
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
