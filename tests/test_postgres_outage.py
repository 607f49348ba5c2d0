"""Outages under load, against the real PostgreSQL server and two real ``serve`` processes: HTTP
writers (one per node) and a Python API writer append, while HTTP followers of the feed and of a
session (long-poll and SSE) read; then every acknowledged event is in the store exactly once,
in order, and every follower received exactly the store's events, having resumed from its
offsets (``tools/outage.py`` holds the workload and the check).

- Every backend connection of the store killed with ``pg_terminate_backend``, several times:
  what a PostgreSQL restart looks like to its clients. The store's connections belong to a
  role made for the test, so the other tests running at the same time on the same server keep
  theirs. (``tools/pg_restart.py`` restarts the server itself; CI runs it after the suite.)
- A ``serve`` node killed with SIGKILL and started again on its port.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tools.outage import Workload, nodes, problems

EVENTS = 40  # per writer: three writers with two nodes
KILLS = 4


def _terminate_backends(dsn: str, role: str) -> int:
    """Kill every server process serving ``role``; how many there were."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s", (role,)
        ).fetchone()
    assert row is not None
    killed: int = row[0]
    return killed


@pytest.fixture
def role(pg_dsn: str) -> Iterator[str]:
    """A login role of its own that may create schemas in the test database, dropped after."""
    import psycopg

    name = f"sqlitestream_outage_{secrets.token_hex(4)}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        allowed = conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
        if allowed.fetchone() != (True,):
            pytest.skip("the SQLITESTREAM_PG_DSN role may not create roles (CREATEROLE)")
        database = conn.execute("SELECT current_database()").fetchone()
        assert database is not None
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'")
        conn.execute(f'GRANT CREATE ON DATABASE "{database[0]}" TO {name}')
    try:
        yield name
    finally:
        _terminate_backends(pg_dsn, name)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {name} CASCADE")
            conn.execute(f"DROP ROLE {name}")


def _as_role(dsn: str, role: str, schema: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    separator = "&" if parts.query else ""
    query = f"{parts.query}{separator}schema={schema}"
    return urlunsplit(parts._replace(netloc=f"{role}:{role}@{host}", query=query))


def test_killing_every_backend_of_the_store_loses_nothing_acknowledged(
    pg_dsn: str, pg_schema: str, role: str
) -> None:
    location = _as_role(pg_dsn, role, pg_schema)
    killed: list[int] = []
    with nodes(location, 2) as (a, b):
        workload = Workload(location, [a.url, b.url], events=EVENTS, deadline_s=120)
        workload.start()
        total = EVENTS * len(workload.writers)
        for kill in range(1, KILLS + 1):
            assert workload.wait_for_acknowledged(kill * total // (KILLS + 1)), workload.summary()
            killed.append(_terminate_backends(pg_dsn, role))
        workload.join()
    assert all(count > 0 for count in killed), killed
    assert problems(location, workload) == [], workload.summary()


def test_a_node_killed_and_restarted_loses_nothing_and_its_clients_resume(
    pg_dsn: str, pg_store_schema: str
) -> None:
    location = f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}schema={pg_store_schema}"
    with nodes(location, 2) as (a, b):
        workload = Workload(location, [a.url, b.url], events=EVENTS, deadline_s=120)
        workload.start()
        total = EVENTS * len(workload.writers)
        assert workload.wait_for_acknowledged(total // 3), workload.summary()
        a.kill()
        # The other node and the Python API go on while node A is down; A's clients retry.
        assert workload.wait_for_acknowledged(total // 2), workload.summary()
        a.start()
        workload.join()
    assert problems(location, workload) == [], workload.summary()
