"""Writers and followers that ride out an outage, and the check that nothing acknowledged was lost:
shared by the PostgreSQL outage tests (``tests/test_postgres_outage.py``: every backend
connection killed, a ``serve`` node killed and restarted) and ``tools/pg_restart.py`` (the
PostgreSQL server itself restarted).

- :class:`Node`: a ``sqlitestream serve`` process on a fixed port, so that after a kill and a
  restart its clients find it at the same URL, as behind a load balancer.
- :class:`Workload`: one HTTP writer per node and one through the Python API, each appending
  ``events`` events with ids of its own to its own session, one at a time, retrying an append
  until it is acknowledged (a retry carries the same id, so the store keeps it once); and HTTP
  followers of the feed (long-poll on each node, SSE on the last) and of a session (long-poll,
  on another node than its writer), each resuming from the last offset it was given after any
  error.
- :func:`problems`: what the store and the followers hold against what was acknowledged: each
  writer's events present exactly once, in the order acknowledged; the feed in strictly
  increasing positions; each follower with exactly the store's events, in order.

Errors during an outage are expected (503s, 500s, refused connections); every client backs off
(10 ms, doubling to 500 ms) and tries again, and counts them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx

from sqlitestream import Event, SqliteStreamError
from sqlitestream.cli.main import main as cli_main
from sqlitestream.feed import FeedStore
from sqlitestream.locations import open_store
from tools import forked

__all__ = ["Node", "Workload", "free_port", "problems"]

forked.configure(preload=["sqlitestream.cli.main", "sqlitestream.http", "uvicorn.main"])

_BACKOFF_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Node:
    """``sqlitestream --db LOCATION serve`` on ``port`` (0: a free one, kept across restarts), in
    a child of ``tools.forked``'s server, which has imported the HTTP stack once (a new
    interpreter would import it again at every start, 0.3-0.5 s of CPU)."""

    def __init__(self, location: str, *, port: int = 0, long_poll_ms: int = 2000) -> None:
        self.location = location
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._long_poll_ms = long_poll_ms
        self.process: forked.Child | None = None

    def start(self, timeout_s: float = 60) -> None:
        argv = ["--db", self.location, "serve"]
        argv += ["--port", str(self.port), "--long-poll-timeout-ms", str(self._long_poll_ms)]
        deadline = time.monotonic() + timeout_s
        while True:
            process = forked.Child(cli_main, (argv,))
            line = process.stdout.readline()
            if line.startswith("serving "):
                self.process = process
                return
            process.wait(timeout=30)
            assert process.stderr is not None
            error = process.stderr.read()
            process.close()
            # A port just freed by a killed node can take a moment to be free again.
            if "address already in use" not in error.lower() or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start on port {self.port}: {line!r} {error}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the node stops at once, answering nothing more."""
        if self.process is not None:
            self.process.close()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@contextmanager
def nodes(location: str, count: int) -> Iterator[list[Node]]:
    started = [Node(location) for _ in range(count)]
    try:
        for node in started:
            node.start()
        yield started
    finally:
        for node in started:
            node.stop()


class _Backoff:
    def __init__(self) -> None:
        self.errors = 0
        self._streak = 0

    def failed(self) -> None:
        self.errors += 1
        time.sleep(_BACKOFF_S[min(self._streak, len(_BACKOFF_S) - 1)])
        self._streak += 1

    def succeeded(self) -> None:
        self._streak = 0


@dataclass
class Follower:
    """What one follower received, in order: ``(session_id, event id, position)``."""

    name: str
    session_id: str | None  # None: the feed
    expected: int
    received: list[tuple[str, str, int]] = field(default_factory=list)
    errors: int = 0
    done: bool = False


@dataclass
class Writer:
    name: str
    session_id: str
    acknowledged: list[str] = field(default_factory=list)
    errors: int = 0


