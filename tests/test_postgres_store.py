"""PostgreSQL-specific behaviour of PostgresSessionStore beyond the shared contract: opening and
schema versions, cross-store wake-ups (NOTIFY and the fallback poll), races between
connections, lost connections, the pool, and errors."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from sqlitestream import (
    Event,
    EventIdConflictError,
    SchemaVersionError,
    Session,
    SessionStore,
    StorageError,
    ValidationError,
)
from sqlitestream.postgres import PostgresSessionStore
from sqlitestream.postgres.schema import SCHEMA_VERSION, TABLES
from tools.oldstores import downgrade_postgres_store

pytestmark = pytest.mark.usefixtures("pg_dsn")

T0 = datetime(2026, 1, 1, tzinfo=UTC)

DEADLINE = 30.0  # seconds a background step may take before the test fails


def _event(session_id: str = "s1", **fields: Any) -> Event:
    return Event(type="message_sent", session_id=session_id, **fields)


def _sql(dsn: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


class _Background:
    """A call on another thread; ``result()`` waits for it with a deadline."""

    def __init__(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = target(*args, **kwargs)
            except BaseException as exc:
                self._error = exc
            finally:
                self._done.set()

        threading.Thread(target=run, daemon=True).start()

    def done(self) -> bool:
        return self._done.is_set()

    def done_within(self, seconds: float) -> bool:
        return self._done.wait(seconds)

    def result(self, timeout: float = DEADLINE) -> Any:
        assert self._done.wait(timeout), "background call did not finish in time"
        if self._error is not None:
            raise self._error
        return self._value


def _wait_for_waiter(dsn: str, application_name: str) -> None:
    """Block until the store named ``application_name`` has its LISTEN connection up."""
    deadline = threading.Event()
    for _ in range(int(DEADLINE / 0.01)):
        rows = _sql(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query LIKE 'LISTEN%%'",
            (application_name,),
        )
        if rows[0][0]:
            return
        deadline.wait(0.01)
    raise AssertionError("the store never started listening")


@contextlib.contextmanager
def _stores_on(dsn: str, schema: str) -> Iterator[Callable[..., PostgresSessionStore]]:
    """Opens stores on ``schema`` (each its own pool: separate 'nodes'); closes them all."""
    opened: list[PostgresSessionStore] = []

    def open_(**options: Any) -> PostgresSessionStore:
        store = PostgresSessionStore(dsn, schema=schema, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def open_store(pg_dsn: str, pg_store_schema: str) -> Iterator[Callable[..., PostgresSessionStore]]:
    """Stores on an empty store's schema (shared with this process's other tests)."""
    with _stores_on(pg_dsn, pg_store_schema) as open_:
        yield open_


@pytest.fixture
def open_new_store(pg_dsn: str, pg_schema: str) -> Iterator[Callable[..., PostgresSessionStore]]:
    """Stores on a schema of the test's own, which the first of them creates."""
    with _stores_on(pg_dsn, pg_schema) as open_:
        yield open_


# Opening and schema versions ---------------------------------------------------------------


@pytest.mark.parametrize("schema", ["", "Upper", "1abc", "pg_x", 'a"b', "a b", "x" * 49, None, 5])
def test_bad_schema_name_raises_naming_it(pg_dsn: str, schema: Any) -> None:
    with pytest.raises(ValidationError, match="schema"):
        PostgresSessionStore(pg_dsn, schema=schema)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("pool_size", 0),
        ("pool_size", True),
        ("pool_timeout_ms", -1),
        ("connect_timeout_ms", 999),
        ("poll_interval_ms", 1),
        ("max_event_bytes", 0),
        ("application_name", 3),
    ],
)
def test_bad_option_raises_naming_it(pg_dsn: str, option: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=option):
        PostgresSessionStore(pg_dsn, **{option: value})


@pytest.mark.parametrize("dsn", ["", "   ", None, b"postgresql://x"])
def test_bad_dsn_raises_naming_it(dsn: Any) -> None:
    with pytest.raises(ValidationError, match="dsn"):
        PostgresSessionStore(dsn)


def test_unreachable_server_raises_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot connect to PostgreSQL") as caught:
        PostgresSessionStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout_ms=2000)
    assert not isinstance(caught.value, psycopg.Error)


