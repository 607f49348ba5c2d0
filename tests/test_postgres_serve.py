"""Two ``sqlitestream serve`` processes on one PostgreSQL schema, as behind a load balancer: a
live reader on one node wakes on an append through the other or through the Python API of
another process; a node killed and restarted loses nothing acknowledged and its clients
resume from their offsets."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import httpx
import pytest
from http_support import http_client, serve_process

from sqlitestream.postgres import PostgresSessionStore

pytestmark = pytest.mark.usefixtures("pg_dsn")

TEXT = {"content-type": "text/plain"}


@pytest.fixture
def url(pg_dsn: str, pg_schema: str) -> str:
    separator = "&" if "?" in pg_dsn else "?"
    return f"{pg_dsn}{separator}schema={pg_schema}"


def _sse_data_after_first_control(
    client: httpx.Client, path: str, offset: str, started: threading.Event
) -> str:
    with client.stream("GET", path, params={"offset": offset, "live": "sse"}) as response:
        seen = ""
        for text in response.iter_text():
            seen += text
            if "event: control" in seen:
                started.set()
            if "event: data" in seen:
                return seen
    return seen


def _follow_then_append(a: httpx.Client, append: Callable[[], object]) -> str:
    """An SSE follower on ``a`` at the tail; once it is live, ``append()``; what it then got."""
    started, result = threading.Event(), list[str]()
    tail = a.head("/v1/stream/s").headers["stream-next-offset"]
    reader = threading.Thread(
        target=lambda: result.append(_sse_data_after_first_control(a, "/v1/stream/s", tail, started))
    )
    reader.start()
    assert started.wait(30)
    append()
    reader.join(30)
    return result[0]


def _append_through_the_api(pg_dsn: str, pg_schema: str) -> None:
    with PostgresSessionStore(pg_dsn, schema=pg_schema) as store:
        store.byte_streams().append("s", b"via-api", content_type="text/plain")


def test_a_live_reader_on_one_node_wakes_on_an_append_through_the_other(
    url: str, pg_dsn: str, pg_schema: str
) -> None:
    with (
        serve_process(url) as (_a, url_a),
        serve_process(url) as (_b, url_b),
        http_client(url_a, timeout=30) as a,
        http_client(url_b, timeout=30) as b,
    ):
        assert a.put("/v1/stream/s", headers=TEXT).status_code == 201
        got = _follow_then_append(a, lambda: b.post("/v1/stream/s", content=b"via-b", headers=TEXT))
        assert "data:via-b" in got
        assert "data:via-api" in _follow_then_append(a, lambda: _append_through_the_api(pg_dsn, pg_schema))
        assert a.get("/v1/stream/s", params={"offset": "-1"}).text == "via-bvia-api"


def test_a_killed_node_loses_nothing_acknowledged_and_clients_resume_from_their_offsets(url: str) -> None:
    acknowledged: list[str] = []
    with serve_process(url) as (node_a, url_a):
        with http_client(url_a, timeout=30) as a:
            a.put("/v1/stream/s", headers=TEXT)
            for n in range(5):
                response = a.post(
                    "/v1/stream/s",
                    content=f"{n};".encode(),
                    headers={**TEXT, "producer-id": "p", "producer-epoch": "0", "producer-seq": str(n)},
                )
                assert response.status_code == 200
                acknowledged.append(response.headers["stream-next-offset"])
            middle = a.get("/v1/stream/s", params={"offset": acknowledged[1]})
        node_a.send_signal(signal.SIGKILL)
        node_a.wait(timeout=30)
    assert middle.text == "2;3;4;"
    with (
        serve_process(url) as (_a, url_a),
        serve_process(url) as (_b, url_b),
        http_client(url_b, timeout=30) as b,
        http_client(url_a, timeout=30) as a,
    ):
        assert b.get("/v1/stream/s", params={"offset": "-1"}).text == "0;1;2;3;4;"
        # A producer whose last acknowledgement was lost retries on the other node: stored once.
        retry = b.post(
            "/v1/stream/s",
            content=b"4;",
            headers={**TEXT, "producer-id": "p", "producer-epoch": "0", "producer-seq": "4"},
        )
        assert retry.status_code == 204
        resumed = a.get("/v1/stream/s", params={"offset": acknowledged[2]})
        assert (resumed.text, resumed.headers["stream-next-offset"]) == ("3;4;", acknowledged[-1])
        tail: list[httpx.Response] = []
        poll = threading.Thread(
            target=lambda: tail.append(
                a.get("/v1/stream/s", params={"offset": acknowledged[-1], "live": "long-poll"})
            )
        )
        poll.start()
        b.post("/v1/stream/s", content=b"5;", headers=TEXT)
        poll.join(30)
        assert (tail[0].status_code, tail[0].text) == (200, "5;")
