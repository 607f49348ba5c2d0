"""Shared pytest fixtures."""

from __future__ import annotations

import compileall
import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import CHILD_PACKAGE_VARIABLE, REPO_ROOT

# Signals -----------------------------------------------------------------------------------
# A shell starts a background job (``cmd &``) with SIGINT ignored, and an ignored signal stays
# ignored in every child, so the CLI tests' Ctrl-C (SIGINT to a child) would do nothing. A
# handler, unlike SIG_IGN, is reset to the default in a child.

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Scratch files -----------------------------------------------------------------------------
# Where the machine has a RAM file system (Linux: /dev/shm) and TMPDIR is not set, the run's
# temporary files (tmp_path, tempfile, the children's) go there. Every store the tests make
# fsyncs its commits; on a disk shared with other work each fsync waits in the disk's queue,
# and nothing a test checks depends on data reaching the disk (a killed process leaves its
# writes in the page cache; no test cuts the power). Measured on a busy 2-core machine, five
# store-heavy files: 74 / 57 s wall and 24 / 20 s CPU on ext4 -> 44 / 30 s and 18 / 16 s.
# Set TMPDIR to keep them on disk. Passing tests' directories are removed at the end
# (tmp_path_retention_policy in pyproject.toml), so only failures stay in memory.

RAM_FILE_SYSTEM = Path("/dev/shm")


def _scratch_in_memory() -> None:
    if "TMPDIR" in os.environ or not RAM_FILE_SYSTEM.is_dir() or not os.access(RAM_FILE_SYSTEM, os.W_OK):
        return
    os.environ["TMPDIR"] = str(RAM_FILE_SYSTEM)  # inherited by the xdist workers and children
    tempfile.tempdir = None  # this process chose its default already: choose again


# PostgreSQL commits ------------------------------------------------------------------------
# The same holds for the PostgreSQL server the tests share: each commit waits for its WAL to
# reach the disk (about 1 ms here, more when other work queues on the disk), and nothing a test
# checks depends on that: no test stops the server. synchronous_commit=off (PGOPTIONS, read by
# libpq in this process, the xdist workers and every child) ends that wait for the tests'
# connections only; what a commit makes visible to other connections, locks and notifications
# are the same. Set PGOPTIONS to keep the server's own setting.


def _postgres_commits_without_flush_wait() -> None:
    if "PGOPTIONS" not in os.environ:
        os.environ["PGOPTIONS"] = "-c synchronous_commit=off"


# Child interpreters ------------------------------------------------------------------------
# The tests start about 200 Python processes. Where PYTHONDONTWRITEBYTECODE is set (and the
# checkout has no __pycache__: the suite never writes into it), each would compile the package
# from source again, about 25 ms of CPU apiece. So the run (the xdist controller, before its
# workers start, so they share it) compiles a copy of the package once into a temporary
# directory that tests/support.py puts first on the children's PYTHONPATH; it is removed when
# the run ends. The copy is taken as the run starts, as the workers import the checkout.


def _compile_package_for_children(config: pytest.Config) -> None:
    directory = Path(tempfile.mkdtemp(prefix="sqlitestream-test-children-"))
    shutil.copytree(
        REPO_ROOT / "sqlitestream", directory / "sqlitestream", ignore=shutil.ignore_patterns("__pycache__")
    )
    compiled = compileall.compile_dir(directory / "sqlitestream", quiet=1, workers=1)
    if not compiled:
        shutil.rmtree(directory)
        raise pytest.UsageError(f"could not byte-compile the copy of the package in {directory}")
    os.environ[CHILD_PACKAGE_VARIABLE] = str(directory)
    config.stash[_CHILD_PACKAGE] = directory