class Workload:
    """Writers and followers on ``urls`` (one or more nodes) and ``location`` (the Python API),
    in threads; :meth:`run` in a ``with`` block starts them, :meth:`join` waits for the end."""

    def __init__(self, location: str, urls: list[str], *, events: int, deadline_s: float) -> None:
        self._location = location
        self._urls = urls
        self.events = events
        self._deadline = time.monotonic() + deadline_s
        self.writers = [Writer(f"http-{n}", f"outage-http-{n}") for n in range(len(urls))]
        self.writers.append(Writer("api", "outage-api"))
        total = events * len(self.writers)
        self.followers = [Follower(f"feed-long-poll-{n}", None, total) for n in range(len(urls))]
        self.followers.append(Follower("feed-sse", None, total))
        self.followers.append(Follower("session-long-poll", self.writers[0].session_id, events))
        self._progress = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.failures: list[str] = []

    # Running ----------------------------------------------------------------------------------

    @property
    def acknowledged(self) -> int:
        return sum(len(writer.acknowledged) for writer in self.writers)

    def wait_for_acknowledged(self, count: int) -> bool:
        """Wait until ``count`` appends in all were acknowledged (False at the deadline)."""
        with self._progress:
            return self._progress.wait_for(
                lambda: self.acknowledged >= count or self._finished(),
                timeout=max(0.0, self._deadline - time.monotonic()),
            ) and (self.acknowledged >= count)

    def _finished(self) -> bool:
        return all(not thread.is_alive() for thread in self._threads if thread.name.startswith("writer"))

    def _acked(self, writer: Writer, event_id: str) -> None:
        with self._progress:
            writer.acknowledged.append(event_id)
            self._progress.notify_all()

    def start(self) -> None:
        urls = self._urls
        http_writers, api_writer = self.writers[: len(urls)], self.writers[-1]
        feed_polls = self.followers[: len(urls)]
        sse, session = self.followers[len(urls)], self.followers[len(urls) + 1]
        targets: list[tuple[str, Callable[[], None]]] = [
            *((f"writer-{w.name}", partial(self._http_writer, w, url)) for w, url in zip(http_writers, urls)),
            (f"writer-{api_writer.name}", partial(self._api_writer, api_writer)),
            *(
                (f"follower-{f.name}", partial(self._long_poll, f, url, "/v1/feed"))
                for f, url in zip(feed_polls, urls)
            ),
            (f"follower-{sse.name}", partial(self._feed_sse, sse, urls[-1])),
            (
                f"follower-{session.name}",
                partial(self._long_poll, session, urls[-1], f"/v1/sessions/{session.session_id}"),
            ),
        ]
        self._threads = [
            threading.Thread(target=self._guard(target), name=name, daemon=True) for name, target in targets
        ]
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(max(1.0, self._deadline - time.monotonic() + 5))
        with self._progress:
            self._progress.notify_all()

    def _guard(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except Exception as exc:
                self.failures.append(f"{threading.current_thread().name}: {exc!r}")
            finally:
                with self._progress:
                    self._progress.notify_all()

        return run

    def _late(self) -> bool:
        return time.monotonic() > self._deadline

    # Writers ----------------------------------------------------------------------------------

    def _http_writer(self, writer: Writer, url: str) -> None:
        backoff = _Backoff()
        with httpx.Client(base_url=url, timeout=10) as client:
            for n in range(self.events):
                event_id = f"{writer.name}-{n}"
                event = {"type": "message_sent", "id": event_id, "data": {"n": n}}
                while not self._late():
                    try:
                        response = client.post(f"/v1/sessions/{writer.session_id}", json=event)
                    except httpx.HTTPError:
                        backoff.failed()
                        continue
                    if response.status_code == 204:
                        backoff.succeeded()
                        self._acked(writer, event_id)
                        break
                    if response.status_code < 500:
                        raise AssertionError(f"{writer.name}: {response.status_code} {response.text}")
                    backoff.failed()
        writer.errors = backoff.errors

    def _api_writer(self, writer: Writer) -> None:
        backoff = _Backoff()
        store = None
        try:
            for n in range(self.events):
                event = Event("message_sent", writer.session_id, id=f"{writer.name}-{n}", data={"n": n})
                while not self._late():
                    try:
                        if store is None:
                            store = open_store(self._location)
                        store.append_event(event)
                    except SqliteStreamError:
                        backoff.failed()
                        continue
                    backoff.succeeded()
                    self._acked(writer, event.id)
                    break
        finally:
            if store is not None:
                store.close()
        writer.errors = backoff.errors

    # Followers --------------------------------------------------------------------------------

    def _long_poll(self, follower: Follower, url: str, path: str) -> None:
        backoff = _Backoff()
        offset = "-1"
        with httpx.Client(base_url=url, timeout=30) as client:
            while len(follower.received) < follower.expected and not self._late():
                try:
                    response = client.get(path, params={"offset": offset, "live": "long-poll"})
                except httpx.HTTPError:
                    backoff.failed()
                    continue
                if response.status_code in (200, 204):
                    backoff.succeeded()
                    if response.status_code == 200:
                        follower.received.extend(_entries(response.json()))
                    offset = response.headers["stream-next-offset"]
                elif response.status_code == 404 and follower.session_id is not None:
                    backoff.failed()  # the session has no event yet
                elif response.status_code >= 500:
                    backoff.failed()
                else:
                    raise AssertionError(f"{follower.name}: {response.status_code} {response.text}")
        follower.errors = backoff.errors
        follower.done = len(follower.received) >= follower.expected

    def _feed_sse(self, follower: Follower, url: str) -> None:
        """A data event counts once the control event after it has arrived (its offset is
        where a reconnect resumes), as a careful Durable Streams client keeps them."""
        backoff = _Backoff()
        offset = "-1"
        with httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=90)) as client:
            while len(follower.received) < follower.expected and not self._late():
                pending: list[tuple[str, str, int]] = []
                try:
                    with client.stream(
                        "GET", "/v1/feed", params={"offset": offset, "live": "sse"}
                    ) as response:
                        if response.status_code != 200:
                            response.read()
                            if response.status_code < 500:
                                raise AssertionError(
                                    f"{follower.name}: {response.status_code} {response.text}"
                                )
                            backoff.failed()
                            continue
                        backoff.succeeded()
                        for line in response.iter_lines():
                            if line.startswith("data:["):
                                pending = _entries(json.loads(line[5:]))
                            elif line.startswith("data:{"):
                                follower.received.extend(pending)
                                pending = []
                                offset = json.loads(line[5:])["streamNextOffset"]
                                if len(follower.received) >= follower.expected or self._late():
                                    break
                except httpx.HTTPError:
                    backoff.failed()
        follower.errors = backoff.errors
        follower.done = len(follower.received) >= follower.expected

    def summary(self) -> dict[str, Any]:
        return {
            "acknowledged": {writer.name: len(writer.acknowledged) for writer in self.writers},
            "writer_errors": {writer.name: writer.errors for writer in self.writers},
            "received": {follower.name: len(follower.received) for follower in self.followers},
            "follower_errors": {follower.name: follower.errors for follower in self.followers},
        }


