"""SSE fan-out over real HTTP: a stream's followers at its tip get each append from the
stream's feed, sent through each response as it is broadcast (uvicorn on a loopback port)."""

from __future__ import annotations

import concurrent.futures
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_support import LiveServer, follow_stream, http_client, serving, sse_data_until

from sqlitestream import SQLiteSessionStore
from sqlitestream.http import create_app

TEXT = {"content-type": "text/plain"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with SQLiteSessionStore(tmp_path / "store.db") as store, serving(create_app(store)) as live:
        yield live


def _connected_follower(server: LiveServer, path: str) -> socket.socket:
    """A raw SSE request, returned once its first control event has arrived."""
    host, port = server.url.removeprefix("http://").split(":")
    follower = socket.create_connection((host, int(port)))
    follower.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"event: control" not in head:
        received = follower.recv(4096)
        assert received, "the response ended before its first control event"
        head += received
    return follower


def test_followers_hanging_up_during_a_broadcast_leave_the_others_every_append_in_order(
    server: LiveServer,
) -> None:
    with http_client(server.url, timeout=30) as client:
        client.put("/v1/stream/fan", headers=TEXT)
        tail = client.head("/v1/stream/fan").headers["stream-next-offset"]
        path = f"/v1/stream/fan?offset={tail}&live=sse"
        leaving = [_connected_follower(server, path) for _ in range(6)]
        parts = [f"part-{n};".encode() for n in range(40)]

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            connected = [concurrent.futures.Future[None]() for _ in range(6)]
            last = concurrent.futures.Future[str]()
            staying = [
                pool.submit(follow_stream, server.url, "/v1/stream/fan", tail, done, last)
                for done in connected
            ]
            concurrent.futures.wait(connected, timeout=30)
            offsets = []
            for index, part in enumerate(parts):
                if index == 10:  # hang up while appends go out, some before the server notices
                    for follower in leaving:
                        follower.close()
                offsets.append(client.post("/v1/stream/fan", content=part, headers=TEXT))
            last.set_result(offsets[-1].headers["stream-next-offset"])
            assert [follower.result(timeout=60) for follower in staying] == [b"".join(parts)] * 6
        # And the stream's feed still serves a follower that comes after.
        with client.stream("GET", "/v1/stream/fan", params={"offset": tail, "live": "sse"}) as response:
            client.post("/v1/stream/fan", content=b"after;", headers=TEXT)
            end = client.head("/v1/stream/fan").headers["stream-next-offset"]
            assert sse_data_until(response.iter_raw(), end) == b"".join(parts) + b"after;"
