"""The store-wide feed under writers in several OS processes, on a SQLite file and on PostgreSQL.

Writer processes append (single events and batches) to sessions of their own and to shared
ones, all at once; follower processes read the feed by long-poll from position 0, never going
back. Each follower must end with exactly the committed events, in position order, each once: a
position that became visible before a lower one (a transaction that took 10 committing after
the one that took 11) would have been skipped for good, and shows up here as a missing event.
(Checked once by hand: with positions taken from a PostgreSQL sequence instead of the locked
feed row, each follower missed dozens of the 500 events.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from spawned import FEED_DEADLINE_S, follow_feed, open_feed_store, wait_for_one_feed_event, write_feed
from support import processes, run_followers_then_writers

from sqlitestream import Event, SQLiteSessionStore

WRITERS = 4
FOLLOWERS = 2
ROUNDS = 25  # each round: one single append to the writer's own session, one to a shared one, a batch of 3
PER_WRITER = ROUNDS * 5
EXPECTED = WRITERS * PER_WRITER
DEADLINE_S = FEED_DEADLINE_S


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        SQLiteSessionStore(tmp_path / "feed.db").close()
        return {"path": str(tmp_path / "feed.db")}
    dsn = request.getfixturevalue("pg_dsn")
    schema = request.getfixturevalue("pg_schema")
    from sqlitestream.postgres import PostgresSessionStore

    PostgresSessionStore(dsn, schema=schema).close()  # the schema, once, up front
    return {"dsn": dsn, "schema": schema}


def test_feed_followers_end_with_exactly_the_committed_events(where: dict[str, str], tmp_path: Path) -> None:
    context = processes()
    start = context.Event()
    readies = [context.Event() for _ in range(FOLLOWERS)]
    followers = [
        context.Process(target=follow_feed, args=(where, EXPECTED, readies[n], str(tmp_path / f"f{n}.json")))
        for n in range(FOLLOWERS)
    ]
    writers = [
        context.Process(target=write_feed, args=(where, n, ROUNDS, start, str(tmp_path / f"w{n}.json")))
        for n in range(WRITERS)
    ]
    run_followers_then_writers(followers, writers, readies, start, DEADLINE_S)

    with open_feed_store(where) as store:
        committed = [(event.position, event.id) for event in store.read_feed()]
        assert store.get_last_position() == committed[-1][0]
    assert len(committed) == EXPECTED
    assert [position for position, _ in committed] == sorted({position for position, _ in committed})
    acknowledged = {}
    for n in range(WRITERS):
        acknowledged.update(json.loads((tmp_path / f"w{n}.json").read_text(encoding="utf-8")))
    assert acknowledged == {event_id: position for position, event_id in committed}
    for n in range(FOLLOWERS):
        seen = [tuple(item) for item in json.loads((tmp_path / f"f{n}.json").read_text(encoding="utf-8"))]
        assert seen == committed, f"follower {n} skipped or repeated events"


def test_a_feed_long_poll_wakes_on_another_process_append(where: dict[str, str], tmp_path: Path) -> None:
    with open_feed_store(where) as store:
        after = store.append_event(Event("message_sent", "before")).position
        context = processes()
        ready = context.Event()
        waiter = context.Process(
            target=wait_for_one_feed_event, args=(where, after, ready, str(tmp_path / "w.json"))
        )
        waiter.start()
        try:
            assert ready.wait(DEADLINE_S)
            # Not needed for the assertion (an append before the wait is simply found by its
            # first query); it makes the wake-up, what this tests, the path almost always taken.
            time.sleep(0.3)
            store.append_event(Event("run_started", "elsewhere", id="wake"))
            waiter.join(20)
            assert waiter.exitcode == 0, "the waiter in the other process was not woken"
        finally:
            if waiter.is_alive():
                waiter.kill()
                waiter.join()
    assert json.loads((tmp_path / "w.json").read_text(encoding="utf-8")) == ["wake"]
