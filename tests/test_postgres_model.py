"""The hypothesis state machine of test_model_based.py against the PostgreSQL store: random
saves, appends (duplicates, expected_sequence), batches, deletes, filtered queries and reopens
give the same answers as the plain-Python model."""

from __future__ import annotations

from conftest import _WorkerSchemas
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test
from test_model_based import _SETTINGS, EXAMPLES, StoreMachine

from sqlitestream import FeedStore
from sqlitestream.postgres import PostgresSessionStore


def test_postgres_store_behaves_like_the_model(
    pg_dsn: str, pg_store_schema: str, _pg_worker_schemas: _WorkerSchemas
) -> None:
    class PostgresMachine(StoreMachine):
        kind = "file"  # a durable store: the machine's reopen rule applies

        def __init__(self) -> None:
            # Every example starts on an empty store: the schema emptied (one round trip)
            # rather than a new one created and dropped (~0.4 s of catalog changes).
            _pg_worker_schemas.empty(pg_store_schema)
            super().__init__()

        def open(self) -> FeedStore:
            return PostgresSessionStore(pg_dsn, schema=pg_store_schema)

    run_state_machine_as_test(
        PostgresMachine, settings=settings(_SETTINGS, max_examples=max(1, EXAMPLES * 3 // 5))
    )
