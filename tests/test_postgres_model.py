"""The hypothesis state machine of test_model_based.py against the PostgreSQL store: random
saves, appends (duplicates, expected_sequence), batches, deletes, filtered queries and reopens
give the same answers as the plain-Python model."""

from __future__ import annotations

import secrets

from conftest import drop_pg_schema
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test
from test_model_based import _SETTINGS, EXAMPLES, StoreMachine

from sqlitestream import FeedStore
from sqlitestream.postgres import PostgresSessionStore


def test_postgres_store_behaves_like_the_model(pg_dsn: str) -> None:
    class PostgresMachine(StoreMachine):
        kind = "file"  # a durable store: the machine's reopen rule applies

        def open(self) -> FeedStore:
            if not hasattr(self, "schema"):
                self.schema = f"sqlitestream_test_{secrets.token_hex(6)}"
            return PostgresSessionStore(pg_dsn, schema=self.schema)

        def teardown(self) -> None:
            super().teardown()
            drop_pg_schema(pg_dsn, self.schema)

    run_state_machine_as_test(
        PostgresMachine, settings=settings(_SETTINGS, max_examples=max(1, EXAMPLES * 3 // 5))
    )
