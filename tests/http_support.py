"""A real HTTP server for the tests: ``create_app`` on uvicorn, on 127.0.0.1 and a free port,
in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from support import wait_until

from sqlitestream.http import ServerApp


class LiveServer:
    def __init__(self, app: ServerApp) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None
        outer = self

        class Server(uvicorn.Server):
            async def startup(self, sockets: Any = None) -> None:
                outer.loop = asyncio.get_running_loop()
                await super().startup(sockets)

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), what="uvicorn to start")
        assert self.server.started, "uvicorn did not start"

    def stop(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.app.shutdown)
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@contextmanager
def serving(app: ServerApp) -> Iterator[LiveServer]:
    server = LiveServer(app)
    server.start()
    try:
        yield server
    finally:
        server.stop()