def test_first_open_creates_the_schema_and_later_opens_do_not(
    pg_dsn: str, pg_schema: str, open_new_store: Callable[..., PostgresSessionStore]
) -> None:
    assert open_new_store().upgraded_from == 0
    assert open_new_store().upgraded_from is None
    tables = _sql(
        pg_dsn,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
        (pg_schema,),
    )
    assert [row[0] for row in tables] == sorted(TABLES)
    assert _sql(pg_dsn, f'SELECT version FROM "{pg_schema}".schema_version') == [(SCHEMA_VERSION,)]


def _columns(dsn: str, schema: str) -> list[Any]:
    return _sql(
        dsn,
        "SELECT table_name, column_name, data_type, is_nullable, collation_name "
        "FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 2",
        (schema,),
    )


def test_version_1_store_is_upgraded_with_positions_in_commit_order(
    pg_dsn: str, pg_schema: str, open_new_store: Callable[..., PostgresSessionStore]
) -> None:
    with open_new_store() as store:
        for n in range(30):
            store.append_event(_event(f"s{n % 4}", id=f"e{n}", timestamp=T0 + timedelta(seconds=n)))
        store.append_event(_event("s1", id="late", timestamp=T0))  # dated before its predecessor
        store.save_cursor("dropped", 3)
    downgrade_postgres_store(pg_dsn, pg_schema, 1)
    with open_new_store() as store:
        assert store.upgraded_from == 1
        feed = store.read_feed()
        assert [event.position for event in feed] == list(range(1, 32))
        assert [event.id for event in feed] == [f"e{n}" for n in range(30)] + ["late"]
        assert store.get_last_position() == 31 and store.list_cursors() == []
        assert store.append_event(_event("s9")).position == 32
        assert store.check_integrity().ok


def test_an_upgraded_schema_has_the_columns_of_a_new_one(
    pg_dsn: str, pg_schema: str, open_new_store: Callable[..., PostgresSessionStore]
) -> None:
    open_new_store().close()
    new = _columns(pg_dsn, pg_schema)
    downgrade_postgres_store(pg_dsn, pg_schema, 1)
    open_new_store().close()
    assert _columns(pg_dsn, pg_schema) == new


def test_newer_schema_version_is_refused_unchanged(
    pg_dsn: str, pg_schema: str, open_new_store: Callable[..., PostgresSessionStore]
) -> None:
    open_new_store().append_event(_event(id="kept"))
    _sql(pg_dsn, f'UPDATE "{pg_schema}".schema_version SET version = 99')
    with pytest.raises(SchemaVersionError, match="99"):
        PostgresSessionStore(pg_dsn, schema=pg_schema)
    assert _sql(pg_dsn, f'SELECT version FROM "{pg_schema}".schema_version') == [(99,)]
    assert _sql(pg_dsn, f'SELECT id FROM "{pg_schema}".events') == [("kept",)]


def test_schema_with_foreign_tables_is_refused_unchanged(pg_dsn: str, pg_schema: str) -> None:
    _sql(pg_dsn, f'CREATE SCHEMA "{pg_schema}"')
    _sql(pg_dsn, f'CREATE TABLE "{pg_schema}".events (x int)')
    with pytest.raises(StorageError, match="events"):
        PostgresSessionStore(pg_dsn, schema=pg_schema)
    tables = _sql(
        pg_dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (pg_schema,)
    )
    assert tables == [("events",)]


