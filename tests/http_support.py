"""A real HTTP server for the tests: ``create_app`` on uvicorn, on 127.0.0.1 and a free port,
in a background thread; and HTTP clients for it.

Starting and stopping uvicorn costs about 150 ms (its main loop and its shutdown each sleep
0.1 s), more than most tests take, so :func:`serving` keeps the servers it started and mounts
each new app on an idle one, driving the app's lifespan (startup, then shutdown: which ends the
app's open long-polls and SSE responses and releases its store) as uvicorn would.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from functools import cache
from typing import Any

import httpx
import uvicorn
from support import command_process, wait_until

from sqlitestream.http import ServerApp
from tools import forked


class LiveServer:
    """One uvicorn server; the app mounted on it answers its requests."""

    def __init__(self) -> None:
        self.app: ServerApp | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lifespan: _Lifespan | None = None
        outer = self

        class Server(uvicorn.Server):
            async def startup(self, sockets: Any = None) -> None:
                outer.loop = asyncio.get_running_loop()
                await super().startup(sockets)

        config = uvicorn.Config(
            self._dispatch, host="127.0.0.1", port=0, log_level="warning", lifespan="off", interface="asgi3"
        )
        self.server = Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), what="uvicorn to start")
        assert self.server.started, "uvicorn did not start"
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"

    async def _dispatch(self, scope: Any, receive: Any, send: Any) -> None:
        app = self.app
        assert app is not None, "a request reached a test server with no app mounted"
        await app(scope, receive, send)

    def _run(self, coroutine: Any, timeout: float = 30) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def mount(self, app: ServerApp) -> None:
        self.app = app
        self._lifespan = self._run(_Lifespan.start(app))

    def unmount(self) -> None:
        assert self._lifespan is not None
        self._run(self._lifespan.shut_down())
        self.app = self._lifespan = None


class _Lifespan:
    """An ASGI app's lifespan, driven the way a server drives it."""

    def __init__(self, app: ServerApp) -> None:
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[Any] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.ensure_future(app(scope, self._to_app.get, self._from_app.put))

    @classmethod
    async def start(cls, app: ServerApp) -> _Lifespan:
        lifespan = cls(app)
        await lifespan._step("startup")
        return lifespan

    async def shut_down(self) -> None:
        await self._step("shutdown")
        await self._task

    async def _step(self, name: str) -> None:
        await self._to_app.put({"type": f"lifespan.{name}"})
        reply = await self._from_app.get()
        assert reply["type"] == f"lifespan.{name}.complete", reply


_idle: list[LiveServer] = []
_idle_lock = threading.Lock()


@contextmanager
def serving(app: ServerApp) -> Iterator[LiveServer]:
    """``app`` served on a real uvicorn server on loopback, for the ``with`` block."""
    with _idle_lock:
        server = _idle.pop() if _idle else None
    server = server or LiveServer()
    server.mount(app)
    try:
        yield server
    finally:
        server.unmount()
        with _idle_lock:
            _idle.append(server)


@cache
def _tls() -> ssl.SSLContext:
    # httpx builds a certificate store for every client it makes (20-100 ms); one serves all.
    return ssl.create_default_context()


def http_client(base_url: str, **options: Any) -> httpx.Client:
    """An httpx client for ``base_url`` (the tests' servers: plain HTTP on loopback)."""
    return httpx.Client(base_url=base_url, verify=_tls(), **options)


def async_http_client(base_url: str, **options: Any) -> httpx.AsyncClient:
    """:func:`http_client` for asyncio."""
    return httpx.AsyncClient(base_url=base_url, verify=_tls(), **options)


@contextmanager
def serve_process(location: str, *options: str) -> Iterator[tuple[forked.Child, str]]:
    """``sqlitestream --db location serve --port 0 *options`` in another OS process, and its URL
    once it says it is serving; killed at the end if still running."""
    with command_process(["--db", location, "serve", "--port", "0", *options]) as process:
        line = process.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line + (
            process.stderr.read() if process.stderr else ""
        )
        yield process, line.split()[1]


def sse_data_until(chunks: Iterator[bytes], last_offset: str) -> bytes:
    """The data of the SSE events read from ``chunks`` until a control event says
    ``last_offset``."""
    buffer, data = b"", []
    for chunk in chunks:
        buffer += chunk
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            kind, _, payload = event.partition(b"\ndata:")
            if kind == b"event: data":
                data.append(payload)
            elif json.loads(payload)["streamNextOffset"] == last_offset:
                return b"".join(data)
    raise AssertionError("the response ended before the last offset")


def follow_stream(base_url: Any, path: str, offset: str, connected: Future[None], last: Future[str]) -> bytes:
    """Follow ``path`` by SSE from ``offset`` on a client of its own: set ``connected`` once
    the first control event is in, then return the data received until the offset ``last``
    gives."""
    with (
        http_client(base_url, timeout=30) as own,
        own.stream("GET", path, params={"offset": offset, "live": "sse"}) as response,
    ):
        chunks = response.iter_raw()
        first = next(chunks)
        assert first.startswith(b"event: control"), first
        connected.set_result(None)
        return sse_data_until(chunks, last.result(timeout=30))
