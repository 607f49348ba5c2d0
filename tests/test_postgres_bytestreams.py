"""The byte streams of the PostgreSQL store: the contract kit; the upgrade of a version 1
schema holding sessions; races between two store objects (two nodes) for each rule that must
be atomic; wake-ups from another store object and from another process."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import drop_pg_schema
from support import child_env, run_in_another_process

from sqlitestream import Event
from sqlitestream.bytestreams import ByteStreams, Producer, StreamFork
from sqlitestream.errors import (
    ProducerEpochError,
    SqliteStreamError,
    StreamClosedError,
    StreamConflictError,
    StreamNotFoundError,
)
from sqlitestream.postgres import PostgresSessionStore
from sqlitestream.postgres.schema import SCHEMA_VERSION, UPGRADES
from sqlitestream.testing.bytestreams import ByteStreamsContract
from tools.oldstores import downgrade_postgres_store

TEXT = "text/plain"


@pytest.fixture(scope="class")
def class_schema(pg_dsn: str) -> Iterator[str]:
    """One schema for a whole test class (creating one costs more than most tests)."""
    schema = f"sqlitestream_test_{secrets.token_hex(6)}"
    PostgresSessionStore(pg_dsn, schema=schema).close()
    try:
        yield schema
    finally:
        drop_pg_schema(pg_dsn, schema)


class TestPostgresByteStreams(ByteStreamsContract):
    """Each test starts from empty stream tables in the class's schema."""

    @pytest.fixture(autouse=True)
    def _server(self, pg_dsn: str, class_schema: str) -> None:
        self.dsn, self.schema = pg_dsn, class_schema
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                f'TRUNCATE "{class_schema}".ds_streams, "{class_schema}".ds_chunks, "{class_schema}".ds_producers'
            )

    def make_streams(self, tmp_path: Path) -> ByteStreams:
        self.store = PostgresSessionStore(self.dsn, schema=self.schema, pool_size=4)
        return self.store.byte_streams()

    def close_streams(self) -> None:
        self.store.close()


@pytest.fixture
def nodes(pg_dsn: str, pg_store_schema: str) -> Iterator[tuple[ByteStreams, ByteStreams]]:
    """Two store objects on one schema, as two `serve` nodes would hold."""
    a = PostgresSessionStore(pg_dsn, schema=pg_store_schema, pool_size=8, poll_interval_ms=200)
    b = PostgresSessionStore(pg_dsn, schema=pg_store_schema, pool_size=8, poll_interval_ms=200)
    try:
        yield a.byte_streams(), b.byte_streams()
    finally:
        a.close()
        b.close()


def _race(count: int, *calls: Callable[[int], Any]) -> list[Any]:
    """Run each call ``count`` times, all threads released at once; results or errors."""
    barrier = threading.Barrier(count * len(calls))
    results: list[Any] = []
    lock = threading.Lock()

    def one(call: Callable[[int], Any], index: int) -> None:
        barrier.wait()
        try:
            result: Any = call(index)
        except SqliteStreamError as exc:
            result = exc
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one, args=(call, i)) for call in calls for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_version_1_schema_is_upgraded_and_keeps_its_sessions(pg_dsn: str, pg_schema: str) -> None:
    with PostgresSessionStore(pg_dsn, schema=pg_schema) as store:
        store.append_event(Event("message_sent", "s1"))
    downgrade_postgres_store(pg_dsn, pg_schema, 1)  # before the feed (2) and the byte streams (3)
    assert SCHEMA_VERSION == 3 and len(UPGRADES[2]) == 4
    with PostgresSessionStore(pg_dsn, schema=pg_schema) as store:
        assert store.upgraded_from == 1 and store.schema_version() == SCHEMA_VERSION
        assert store.get_latest_sequence("s1") == 1
        store.byte_streams().create_stream("a", content_type=TEXT, data=b"x")
        assert store.byte_streams().read_stream("a").body() == b"x"


def test_concurrent_appends_from_two_nodes_all_land_in_one_order(
    nodes: tuple[ByteStreams, ByteStreams],
) -> None:
    a, b = nodes
    a.create_stream("s", content_type=TEXT)
    results = _race(
        10,
        lambda i: a.append("s", f"a{i};".encode(), content_type=TEXT),
        lambda i: b.append("s", f"b{i};".encode(), content_type=TEXT),
    )
    assert not [r for r in results if isinstance(r, Exception)]
    parts = b.read_stream("s").body().decode().split(";")[:-1]
    assert sorted(parts) == sorted([f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)])
    offsets = sorted(r.state.next_offset for r in results)
    assert len(set(offsets)) == 20 and a.stream_state("s").next_offset == offsets[-1]


