"""The HTTP server (``sqlitestream.http``) over real HTTP: uvicorn on a loopback port, httpx as
the client, other OS processes writing through the Python API."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import apsw
import httpx
import pytest
from http_support import LiveServer, follow_stream, http_client, serving, sse_data_until
from support import run_in_another_process

from sqlitestream import (
    Event,
    InMemorySessionStore,
    NotFoundError,
    SessionStore,
    SQLiteSessionStore,
    ValidationError,
)
from sqlitestream.http import create_app

TOKEN = "s3cret-t0ken-value"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteSessionStore]:
    with SQLiteSessionStore(tmp_path / "store.db") as store:
        yield store


def in_other_process(path: Path, code: str) -> None:
    """Run ``code`` in another OS process with ``store`` open on ``path``."""
    program = f"from sqlitestream import *\nwith SQLiteSessionStore({str(path)!r}) as store:\n"
    program += "".join(f"    {line}\n" for line in code.strip().splitlines())
    run_in_another_process(program)


# Byte streams ------------------------------------------------------------------------------------


def test_a_stream_is_created_appended_and_read_back(client: httpx.Client) -> None:
    created = client.put("/v1/stream/docs/a", content=b"hello", headers={"content-type": "text/plain"})
    assert created.status_code == 201
    assert created.headers["location"].endswith("/v1/stream/docs/a")
    appended = client.post("/v1/stream/docs/a", content=b" world", headers={"content-type": "text/plain"})
    assert appended.status_code == 204
    read = client.get("/v1/stream/docs/a", params={"offset": "-1"})
    assert (read.status_code, read.text) == (200, "hello world")
    assert read.headers["content-type"] == "text/plain"
    assert read.headers["stream-next-offset"] == appended.headers["stream-next-offset"]
    assert read.headers["stream-up-to-date"] == "true"
    assert read.headers["x-content-type-options"] == "nosniff"


def test_streams_live_in_the_store_file(store: SQLiteSessionStore, client: httpx.Client) -> None:
    client.put("/v1/stream/s", content=b'[{"a":1},{"b":2}]', headers={"content-type": "application/json"})
    read = store.byte_streams().read_stream("s")
    assert json.loads(read.body()) == [{"a": 1}, {"b": 2}]


def test_a_long_poll_wakes_on_an_append_by_another_process(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    created = client.put("/v1/stream/live", headers={"content-type": "text/plain"})
    tail = created.headers["stream-next-offset"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(client.get, "/v1/stream/live", params={"offset": tail, "live": "long-poll"})
        in_other_process(
            Path(store.path), "store.byte_streams().append('live', b'from afar', content_type='text/plain')"
        )
        response = poll.result(timeout=30)
    assert (response.status_code, response.text) == (200, "from afar")
    assert response.headers["stream-cursor"].isdigit()


def test_sse_delivers_data_then_a_control_event(client: httpx.Client) -> None:
    client.put("/v1/stream/events", content=b"one", headers={"content-type": "text/plain"})
    client.post(
        "/v1/stream/events", content=b"two", headers={"content-type": "text/plain", "stream-closed": "true"}
    )
    with client.stream("GET", "/v1/stream/events", params={"offset": "-1", "live": "sse"}) as response:
        assert response.headers["content-type"] == "text/event-stream"
        text = response.read().decode()  # the stream is closed: the server ends the response
    data, control = [block for block in text.split("\n\n") if block]
    assert data == "event: data\ndata:onetwo"
    assert control.startswith("event: control\ndata:")
    assert json.loads(control.split("data:", 1)[1])["streamClosed"] is True


def test_every_sse_follower_of_a_stream_gets_every_append_in_order(client: httpx.Client) -> None:
    text = {"content-type": "text/plain"}
    client.put("/v1/stream/fan", headers=text)
    tail = client.head("/v1/stream/fan").headers["stream-next-offset"]
    parts = [f"part-{n};".encode() for n in range(30)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        connected = [concurrent.futures.Future[None]() for _ in range(8)]
        last = concurrent.futures.Future[str]()
        followers = [
            pool.submit(follow_stream, client.base_url, "/v1/stream/fan", tail, done, last)
            for done in connected
        ]
        concurrent.futures.wait(connected, timeout=30)
        offsets = [client.post("/v1/stream/fan", content=part, headers=text) for part in parts]
        last.set_result(offsets[-1].headers["stream-next-offset"])
        assert [follower.result(timeout=60) for follower in followers] == [b"".join(parts)] * 8


def test_an_sse_follower_that_stops_reading_neither_holds_back_the_others_nor_loses_data(
    server: LiveServer, client: httpx.Client
) -> None:
    text = {"content-type": "text/plain"}
    client.put("/v1/stream/big", headers=text)
    tail = client.head("/v1/stream/big").headers["stream-next-offset"]
    # More than the socket buffers (to 4 MiB) and a follower's backlog (BACKLOG_BYTES) hold:
    # the stalled follower falls behind, and reads for itself once its client reads again.
    parts = [f"{n:06d}".encode() * 10923 for n in range(160)]  # 64 KiB each, 10 MiB
    host, port = server.url.removeprefix("http://").split(":")
    stalled = socket.create_connection((host, int(port)))
    stalled.sendall(f"GET /v1/stream/big?offset={tail}&live=sse HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"event: control" not in head:
        head += stalled.recv(4096)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        last = concurrent.futures.Future[str]()

        def follow() -> bytes:
            with client.stream("GET", "/v1/stream/big", params={"offset": tail, "live": "sse"}) as response:
                return sse_data_until(response.iter_raw(), last.result(timeout=60))

        reader = pool.submit(follow)
        offsets = [client.post("/v1/stream/big", content=part, headers=text) for part in parts]
        last.set_result(offsets[-1].headers["stream-next-offset"])
        # The stalled one has not read a byte since its first event, and the other got all.
        assert reader.result(timeout=120) == b"".join(parts)

    def stalled_chunks() -> Iterator[bytes]:
        body = head.split(b"\r\n\r\n", 1)[1]
        while True:
            # Chunked transfer coding: the SSE text between the chunk-size lines.
            while b"\r\n" in body:
                size_line, rest = body.split(b"\r\n", 1)
                size = int(size_line, 16)
                if len(rest) < size + 2:
                    break
                yield rest[:size]
                body = rest[size + 2 :]
            received = stalled.recv(1 << 16)
            if not received:
                return
            body += received

    with stalled:
        assert sse_data_until(stalled_chunks(), last.result()) == b"".join(parts)


def test_a_bad_stream_name_is_refused_without_touching_anything(client: httpx.Client) -> None:
    for path in ("/v1/stream/a/%2e%2e/b", "/v1/stream/a//b", "/v1/stream/%00"):
        response = client.put(path)
        assert response.status_code == 400, path
        assert response.headers["x-content-type-options"] == "nosniff"


def test_a_path_that_is_not_utf8_is_a_400_and_nothing_is_written(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    """The server reads %-escapes that are not UTF-8 as replacement characters, so two such
    names (%FF, %FE) would be one session or stream: they are refused instead."""
    for path in ("/v1/sessions/%FF", "/v1/sessions/a%FEb", "/v1/stream/%FF"):
        response = client.post(path, json={"type": "message_sent"})
        assert response.status_code == 400, (path, response.text)
        assert "not UTF-8" in response.json()["error"]["message"]
        assert client.put(path, content=b"x").status_code == 400
    assert store.list_streams() == []
    with pytest.raises(NotFoundError):
        store.byte_streams().stream_state("\ufffd")
    encoded = client.post("/v1/sessions/%C3%A9t%C3%A9", json={"type": "message_sent"})
    assert encoded.status_code == 204, encoded.text
    assert store.get_latest_sequence("\u00e9t\u00e9") == 1


def test_a_body_over_the_limit_is_413_and_nothing_is_written(store: SQLiteSessionStore) -> None:
    with (
        serving(create_app(store, max_body_bytes=1000)) as live,
        http_client(live.url) as client,
    ):
        assert client.put("/v1/stream/big", headers={"content-type": "text/plain"}).status_code == 201
        response = client.post("/v1/stream/big", content=b"x" * 1001, headers={"content-type": "text/plain"})
        assert response.status_code == 413
        assert (
            client.post(
                "/v1/stream/big", content=b"x" * 1000, headers={"content-type": "text/plain"}
            ).status_code
            == 204
        )
        assert len(client.get("/v1/stream/big").content) == 1000


# Sessions ----------------------------------------------------------------------------------------


def test_a_session_reads_as_404_until_it_has_an_event(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    assert client.get("/v1/sessions/s1").status_code == 404
    store.append_event(Event("message_sent", "s1", data={"text": "hi"}))
    response = client.get("/v1/sessions/s1", params={"offset": "-1"})
    assert response.status_code == 200
    [event] = response.json()
    assert (event["sequence_number"], event["data"], event["session_id"]) == (1, {"text": "hi"}, "s1")
    assert set(event) >= {"id", "type", "run_id", "timestamp", "metadata"}


def test_posted_events_are_appended_as_one_batch(store: SQLiteSessionStore, client: httpx.Client) -> None:
    body = [
        {"type": "message_sent", "data": {"n": 1}, "id": "e1"},
        {"type": "message_received", "run_id": "r1"},
    ]
    response = client.post("/v1/sessions/s1", json=body)
    assert response.status_code == 204
    assert [event.sequence_number for event in store.get_events("s1")] == [1, 2]
    assert response.headers["stream-next-offset"].startswith("0000000000000002_")


def test_an_invalid_event_is_a_400_naming_the_field_and_nothing_is_written(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    body = [{"type": "message_sent"}, {"type": "message_sent", "data": "not an object"}]
    response = client.post("/v1/sessions/s1", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "events[1].data"
    assert store.get_latest_sequence("s1") == 0


def test_a_duplicate_event_id_is_idempotent(store: SQLiteSessionStore, client: httpx.Client) -> None:
    for _ in range(2):
        assert client.post("/v1/sessions/s1", json={"type": "message_sent", "id": "same"}).status_code == 204
    assert store.get_latest_sequence("s1") == 1


def test_a_session_long_poll_wakes_on_another_process_append(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    store.append_event(Event("message_sent", "s1"))
    tail = client.get("/v1/sessions/s1").headers["stream-next-offset"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(client.get, "/v1/sessions/s1", params={"offset": tail, "live": "long-poll"})
        in_other_process(
            Path(store.path), "store.append_event(Event('message_received', 's1', data={'x': 2}))"
        )
        response = poll.result(timeout=30)
    assert response.status_code == 200
    assert [event["data"] for event in response.json()] == [{"x": 2}]


def test_deleting_a_session_is_refused_unless_allowed(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    store.append_event(Event("message_sent", "s1"))
    assert client.delete("/v1/sessions/s1").status_code == 405
    assert store.get_latest_sequence("s1") == 1
    with serving(create_app(store, allow_session_delete=True)) as live:
        assert httpx.delete(f"{live.url}/v1/sessions/s1").status_code == 204
    assert store.get_latest_sequence("s1") == 0


# Security ----------------------------------------------------------------------------------------


def test_a_token_is_required_on_every_request_and_never_echoed(store: SQLiteSessionStore) -> None:
    with serving(create_app(store, token=TOKEN)) as live, http_client(live.url) as client:
        refused = client.put("/v1/stream/a", headers={"authorization": "Bearer wrong"})
        assert refused.status_code == 401
        assert refused.headers["x-content-type-options"] == "nosniff"
        assert TOKEN not in refused.text and "wrong" not in refused.text
        assert client.get("/v1/sessions/s1").status_code == 401
        allowed = client.put("/v1/stream/a", headers={"authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 201


def test_cors_answers_only_the_configured_origins(store: SQLiteSessionStore) -> None:
    app = create_app(store, cors_origins=["https://app.example"])
    with serving(app) as live, http_client(live.url) as client:
        client.put("/v1/stream/a")
        good = client.get("/v1/stream/a", headers={"origin": "https://app.example"})
        assert good.headers["access-control-allow-origin"] == "https://app.example"
        assert "Stream-Next-Offset" in good.headers["access-control-expose-headers"]
        other = client.get("/v1/stream/a", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_create_app_refuses_bad_settings(store: SQLiteSessionStore) -> None:
    with pytest.raises(ValidationError):
        create_app(store, long_poll_timeout_ms=-1)
    with pytest.raises(ValidationError):
        create_app(store, token="")
    with pytest.raises(ValidationError):
        create_app(store, cors_origins="https://one.example")  # a string is not a list of origins


def test_a_session_sse_follower_gets_another_process_appends(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    store.append_event(Event("message_sent", "s1", data={"n": 1}))
    with client.stream("GET", "/v1/sessions/s1", params={"offset": "-1", "live": "sse"}) as response:
        assert response.headers["content-type"] == "text/event-stream"
        lines = response.iter_lines()
        batches: list[list[dict[str, object]]] = []
        wrote = False
        for line in lines:
            if line.startswith("data:["):  # a data event: an array of events
                batches.append(json.loads(line[5:]))
            elif line.startswith("data:{") and not wrote:  # the first control event: caught up
                in_other_process(
                    Path(store.path), "store.append_event(Event('message_received', 's1', data={'n': 2}))"
                )
                wrote = True
            if sum(len(batch) for batch in batches) == 2:
                break
    events = [event for batch in batches for event in batch]
    assert [(event["sequence_number"], event["data"]) for event in events] == [(1, {"n": 1}), (2, {"n": 2})]


def _as_producer(client: httpx.Client, epoch: int, seq: int, *texts: str) -> httpx.Response:
    headers = {"producer-id": "worker-1", "producer-epoch": str(epoch), "producer-seq": str(seq)}
    body = [{"type": "message_sent", "data": {"text": text}} for text in texts]
    return client.post("/v1/sessions/s1", json=body, headers=headers)


def test_a_producers_retried_session_post_is_stored_once(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    first = _as_producer(client, 0, 0, "a", "b")
    assert (first.status_code, first.headers["producer-seq"]) == (200, "0")
    assert first.headers["stream-next-offset"].startswith("0000000000000002_")
    again = _as_producer(client, 0, 0, "a", "b")
    assert (again.status_code, again.headers["producer-epoch"], again.headers["producer-seq"]) == (
        204,
        "0",
        "0",
    )
    assert again.headers["stream-next-offset"] == first.headers["stream-next-offset"]
    assert [event.data["text"] for event in store.get_events("s1")] == ["a", "b"]


def test_a_producers_sequence_gap_on_a_session_is_a_409_and_nothing_is_written(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    assert _as_producer(client, 0, 0, "a").status_code == 200
    gap = _as_producer(client, 0, 2, "c")
    assert gap.status_code == 409
    assert (gap.headers["producer-expected-seq"], gap.headers["producer-received-seq"]) == ("1", "2")
    assert _as_producer(client, 0, 1, "b").status_code == 200
    assert [event.data["text"] for event in store.get_events("s1")] == ["a", "b"]


def test_an_older_producer_epoch_on_a_session_is_fenced_with_a_403(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    assert _as_producer(client, 0, 0, "old").status_code == 200
    assert _as_producer(client, 1, 0, "new").status_code == 200
    zombie = _as_producer(client, 0, 1, "zombie")
    assert (zombie.status_code, zombie.headers["producer-epoch"]) == (403, "1")
    assert _as_producer(client, 2, 5, "bad start").status_code == 400
    assert [event.data["text"] for event in store.get_events("s1")] == ["old", "new"]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    if request.param == "postgres":
        from sqlitestream.postgres import PostgresSessionStore

        dsn = request.getfixturevalue("pg_dsn")
        opened: SessionStore = PostgresSessionStore(dsn, schema=request.getfixturevalue("pg_schema"))
    elif request.param == "sqlite":
        opened = SQLiteSessionStore(tmp_path / "store.db")
    else:
        opened = InMemorySessionStore()
    with opened:
        yield opened


def test_one_producer_id_writes_to_two_sessions_each_with_its_own_sequence(
    any_store: SessionStore,
) -> None:
    def post(session_id: str, producer_id: str, seq: int, text: str) -> httpx.Response:
        headers = {"producer-id": producer_id, "producer-epoch": "0", "producer-seq": str(seq)}
        body = [{"type": "message_sent", "data": {"text": text}}]
        return client.post(f"/v1/sessions/{session_id}", json=body, headers=headers)

    with serving(create_app(any_store)) as live, http_client(live.url, timeout=30) as client:
        assert post("s1", "worker", 0, "one").status_code == 200
        assert post("s2", "worker", 0, "two").status_code == 200
        # A retry, stored once (204 where the store keeps producer state; 200 on PostgreSQL,
        # which dedupes it by the events' ids instead).
        assert post("s2", "worker", 0, "two").is_success
        assert post("s2", "worker", 1, "three").status_code == 200
        # Ids with the separator in them: session "a:b" and producer "c", session "a" and "b:c".
        assert post("a:b", "c", 0, "four").status_code == 200
        assert post("a", "b:c", 0, "five").status_code == 200
    texts = {
        session: [event.data["text"] for event in any_store.get_events(session)]
        for session in ("s1", "s2", "a:b", "a")
    }
    assert texts == {"s1": ["one"], "s2": ["two", "three"], "a:b": ["four"], "a": ["five"]}


def test_an_offset_of_a_session_deleted_and_written_again_is_gone(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    store.append_events([Event("message_sent", "s1") for _ in range(3)])
    old = client.get("/v1/sessions/s1", params={"offset": "-1"}).headers["stream-next-offset"]
    store.delete_session("s1")
    store.append_events([Event("message_received", "s1") for _ in range(5)])  # longer than before
    gone = client.get("/v1/sessions/s1", params={"offset": old})
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "session_replaced")
    assert client.get("/v1/sessions/s1", params={"offset": old, "live": "sse"}).status_code == 410
    new = client.head("/v1/sessions/s1").headers["stream-next-offset"]
    assert new.split("_")[0] == "0000000000000005" and new.split("_")[1] != old.split("_")[1]
    # An offset without a generation (its second half 0) still resumes as a cursor.
    plain = client.get("/v1/sessions/s1", params={"offset": "0000000000000004_0000000000000000"})
    assert [event["sequence_number"] for event in plain.json()] == [5]


def test_a_trim_keeps_the_offsets_of_the_events_it_keeps(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    store.append_events([Event("message_sent", "s1") for _ in range(6)])
    pages = [client.get("/v1/sessions/s1", params={"offset": "-1"})]
    after_four = pages[0].headers["stream-next-offset"]
    store.append_events([Event("message_sent", "s1") for _ in range(2)])
    store.trim_session("s1", keep_last=4)  # 5..8 stay: a reader at 6 has missed nothing
    resumed = client.get("/v1/sessions/s1", params={"offset": after_four})
    assert [event["sequence_number"] for event in resumed.json()] == [7, 8]
    assert client.head("/v1/sessions/s1", params={"offset": after_four}).status_code == 200


def test_an_offset_whose_next_events_were_trimmed_is_gone(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    store.append_events([Event("message_sent", "s1") for _ in range(3)])
    early = client.get("/v1/sessions/s1", params={"offset": "-1"}).headers["stream-next-offset"]
    store.append_events([Event("message_sent", "s1") for _ in range(5)])
    store.trim_session("s1", keep_last=2)  # 4..6 went: a reader at 3 would miss them
    gone = client.get("/v1/sessions/s1", params={"offset": early})
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "offset_trimmed")
    assert "4..6" in gone.json()["error"]["message"]
    assert client.get("/v1/sessions/s1", params={"offset": early, "live": "long-poll"}).status_code == 410
    assert client.head("/v1/sessions/s1", params={"offset": early}).status_code == 410
    fresh = client.get("/v1/sessions/s1", params={"offset": "-1"})
    assert [event["sequence_number"] for event in fresh.json()] == [7, 8]
    store.trim_session("s1", keep_last=0)  # nothing left: the tail offset still resumes
    tail = client.head("/v1/sessions/s1").headers["stream-next-offset"]
    assert tail.startswith("0000000000000008_")
    store.append_event(Event("message_sent", "s1"))
    assert [e["sequence_number"] for e in client.get("/v1/sessions/s1", params={"offset": tail}).json()] == [
        9
    ]


def test_an_open_sse_response_ends_when_its_session_is_deleted(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    store.append_event(Event("message_sent", "s1"))
    ended = threading.Event()

    def delete_until_the_response_ends() -> None:
        # A delete releases the response's wait for events; one that lands before the wait has
        # begun releases nothing (the response then notices at its next check, seconds later),
        # so write the session anew and delete it again until the response has ended.
        store.delete_session("s1")
        while not ended.wait(0.02):
            store.append_event(Event("message_sent", "s1"))
            store.delete_session("s1")

    deleter = threading.Thread(target=delete_until_the_response_ends)
    params = {"offset": "-1", "live": "sse"}
    try:
        with client.stream("GET", "/v1/sessions/s1", params=params) as response:
            seen = b""
            for chunk in response.iter_raw():
                seen += chunk
                if b"event: control" in seen and deleter.ident is None:
                    deleter.start()
    finally:
        ended.set()
        if deleter.is_alive():
            deleter.join()
    # The loop above ended: the response was closed by the server, not by a timeout; and the
    # session written anew from sequence 1 sent nothing past the offset already sent.
    assert seen.count(b"event: control") == 1
    assert seen.count(b"event: data") == 1


def test_a_slow_client_holds_no_read_transaction(store: SQLiteSessionStore, client: httpx.Client) -> None:
    big = b"x" * (4 << 20)  # far more than the socket buffers take: the response waits on the client
    client.put("/v1/stream/big", content=big, headers={"content-type": "application/octet-stream"})
    with client.stream("GET", "/v1/stream/big", params={"offset": "-1"}) as response:
        assert response.status_code == 200  # headers read, the 4 MiB body not
        store.byte_streams().append("big", b"more", content_type="application/octet-stream")
        conn = apsw.Connection(store.path)
        try:
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0]
        finally:
            conn.close()
        assert busy == 0  # a read transaction kept open for the response would block it
        assert len(response.read()) == len(big)


def test_the_in_memory_store_serves_streams_and_sessions() -> None:
    store = InMemorySessionStore()
    store.append_event(Event("message_sent", "s1"))
    with serving(create_app(store)) as live, http_client(live.url) as client:
        assert (
            client.put("/v1/stream/a", content=b"x", headers={"content-type": "text/plain"}).status_code
            == 201
        )
        assert client.get("/v1/stream/a").text == "x"
        assert [event["sequence_number"] for event in client.get("/v1/sessions/s1").json()] == [1]
    store.close()


def test_a_session_long_poll_from_now_returns_what_came_after_now(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    from test_http_feed import long_poll_from_now_while_appending

    store.append_event(Event("message_sent", "s1", id="before"))
    response = long_poll_from_now_while_appending(
        client, "/v1/sessions/s1", lambda n: store.append_event(Event("message_sent", "s1", id=f"after-{n}"))
    )
    assert response.status_code == 200
    got = response.json()
    assert got and all(event["id"].startswith("after-") for event in got)
    assert response.headers["stream-next-offset"].startswith(f"{got[-1]['sequence_number']:016d}_")
