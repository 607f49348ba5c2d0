"""``/v1/feed``, the store-wide feed over HTTP: uvicorn on a loopback port, httpx as the client,
on a SQLite file store and on PostgreSQL (the same tests), with appends from other OS processes;
and on PostgreSQL across two ``serve`` processes (a follower on node A, the append through B)."""

from __future__ import annotations

import concurrent.futures
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_support import http_client, serve_process, serving
from support import run_in_another_process

from sqlitestream import Event, InMemorySessionStore, SQLiteSessionStore
from sqlitestream.feed import FeedStore
from sqlitestream.http import create_app
from sqlitestream.models import StoredEvent

STORE_KINDS = ["sqlite", "postgres"]


@pytest.fixture(params=STORE_KINDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the store is, as ``--db`` and ``open_store`` take it."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    pg_dsn = request.getfixturevalue("pg_dsn")
    schema = request.getfixturevalue("pg_store_schema")
    return f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}schema={schema}"


@pytest.fixture
def store(location: str) -> Iterator[FeedStore]:
    from sqlitestream.locations import open_store

    opened = open_store(location)
    assert isinstance(opened, FeedStore)
    try:
        yield opened
    finally:
        opened.close()


def append_in_other_process(location: str, *events: tuple[str, str]) -> None:
    """Append ``(session_id, type)`` events from a new Python process opening ``location``."""
    listed = ", ".join(f"Event({kind!r}, {session!r})" for session, kind in events)
    run_in_another_process(
        "from sqlitestream import Event\nfrom sqlitestream.locations import open_store\n"
        f"with open_store({location!r}) as store:\n    store.append_events([{listed}])\n"
    )


def positions(response: httpx.Response) -> list[tuple[str, int]]:
    return [(event["session_id"], event["position"]) for event in response.json()]


def _stored(store: FeedStore, session_id: str, kind: str = "message_sent") -> StoredEvent:
    return store.append_event(Event(kind, session_id))


def test_the_feed_is_every_sessions_events_in_position_order(store: FeedStore, client: httpx.Client) -> None:
    stored = [_stored(store, "a"), _stored(store, "b"), _stored(store, "a")]
    page = client.get("/v1/feed", params={"offset": "-1"})
    assert page.status_code == 200
    assert page.headers["content-type"] == "application/json"
    assert positions(page) == [(event.session_id, event.position) for event in stored]
    assert page.json()[0] == stored[0].to_dict()
    assert page.headers["stream-up-to-date"] == "true"
    assert page.headers["stream-next-offset"] == f"{stored[-1].position:016d}_{0:016d}"


def test_a_reader_resumes_from_the_next_offset_or_the_last_position(
    store: FeedStore, client: httpx.Client
) -> None:
    stored = [_stored(store, f"s{n}") for n in range(5)]
    first = client.get("/v1/feed", params={"offset": "-1", "limit": "2"})
    assert positions(first) == [("s0", stored[0].position), ("s1", stored[1].position)]
    assert "stream-up-to-date" not in first.headers
    rest = client.get("/v1/feed", params={"offset": first.headers["stream-next-offset"]})
    assert [session for session, _ in positions(rest)] == ["s2", "s3", "s4"]
    by_position = client.get("/v1/feed", params={"after": str(stored[1].position)})
    assert by_position.json() == rest.json()


def test_types_keep_only_those_and_move_the_offset_past_the_others(
    store: FeedStore, client: httpx.Client
) -> None:
    _stored(store, "a", "message_sent")
    done = _stored(store, "a", "session_completed")
    last = _stored(store, "b", "message_sent")
    page = client.get("/v1/feed", params={"offset": "-1", "types": "session_completed,run_failed"})
    assert positions(page) == [("a", done.position)]
    # The page reached the end: nothing of those types up to the last position was left out.
    assert page.headers["stream-next-offset"] == f"{last.position:016d}_{0:016d}"