def _entries(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(event["session_id"], event["id"], event["position"]) for event in events]


def problems(location: str, workload: Workload) -> list[str]:
    """Everything that contradicts "nothing acknowledged is lost, nothing is stored twice, every
    follower resumed": an empty list when all is well."""
    found = list(workload.failures)
    with open_store(location) as store:
        assert isinstance(store, FeedStore)
        feed = [(event.session_id, event.id, event.position) for event in store.read_feed()]
        logs = {
            writer.session_id: [event.id for event in store.get_events(writer.session_id)]
            for writer in workload.writers
        }
    for writer in workload.writers:
        if len(writer.acknowledged) != workload.events:
            found.append(
                f"{writer.name}: {len(writer.acknowledged)} of {workload.events} appends acknowledged"
            )
        if logs[writer.session_id] != writer.acknowledged:
            lost = sorted(set(writer.acknowledged) - set(logs[writer.session_id]))
            extra = len(logs[writer.session_id]) - len(set(logs[writer.session_id]))
            found.append(
                f"{writer.name}: the session holds {len(logs[writer.session_id])} events, "
                f"not the {len(writer.acknowledged)} acknowledged in order (lost {lost[:5]}, {extra} twice)"
            )
    positions = [position for _, _, position in feed]
    if positions != sorted(set(positions)):
        found.append("the feed's positions are not strictly increasing")
    for follower in workload.followers:
        wanted = (
            feed
            if follower.session_id is None
            else [entry for entry in feed if entry[0] == follower.session_id]
        )
        if follower.received != wanted:
            ids = [event_id for _, event_id, _ in follower.received]
            found.append(
                f"{follower.name}: received {len(follower.received)} events ({len(ids) - len(set(ids))} twice), "
                f"the store holds {len(wanted)}"
            )
    return found