def test_concurrent_first_opens_create_the_schema_once(pg_dsn: str, pg_schema: str) -> None:
    barrier = threading.Barrier(6)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def open_one() -> None:
        barrier.wait()
        try:
            with PostgresSessionStore(pg_dsn, schema=pg_schema) as store:
                result: Any = store.upgraded_from
        except Exception as exc:
            result = exc
        with lock:
            outcomes.append(result)

    workers = [threading.Thread(target=open_one) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(outcomes, key=repr) == [0] + [None] * 5
    assert _sql(pg_dsn, f'SELECT count(*) FROM "{pg_schema}".schema_version') == [(1,)]


def test_repr_and_dsn_hide_the_password(pg_dsn: str, pg_schema: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    params["password"] = "s3cret-pw"
    # trust auth ignores the password, so the store opens; it must not show it anywhere.
    with PostgresSessionStore(psycopg.conninfo.make_conninfo("", **params), schema=pg_schema) as store:
        assert "s3cret-pw" not in repr(store) and "s3cret-pw" not in store.dsn
        assert pg_schema in repr(store)


def test_psycopg_missing_gives_a_clear_error_naming_the_extra() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import sqlitestream\n"
        "from sqlitestream.postgres import PostgresSessionStore, MissingDependencyError\n"
        "assert sqlitestream.PostgresSessionStore is PostgresSessionStore\n"
        "try:\n"
        "    PostgresSessionStore('postgresql://localhost/test')\n"
        "except sqlitestream.SqliteStreamError as exc:\n"
        "    assert isinstance(exc, MissingDependencyError)\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "sqlitestream[postgres]"' in result.stdout


# Ids and order -----------------------------------------------------------------------------


def test_sessions_with_equal_times_list_in_byte_order_like_sqlite(
    open_store: Callable[..., PostgresSessionStore],
) -> None:
    store = open_store()
    ids = ["b", "B", "é", "a", "Z", "a b", "ä", "_", "10", "9"]
    when = Session(agent_id="x").created_at
    for session_id in ids:
        store.save_session(Session(agent_id="x", id=session_id, created_at=when))
    assert [s.id for s in store.list_sessions()] == sorted(ids, key=lambda text: text.encode())


# Races between connections and store objects ------------------------------------------------


def test_two_stores_append_gap_free_to_the_same_sessions(
    open_store: Callable[..., PostgresSessionStore],
) -> None:
    stores = [open_store(pool_size=4), open_store(pool_size=4)]
    threads_per_store, rounds = 4, 15
    barrier = threading.Barrier(len(stores) * threads_per_store)
    errors: list[BaseException] = []

    def work(store: SessionStore, worker: int) -> None:
        barrier.wait()
        try:
            for index in range(rounds):
                if index % 3 == 0:
                    store.append_events(
                        [_event("a", id=f"{worker}-{index}-a"), _event("b", id=f"{worker}-{index}-b")]
                    )
                else:
                    store.append_event(_event("a" if index % 2 else "b", id=f"{worker}-{index}"))
        except BaseException as exc:
            errors.append(exc)

    workers = [
        threading.Thread(target=work, args=(store, slot * 10 + n))
        for slot, store in enumerate(stores)
        for n in range(threads_per_store)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    for session_id in ("a", "b"):
        seqs = [e.sequence_number for e in stores[0].get_events(session_id)]
        assert seqs == list(range(1, len(seqs) + 1))
        assert stores[1].get_latest_sequence(session_id) == len(seqs)
    total = len(stores[0].get_events("a")) + len(stores[0].get_events("b"))
    assert total == len(workers) * (rounds + rounds // 3)
    assert stores[0].check_integrity().ok


def test_same_new_id_raced_into_two_sessions_is_stored_once(
    open_store: Callable[..., PostgresSessionStore],
) -> None:
    stores = [open_store(), open_store()]
    for round_ in range(20):
        barrier = threading.Barrier(2)

        def attempt(
            store: SessionStore, session_id: str, rnd: int = round_, gate: threading.Barrier = barrier
        ) -> Any:
            gate.wait()
            try:
                return store.append_event_with_sequence(_event(session_id, id=f"x{rnd}"))
            except EventIdConflictError as exc:
                return exc

        calls = [_Background(attempt, stores[0], "s1"), _Background(attempt, stores[1], "s2")]
        outcomes = [call.result() for call in calls]
        winners = [o for o in outcomes if isinstance(o, Event)]
        assert len(winners) == 1
        assert sum(isinstance(o, EventIdConflictError) for o in outcomes) == 1
    for session_id in ("s1", "s2"):
        seqs = [e.sequence_number for e in stores[0].get_events(session_id)]
        assert seqs == list(range(1, len(seqs) + 1))
    assert stores[0].get_latest_sequence("s1") + stores[0].get_latest_sequence("s2") == 20


def test_same_new_id_raced_into_one_session_returns_one_event(
    open_store: Callable[..., PostgresSessionStore],
) -> None:
    stores = [open_store(), open_store()]
    for round_ in range(20):
        barrier = threading.Barrier(2)

        def attempt(store: SessionStore, rnd: int = round_, gate: threading.Barrier = barrier) -> Event:
            gate.wait()
            return store.append_event_with_sequence(_event(id=f"same{rnd}", data={"by": id(store)}))

        calls = [_Background(attempt, store) for store in stores]
        first, second = (call.result() for call in calls)
        assert first == second
    assert [e.sequence_number for e in stores[0].get_events("s1")] == list(range(1, 21))


def test_delete_racing_appends_leaves_a_consistent_log(
    open_store: Callable[..., PostgresSessionStore],
) -> None:
    writer, deleter = open_store(), open_store()
    stop = threading.Event()
    errors: list[BaseException] = []

    def append() -> None:
        try:
            while not stop.is_set():
                writer.append_events([_event(), _event()])
        except BaseException as exc:
            errors.append(exc)

    appender = threading.Thread(target=append)
    appender.start()
    try:
        for _ in range(15):
            deleter.delete_session("s1")
    finally:
        stop.set()
        appender.join()
    assert errors == []
    report = deleter.check_integrity()
    assert report.ok, report.findings
    seqs = [e.sequence_number for e in deleter.get_events("s1")]
    assert seqs == list(range(1, len(seqs) + 1))


# Long-poll across store objects ------------------------------------------------------------


def test_notify_wakes_a_follower_in_another_store(
    pg_dsn: str, open_store: Callable[..., PostgresSessionStore]
) -> None:
    # The follower's fallback poll is slower than the test deadline: only NOTIFY can wake it.
    follower = open_store(poll_interval_ms=600_000, application_name="st-follower-1")
    writer = open_store()
    waiter = _Background(follower.get_events, "s1", wait_timeout_ms=int(DEADLINE * 1000))
    _wait_for_waiter(pg_dsn, "st-follower-1")
    writer.append_events([_event("other"), _event("s1", id="wake")])
    assert [e.id for e in waiter.result()] == ["wake"]


def test_notify_wakes_followers_of_very_long_session_ids(
    pg_dsn: str, open_store: Callable[..., PostgresSessionStore]
) -> None:
    long_id = "ü" * 5000  # 10,000 UTF-8 bytes: more than a notification payload may carry
    follower = open_store(poll_interval_ms=600_000, application_name="st-follower-2")
    writer = open_store()
    waiter = _Background(follower.get_events, long_id, wait_timeout_ms=int(DEADLINE * 1000))
    _wait_for_waiter(pg_dsn, "st-follower-2")
    writer.append_event(_event(long_id, id="long"))
    assert [e.id for e in waiter.result()] == ["long"]


def test_delete_in_another_store_releases_its_waiters(
    pg_dsn: str, open_store: Callable[..., PostgresSessionStore]
) -> None:
    follower = open_store(poll_interval_ms=600_000, application_name="st-follower-3")
    writer = open_store()
    writer.append_event(_event())
    waiter = _Background(follower.get_events, "s1", after=1, wait_timeout_ms=int(DEADLINE * 1000))
    _wait_for_waiter(pg_dsn, "st-follower-3")
    writer.delete_session("s1")
    # The delete releases the waiter if it is waiting; if its read came after the delete
    # (listening starts before the read), it waits for the session's next events: write the
    # session anew and delete it again until the waiter returns.
    deadline = time.monotonic() + DEADLINE
    while not waiter.done_within(0.05) and time.monotonic() < deadline:
        writer.append_event(_event())
        writer.delete_session("s1")
    assert waiter.result() == []


def test_fallback_poll_wakes_on_writes_that_sent_no_notification(
    pg_dsn: str, pg_store_schema: str, open_store: Callable[..., PostgresSessionStore]
) -> None:
    follower = open_store(poll_interval_ms=50)
    follower.append_event(_event())
    waiter = _Background(follower.get_events, "s1", after=1, wait_timeout_ms=int(DEADLINE * 1000))
    # Another program writes the tables directly, without NOTIFY (a lost notification).
    with psycopg.connect(pg_dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(f'UPDATE "{pg_store_schema}".streams SET latest_seq = 2 WHERE session_id = %s', ("s1",))
        conn.execute(
            f'INSERT INTO "{pg_store_schema}".events (session_id, seq, id, type, ts, data, metadata, position) '
            "VALUES ('s1', 2, 'silent', 'message_sent', now(), '{}', '{}', 1000)"
        )
    assert [e.id for e in waiter.result()] == ["silent"]


def test_a_waiting_follower_holds_no_pooled_connection(
    open_store: Callable[..., PostgresSessionStore],
) -> None:
    store = open_store(pool_size=1, pool_timeout_ms=5_000)
    waiters = [_Background(store.get_events, f"s{n}", wait_timeout_ms=int(DEADLINE * 1000)) for n in range(3)]
    for n in range(3):
        store.append_event(_event(f"s{n}", id=f"e{n}"))
    assert [[e.id for e in waiter.result()] for waiter in waiters] == [["e0"], ["e1"], ["e2"]]


def test_closing_after_ctrl_c_interrupted_the_listeners_start(
    open_store: Callable[..., PostgresSessionStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C landing while a long-poll starts the LISTEN thread must not make ``close()``
    fail (joining a thread whose start was interrupted raises RuntimeError)."""
    real_start = threading.Thread.start

    def interrupted_start(thread: threading.Thread) -> None:
        if thread.name.startswith("sqlitestream-listen-"):
            raise KeyboardInterrupt  # as if the signal came just before the thread launched
        real_start(thread)

    store = open_store()
    store.append_event_with_sequence(_event())
    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    with pytest.raises(KeyboardInterrupt):
        store.get_events("s1", after=1, wait_timeout_ms=30_000)
    monkeypatch.undo()
    store.close()
    assert [event.sequence_number for event in open_store().get_events("s1")] == [1]


def test_connections_stay_within_pool_size_plus_listener(
    pg_dsn: str, open_store: Callable[..., PostgresSessionStore]
) -> None:
    store = open_store(pool_size=2, application_name="st-pool-size")
    barrier = threading.Barrier(6)

    def work(n: int) -> None:
        barrier.wait()
        for index in range(10):
            store.append_event(_event(f"p{n}", id=f"p{n}-{index}"))
            store.get_events(f"p{n}", after=index)

    waiter = _Background(store.get_events, "idle", wait_timeout_ms=int(DEADLINE * 1000))
    workers = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    (count,) = _sql(pg_dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'st-pool-size'")[
        0
    ]
    assert 1 <= count <= 3
    store.append_event(_event("idle"))
    assert len(waiter.result()) == 1


def _wait_until_waiting_on_a_lock(dsn: str, application_name: str) -> None:
    for _ in range(int(DEADLINE / 0.01)):
        rows = _sql(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            (application_name,),
        )
        if rows[0][0]:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the store's transaction never waited for the lock")


def test_a_batch_that_loses_a_deadlock_is_retried_and_stored_once(
    pg_dsn: str, pg_store_schema: str, open_store: Callable[..., PostgresSessionStore]
) -> None:
    """Another client holds s2's counter and then asks for s1's while our batch holds s1's and
    waits for s2's: PostgreSQL breaks the deadlock by aborting the batch (the other client's
    deadlock check waits 20 s, the batch's the server's default 1 s, so the batch's runs first
    even on a loaded machine). The store retries the whole transaction, which then stores the
    batch exactly once, with the next sequence numbers."""
    store = open_store(application_name="deadlock-victim")
    store.append_events([_event("s1", id="a1"), _event("s2", id="a2")])
    lock_counter = f'UPDATE "{pg_store_schema}".streams SET latest_seq = latest_seq WHERE session_id = %s'
    with psycopg.connect(pg_dsn) as other:
        other.execute("SET deadlock_timeout = '20s'")
        other.execute(lock_counter, ("s2",))
        batch = _Background(store.append_events, [_event("s1", id="b1"), _event("s2", id="b2")])
        _wait_until_waiting_on_a_lock(pg_dsn, "deadlock-victim")
        # Closes the cycle. Returning at all means PostgreSQL aborted the batch's transaction
        # (the other way round, this raises DeadlockDetected and the test fails).
        other.execute(lock_counter, ("s1",))
        other.commit()
    assert [(e.id, e.sequence_number) for e in batch.result()] == [("b1", 2), ("b2", 2)]
    assert [e.id for e in store.get_events("s1")] == ["a1", "b1"]
    assert [e.id for e in store.get_events("s2")] == ["a2", "b2"]
    assert (store.get_latest_sequence("s1"), store.get_latest_sequence("s2")) == (2, 2)


# Lost connections --------------------------------------------------------------------------


def _kill_backends(dsn: str, application_name: str) -> int:
    rows = _sql(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    )
    return len(rows)


def test_lost_connections_are_reestablished(
    pg_dsn: str, open_store: Callable[..., PostgresSessionStore]
) -> None:
    store = open_store(application_name="st-killed")
    barrier = threading.Barrier(3)

    def warm() -> None:  # several pooled connections, all to be killed
        barrier.wait()
        store.append_event(_event())

    workers = [threading.Thread(target=warm) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert _kill_backends(pg_dsn, "st-killed") >= 1
    assert store.append_event_with_sequence(_event()).sequence_number == 4
    assert [e.sequence_number for e in store.get_events("s1")] == [1, 2, 3, 4]
    _kill_backends(pg_dsn, "st-killed")
    store.save_session(Session(agent_id="a", id="s1"))
    assert store.get_session("s1").agent_id == "a"


def test_a_batch_on_a_connection_the_server_dropped_is_retried_without_a_word_from_psycopg(
    pg_dsn: str, open_store: Callable[..., PostgresSessionStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(application_name="st-pipeline")
    store.append_events([_event(id="a1"), _event(id="a2")])  # a batch: the pipelined path
    ended = _sql(
        pg_dsn,
        "SELECT bool_and(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity WHERE application_name = %s",
        ("st-pipeline",),
    )
    assert ended == [(True,)]  # the pooled connection's backend is gone
    with caplog.at_level(logging.WARNING):
        stored = store.append_events([_event(id="b1"), _event(id="b2")])
    assert [(e.id, e.sequence_number) for e in stored] == [("b1", 3), ("b2", 4)]
    assert [e.id for e in store.get_events("s1")] == ["a1", "a2", "b1", "b2"]
    assert [record.getMessage() for record in caplog.records if record.name.startswith("psycopg")] == []


def test_follower_survives_losing_its_listen_connection(
    pg_dsn: str, open_store: Callable[..., PostgresSessionStore]
) -> None:
    follower = open_store(poll_interval_ms=600_000, application_name="st-relisten")
    writer = open_store()
    first = _Background(follower.get_events, "s1", wait_timeout_ms=int(DEADLINE * 1000))
    _wait_for_waiter(pg_dsn, "st-relisten")
    _kill_backends(pg_dsn, "st-relisten")
    _wait_for_waiter(pg_dsn, "st-relisten")  # listening again on a new connection
    writer.append_event(_event(id="after-reconnect"))
    assert [e.id for e in first.result()] == ["after-reconnect"]
    second = _Background(follower.get_events, "s1", after=1, wait_timeout_ms=int(DEADLINE * 1000))
    writer.append_event(_event(id="next"))
    assert [e.id for e in second.result()] == ["next"]


def test_trims_on_one_node_racing_appends_on_another_keep_the_log_gap_free(
    open_store: Callable[..., PostgresSessionStore],
) -> None:
    appending, trimming = open_store(pool_size=4), open_store(pool_size=2)
    done = threading.Event()
    sequences: list[int] = []

    def append() -> None:
        try:
            for _ in range(80):
                sequences.append(appending.append_event(_event("s1")).sequence_number or 0)
        finally:
            done.set()

    writer = threading.Thread(target=append)
    writer.start()
    trims = 0
    while not done.is_set() or trims == 0:
        trims += 1
        trimming.trim_session("s1", keep_last=10)
    writer.join()
    assert sequences == list(range(1, 81))
    retained = [event.sequence_number or 0 for event in trimming.get_events("s1")]
    assert retained == list(range(retained[0], 81)) and len(retained) >= 10
    info = trimming.get_stream_info("s1")
    assert (info.first_sequence, info.latest_sequence) == (retained[0], 80)
    assert trimming.check_integrity().ok


def test_a_long_trim_goes_in_several_transactions(
    open_store: Callable[..., PostgresSessionStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlitestream.postgres import retention as postgres_retention

    monkeypatch.setattr(postgres_retention, "TRIM_CHUNK", 3)  # the chunk boundaries, without 100k events
    store = open_store()
    store.append_events([_event("s1") for _ in range(20)])
    assert store.trim_session("s1", keep_last=2, dry_run=True) == 18
    assert store.trim_session("s1", keep_last=2) == 18
    assert [event.sequence_number for event in store.get_events("s1")] == [19, 20]
    assert store.check_integrity().ok
