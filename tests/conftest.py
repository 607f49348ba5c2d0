"""Shared pytest fixtures."""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator

import pytest

# Signals -----------------------------------------------------------------------------------
# A shell starts a background job (``cmd &``) with SIGINT ignored, and an ignored signal stays
# ignored in every child, so the CLI tests' Ctrl-C (SIGINT to a child) would do nothing. A
# handler, unlike SIG_IGN, is reset to the default in a child.

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# PostgreSQL --------------------------------------------------------------------------------
# The PostgreSQL tests read the server from SQLITESTREAM_PG_DSN (.ci/run sets it when a server
# answers on 127.0.0.1:5432). Unset: they skip. Set but the server does not answer: they fail.

PG_DSN_VARIABLE = "SQLITESTREAM_PG_DSN"


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The DSN of a reachable PostgreSQL server (skip without one configured)."""
    dsn = os.environ.get(PG_DSN_VARIABLE)
    if not dsn:
        pytest.skip(f"set {PG_DSN_VARIABLE} to a PostgreSQL URL to run the PostgreSQL tests")
    try:
        import psycopg

        psycopg.connect(dsn, connect_timeout=5).close()
    except Exception as exc:
        pytest.fail(f"{PG_DSN_VARIABLE} is set but PostgreSQL does not answer: {exc}", pytrace=False)
    return dsn


def drop_pg_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A fresh schema name for one test (random, so concurrent test runs never meet), dropped
    with everything in it afterwards."""
    schema = f"sqlitestream_test_{secrets.token_hex(6)}"
    try:
        yield schema
    finally:
        drop_pg_schema(pg_dsn, schema)


# Skips -------------------------------------------------------------------------------------
# One line per distinct reason instead of pytest's line per skipped test (-rs).


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"skipped {count}: {reason}")