def test_a_producer_retried_on_two_nodes_at_once_is_stored_once(
    nodes: tuple[ByteStreams, ByteStreams],
) -> None:
    a, b = nodes
    a.create_stream("s", content_type=TEXT)
    stamp = Producer("p", 0, 0)
    results = _race(
        4,
        lambda i: a.append("s", b"x", content_type=TEXT, producer=stamp),
        lambda i: b.append("s", b"x", content_type=TEXT, producer=stamp),
    )
    assert sorted(r.duplicate for r in results) == [False] + [True] * 7
    assert a.read_stream("s").body() == b"x"


def test_two_epochs_racing_fence_the_older_one(nodes: tuple[ByteStreams, ByteStreams]) -> None:
    a, b = nodes
    a.create_stream("s", content_type=TEXT)
    results = _race(
        1,
        lambda i: a.append("s", b"old", content_type=TEXT, producer=Producer("p", 1, 0)),
        lambda i: b.append("s", b"new", content_type=TEXT, producer=Producer("p", 2, 0)),
    )
    body = a.read_stream("s").body()
    fenced = [r for r in results if isinstance(r, ProducerEpochError)]
    # Either the new epoch came first and fenced the old one, or both landed in epoch order.
    assert (body, len(fenced)) in ((b"new", 1), (b"oldnew", 0))


def test_racing_stream_seqs_keep_the_stream_seq_increasing(
    nodes: tuple[ByteStreams, ByteStreams],
) -> None:
    a, b = nodes
    a.create_stream("s", content_type=TEXT)
    results = _race(
        5,
        lambda i: a.append("s", b"a", content_type=TEXT, stream_seq="0005"),
        lambda i: b.append("s", b"b", content_type=TEXT, stream_seq="0005"),
    )
    assert len([r for r in results if isinstance(r, StreamConflictError)]) == 9
    assert len(a.read_stream("s").body()) == 1


def test_closing_on_one_node_while_the_other_appends_leaves_the_final_append_last(
    nodes: tuple[ByteStreams, ByteStreams],
) -> None:
    a, b = nodes
    a.create_stream("s", content_type=TEXT)
    results = _race(
        8,
        lambda i: b.append("s", b".", content_type=TEXT),
        lambda i: a.append("s", b"END", content_type=TEXT, close=True) if i == 0 else None,
    )
    refused = [r for r in results if isinstance(r, StreamClosedError)]
    stored = [r for r in results if r is not None and not isinstance(r, Exception)]
    read = b.read_stream("s")
    assert read.closed and read.body().endswith(b"END")
    assert read.body() == b"." * (len(stored) - 1) + b"END" and len(refused) + len(stored) == 9