def test_a_feed_long_poll_wakes_on_another_process_append(
    store: FeedStore, client: httpx.Client, location: str
) -> None:
    _stored(store, "a")
    tail = client.head("/v1/feed").headers["stream-next-offset"]
    assert client.get("/v1/feed", params={"offset": "now"}).headers["stream-next-offset"] == tail
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(client.get, "/v1/feed", params={"offset": tail, "live": "long-poll"})
        append_in_other_process(location, ("b", "message_received"))
        response = poll.result(timeout=30)
    assert response.status_code == 200
    assert [(event["session_id"], event["type"]) for event in response.json()] == [("b", "message_received")]
    assert response.headers["stream-cursor"]


def test_a_typed_long_poll_waits_past_other_types(
    store: FeedStore, client: httpx.Client, location: str
) -> None:
    tail = client.head("/v1/feed").headers["stream-next-offset"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(
            client.get, "/v1/feed", params={"offset": tail, "live": "long-poll", "types": "session_completed"}
        )
        append_in_other_process(location, ("a", "message_sent"))
        append_in_other_process(location, ("a", "session_completed"))
        response = poll.result(timeout=30)
    assert [event["type"] for event in response.json()] == ["session_completed"]


def test_a_long_poll_with_nothing_new_is_a_204_at_the_same_offset(store: FeedStore) -> None:
    _stored(store, "a")
    with (
        serving(create_app(store, long_poll_timeout_ms=50)) as live,
        http_client(live.url) as client,
    ):
        tail = client.head("/v1/feed").headers["stream-next-offset"]
        response = client.get("/v1/feed", params={"offset": tail, "live": "long-poll"})
    assert response.status_code == 204
    assert (response.headers["stream-next-offset"], response.headers["stream-up-to-date"]) == (tail, "true")


def _sse_events(
    client: httpx.Client, params: dict[str, str], count: int, on_live: Callable[[], object]
) -> list[dict[str, Any]]:
    """The events of the first ``count`` messages of an SSE response; ``on_live()`` runs once,
    after the first control event (the follower has caught up and is waiting)."""
    got: list[dict[str, Any]] = []
    called = False
    with client.stream("GET", "/v1/feed", params={**params, "live": "sse"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:["):
                got.extend(json.loads(line[5:]))
            elif line.startswith("data:{") and not called:
                on_live()
                called = True
            if len(got) >= count:
                break
    return got


def test_an_sse_follower_gets_every_sessions_appends_in_order(
    store: FeedStore, client: httpx.Client, location: str
) -> None:
    first = _stored(store, "a")
    got = _sse_events(
        client,
        {"offset": "-1"},
        3,
        lambda: append_in_other_process(location, ("b", "message_sent"), ("c", "message_sent")),
    )
    assert [event["session_id"] for event in got] == ["a", "b", "c"]
    assert got[0]["position"] == first.position
    assert [event["position"] for event in got] == sorted({event["position"] for event in got})


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"offset": "yesterday"}, "offset"),
        ({"offset": f"{1:016d}_{7:016d}"}, "feed offset"),
        ({"after": "-3"}, "after"),
        ({"after": "1", "offset": "-1"}, "not both"),
        ({"limit": "0"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "1001"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "１２"}, "limit"),
        ({"types": "message_sent,nonsense"}, "types"),
        ({"types": ""}, "types"),
        ({"live": "forever", "offset": "-1"}, "live"),
        ({"live": "sse"}, "offset"),
        ({"type": "message_sent"}, "unknown query parameter 'type'"),
        ({"offset": ["-1", "now"]}, "more than once"),
    ],
)
def test_a_bad_query_is_a_400_that_names_it(
    store: FeedStore, client: httpx.Client, params: dict[str, str], names: str
) -> None:
    response = client.get("/v1/feed", params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert names in error["message"]


def test_writes_to_the_feed_are_refused_and_change_nothing(store: FeedStore, client: httpx.Client) -> None:
    _stored(store, "a")
    for method in ("POST", "PUT", "DELETE"):
        response = client.request(method, "/v1/feed", json={"type": "message_sent"})
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert store.get_last_position() == client.get("/v1/feed").json()[-1]["position"]
    assert [event.session_id for event in store.read_feed()] == ["a"]


def test_a_page_read_again_is_a_304_on_its_etag(store: FeedStore, client: httpx.Client) -> None:
    _stored(store, "a")
    page = client.get("/v1/feed", params={"offset": "-1"})
    again = client.get("/v1/feed", params={"offset": "-1"}, headers={"if-none-match": page.headers["etag"]})
    assert again.status_code == 304
    typed = client.get(
        "/v1/feed",
        params={"offset": "-1", "types": "message_sent"},
        headers={"if-none-match": page.headers["etag"]},
    )
    assert typed.status_code == 200  # another query, another tag


def test_the_feed_needs_the_token_like_every_read(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "s.db") as store:
        store.append_event(Event("message_sent", "a"))
        with serving(create_app(store, token="t0ken-for-the-feed")) as live:
            assert httpx.get(f"{live.url}/v1/feed").status_code == 401
            allowed = httpx.get(f"{live.url}/v1/feed", headers={"authorization": "Bearer t0ken-for-the-feed"})
            assert [event["session_id"] for event in allowed.json()] == ["a"]


def test_the_in_memory_store_serves_the_feed() -> None:
    store = InMemorySessionStore()
    store.append_event(Event("message_sent", "a"))
    with serving(create_app(store)) as live:
        assert [event["session_id"] for event in httpx.get(f"{live.url}/v1/feed").json()] == ["a"]


def test_a_feed_follower_on_one_node_wakes_on_an_append_through_another(
    pg_dsn: str, pg_store_schema: str
) -> None:
    location = f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}schema={pg_store_schema}"
    with (
        serve_process(location) as (_a, url_a),
        serve_process(location) as (_b, url_b),
        http_client(url_a, timeout=30) as a,
        http_client(url_b, timeout=30) as b,
    ):
        tail = a.head("/v1/feed").headers["stream-next-offset"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            poll = pool.submit(a.get, "/v1/feed", params={"offset": tail, "live": "long-poll"})
            assert b.post("/v1/sessions/through-b", json={"type": "message_sent"}).status_code == 204
            woken = poll.result(timeout=30)
        assert [event["session_id"] for event in woken.json()] == ["through-b"]
        posted = threading.Event()

        def post_through_b() -> None:
            b.post("/v1/sessions/sse-through-b", json=[{"type": "message_sent"}, {"type": "run_started"}])
            posted.set()

        got = _sse_events(a, {"offset": woken.headers["stream-next-offset"]}, 2, post_through_b)
        assert posted.is_set()
        assert [(event["session_id"], event["type"]) for event in got] == [
            ("sse-through-b", "message_sent"),
            ("sse-through-b", "run_started"),
        ]


def long_poll_from_now_while_appending(
    client: httpx.Client, path: str, append: Callable[[int], object]
) -> httpx.Response:
    """A long-poll at ``offset=now`` while another thread calls ``append(n)`` every 50 ms until
    it answers: whenever the server took "now", later appends come after it."""
    answered = threading.Event()

    def keep_appending() -> None:
        n = 0
        while not answered.wait(0.05):
            append(n)
            n += 1

    appender = threading.Thread(target=keep_appending)
    appender.start()
    try:
        return client.get(path, params={"offset": "now", "live": "long-poll"})
    finally:
        answered.set()
        appender.join(30)


def test_a_long_poll_from_now_returns_what_came_after_now(store: FeedStore, client: httpx.Client) -> None:
    _stored(store, "before")
    response = long_poll_from_now_while_appending(
        client, "/v1/feed", lambda n: store.append_event(Event("message_sent", "after", id=f"after-{n}"))
    )
    assert response.status_code == 200
    got = response.json()
    assert got and {event["session_id"] for event in got} == {"after"}
    assert response.headers["stream-next-offset"] == f"{got[-1]['position']:016d}_{0:016d}"
