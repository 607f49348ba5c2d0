"""The hostile-value tests of test_hostile_values.py, run against the PostgreSQL store: quotes,
wildcards, NUL in payloads, SQL fragments, long and non-ASCII ids, stored and filtered exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_hostile_values import (  # the same test functions, collected here with this module's fixture
    test_hostile_event_types_are_refused_not_matched,
    test_hostile_ids_are_stored_and_filtered_exactly,
    test_hostile_payload_text_round_trips_exactly,
    test_ids_refuse_nul_by_design,
    test_wildcards_and_case_never_widen_a_filter,
)

from sqlitestream import SessionStore
from sqlitestream.postgres import PostgresSessionStore

__all__ = [
    "test_hostile_event_types_are_refused_not_matched",
    "test_hostile_ids_are_stored_and_filtered_exactly",
    "test_hostile_payload_text_round_trips_exactly",
    "test_ids_refuse_nul_by_design",
    "test_wildcards_and_case_never_widen_a_filter",
]


@pytest.fixture(params=["postgres", "postgres-reopened"])
def stores(request: pytest.FixtureRequest, pg_dsn: str, pg_schema: str) -> Iterator[Any]:
    """Yields (store, reopen) like test_hostile_values.stores, on a fresh PostgreSQL schema."""
    opened = [PostgresSessionStore(pg_dsn, schema=pg_schema)]

    def reopen() -> SessionStore:
        if request.param == "postgres-reopened":
            opened[-1].close()
            opened.append(PostgresSessionStore(pg_dsn, schema=pg_schema))
        return opened[-1]

    yield opened[0], reopen
    opened[-1].close()