def test_an_expired_stream_created_again_on_two_nodes_becomes_one_new_stream(
    nodes: tuple[ByteStreams, ByteStreams],
) -> None:
    from datetime import UTC, datetime, timedelta

    a, b = nodes
    a.create_stream("s", content_type=TEXT, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    results = _race(
        4,
        lambda i: a.create_stream("s", content_type="application/json"),
        lambda i: b.create_stream("s", content_type="application/json"),
    )
    assert sorted(r.created for r in results) == [False] * 7 + [True]
    assert len({r.state.generation for r in results}) == 1


def test_a_fork_racing_the_deletion_of_its_source_is_refused_or_keeps_the_source(
    nodes: tuple[ByteStreams, ByteStreams],
) -> None:
    a, b = nodes
    a.create_stream("src", content_type=TEXT, data=b"x")
    results = _race(
        1,
        lambda i: a.delete_stream("src"),
        lambda i: b.create_stream("fork", fork=StreamFork("src")),
    )
    forked = [r for r in results if r is not None and not isinstance(r, Exception)]
    if forked:  # the fork came first: the source is only marked deleted, the fork reads it
        assert b.read_stream("fork").body() == b"x"
        b.delete_stream("fork")
    else:
        assert [type(r) for r in results if isinstance(r, Exception)] in (
            [StreamNotFoundError],
            [StreamConflictError],
        )
    with pytest.raises(StreamNotFoundError):
        a.stream_state("src")


def test_deleting_the_last_two_forks_on_two_nodes_removes_their_deleted_source(
    nodes: tuple[ByteStreams, ByteStreams],
) -> None:
    a, b = nodes
    a.create_stream("src", content_type=TEXT, data=b"x")
    a.create_stream("f1", fork=StreamFork("src"))
    b.create_stream("f2", fork=StreamFork("src"))
    a.delete_stream("src")
    _race(1, lambda i: a.delete_stream("f1"), lambda i: b.delete_stream("f2"))
    with pytest.raises(StreamNotFoundError):
        b.stream_state("src")
    assert a.create_stream("src", content_type=TEXT).created


_RACER = """
import sys
from sqlitestream.bytestreams import Producer
from sqlitestream.postgres import PostgresSessionStore
with PostgresSessionStore(sys.argv[1], schema=sys.argv[2], pool_size=2) as store:
    streams = store.byte_streams()
    print("ready", flush=True)
    sys.stdin.readline()
    for seq in range(15):
        streams.append("s", b"p%d;" % seq, content_type="text/plain", producer=Producer("p", 0, seq))
        streams.append("s", b"%s;" % sys.argv[3].encode(), content_type="text/plain")
"""


def test_two_processes_racing_one_producer_and_plain_appends(pg_dsn: str, pg_store_schema: str) -> None:
    """Two processes send the same producer's appends (each a retry of the other's) and their
    own plain ones, released together: each producer seq is stored once, in order, and every
    plain append once."""
    with PostgresSessionStore(pg_dsn, schema=pg_store_schema) as store:
        store.byte_streams().create_stream("s", content_type=TEXT)
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", _RACER, pg_dsn, pg_store_schema, label],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=child_env(),
            )
            for label in ("x", "y")
        ]
        for racer in racers:
            assert racer.stdout is not None and racer.stdout.readline() == "ready\n"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.close()
        assert [racer.wait(timeout=60) for racer in racers] == [0, 0]
        parts = store.byte_streams().read_stream("s").body().decode().split(";")[:-1]
    assert [part for part in parts if part.startswith("p")] == [f"p{seq}" for seq in range(15)]
    assert sorted(part for part in parts if not part.startswith("p")) == ["x"] * 15 + ["y"] * 15


def test_a_watcher_on_one_node_wakes_on_an_append_through_the_other(
    nodes: tuple[ByteStreams, ByteStreams],
) -> None:
    a, b = nodes
    a.create_stream("s", content_type=TEXT)
    woken = threading.Event()
    with a.watch_stream("s", woken):
        b.append("s", b"x", content_type=TEXT)
        assert woken.wait(10)
    assert a.read_stream("s").body() == b"x"


def test_an_append_by_another_process_wakes_a_watcher(pg_dsn: str, pg_store_schema: str) -> None:
    # An hour between polls: only the notification can wake it within the test.
    with PostgresSessionStore(pg_dsn, schema=pg_store_schema, poll_interval_ms=3_600_000) as store:
        streams = store.byte_streams()
        streams.create_stream("a", content_type=TEXT)
        woken = threading.Event()
        with streams.watch_stream("a", woken):
            code = (
                "import sys\n"
                "from sqlitestream.postgres import PostgresSessionStore\n"
                "with PostgresSessionStore(sys.argv[1], schema=sys.argv[2]) as s:\n"
                "    s.byte_streams().append('a', b'x', content_type='text/plain')\n"
            )
            run_in_another_process(code, pg_dsn, pg_store_schema)
            assert woken.wait(10)
        assert streams.read_stream("a").body() == b"x"


def test_a_lost_notification_is_made_up_by_the_poll(pg_dsn: str, pg_store_schema: str) -> None:
    """A change written straight to the tables (no NOTIFY, as behind a pooler that drops
    them) still wakes a watcher, by the listener's poll of the stream's version."""
    with PostgresSessionStore(pg_dsn, schema=pg_store_schema, poll_interval_ms=50) as store:
        streams = store.byte_streams()
        streams.create_stream("a", content_type=TEXT)
        woken = threading.Event()
        with streams.watch_stream("a", woken):
            woken.wait(5)  # the poll's first sight of a stream wakes it once
            woken.clear()
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute(f'UPDATE "{pg_store_schema}".ds_streams SET version = version + 1')
            assert woken.wait(10)