# Order -------------------------------------------------------------------------------------
# The few tests that take seconds (a browser, processes killed and restarted, servers started
# again) run first: the workers then end together on the many short ones instead of one worker
# starting a long test when the others have finished (longest first; worksteal hands the rest
# round). The browser tests, first of all, mostly land on one worker, which then starts one
# Chromium instead of one per worker.
_SLOW_FIRST = (
    "test_viewer_browser.py",
    "test_postgres_outage.py",
    "test_feed_processes.py",
    "test_crash.py",
    "test_sidelock_hardening.py",
    "test_postgres_model.py",
    "test_docs_examples.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(_SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(_SLOW_FIRST)))


_CHILD_PACKAGE = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    if CHILD_PACKAGE_VARIABLE in os.environ:  # an xdist worker: its controller did all this
        return
    _scratch_in_memory()
    _postgres_commits_without_flush_wait()
    _compile_package_for_children(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = config.stash.get(_CHILD_PACKAGE, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
        os.environ.pop(CHILD_PACKAGE_VARIABLE, None)


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


class _WorkerSchemas:
    """The schemas ``pg_store_schema`` made in this process (normally one), the connection that
    empties them and, per schema, the statements that do it; all dropped at the end."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.made: list[str] = []
        self._emptying: dict[str, str] = {}
        self._conn: Any = None

    def empty(self, schema: str) -> None:
        """Delete every row of every table of ``schema`` except ``schema_version``, and set
        the one-row ``feed`` back to position 0, in one transaction and one round trip."""
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn)
        try:
            script = self._emptying.get(schema)
            if script is None:
                script = self._emptying[schema] = _emptying_script(self._conn, schema)
            with self._conn.transaction():
                self._conn.execute(script)
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@pytest.fixture(scope="session")
def _pg_worker_schemas(pg_dsn: str) -> Iterator[_WorkerSchemas]:
    schemas = _WorkerSchemas(pg_dsn)
    try:
        yield schemas
    finally:
        schemas.close()
        for schema in schemas.made:
            drop_pg_schema(pg_dsn, schema)


@pytest.fixture
def pg_store_schema(pg_dsn: str, _pg_worker_schemas: _WorkerSchemas) -> str:
    """The schema of an empty store of the current version, for tests that use the store only
    through its API (the contract kit): one per test process, every table but the version
    stamp emptied before each test. That costs a few ms in one round trip where creating and
    dropping a schema costs about 180 ms (catalog changes), ~90 times per run.
    Tests about the schema itself (created, upgraded, refused, dropped) take ``pg_schema``."""
    import psycopg

    from sqlitestream.postgres import PostgresSessionStore

    if _pg_worker_schemas.made:
        try:
            _pg_worker_schemas.empty(_pg_worker_schemas.made[-1])
            return _pg_worker_schemas.made[-1]
        except psycopg.Error:  # a test left it locked or broken: the next tests get a new one
            pass

    schema = f"sqlitestream_test_{secrets.token_hex(6)}"
    _pg_worker_schemas.made.append(schema)
    PostgresSessionStore(pg_dsn, schema=schema).close()
    return schema


def _emptying_script(conn: Any, schema: str) -> str:
    """The statements that empty ``schema``'s tables, referencing tables before the tables they
    reference (a store of one version always has the same tables)."""
    import graphlib

    tables = [
        str(row[0])
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s "
            "AND tablename NOT IN ('schema_version', 'feed')",
            (schema,),
        )
    ]
    order = graphlib.TopologicalSorter({table: set() for table in tables})
    for referencing, referenced in conn.execute(
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
        "WHERE contype = 'f' AND connamespace = %s::regnamespace",
        (f'"{schema}"',),
    ):
        order.add(_unqualified(referenced), _unqualified(referencing))
    conn.rollback()
    # A store a test left open: fail (and take a new schema), not hang.
    statements = ["SET LOCAL lock_timeout = '5s'"]
    statements += [f'DELETE FROM "{schema}"."{table}"' for table in order.static_order()]
    statements.append(f'UPDATE "{schema}".feed SET last_position = 0')
    return "; ".join(statements)


def _unqualified(name: str) -> str:
    return name.rsplit(".", 1)[-1].strip('"')


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


# HTTP ----------------------------------------------------------------------------------------


@pytest.fixture
def server(store: Any) -> Iterator[Any]:
    """The test module's ``store`` fixture served by ``create_app`` on a real uvicorn server on
    loopback (``http_support.serving``), with long-polls of 20 s."""
    from http_support import serving

    from sqlitestream.http import create_app

    with serving(create_app(store, long_poll_timeout_ms=20000)) as live:
        yield live


@pytest.fixture
def client(server: Any) -> Iterator[Any]:
    """An httpx client of ``server``."""
    from http_support import http_client

    with http_client(server.url, timeout=30) as opened:
        yield opened
