"""``sqlitestream serve``: the store over HTTP (the Durable Streams protocol), on uvicorn."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

from sqlitestream.cli.common import db_option, open_store

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (a name is resolved, every address must be
    loopback)."""
    # Imported here: every CLI command loads this module, and these two cost it ~5 ms.
    import ipaddress
    import socket

    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(str(address)).is_loopback for address in addresses)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="The port (0: any free one).",
)
@click.option(
    "--long-poll-timeout-ms",
    type=click.IntRange(min=0),
    default=20000,
    show_default=True,
    metavar="MS",
    help="How long a long-poll waits for data before answering 204.",
)
@click.option(
    "--token",
    envvar="SQLITESTREAM_TOKEN",
    show_envvar=True,
    default=None,
    metavar="TOKEN",
    help="Require 'Authorization: Bearer TOKEN' on every request.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow listening on a non-loopback address without --token (anyone who reaches it may "
    "read and write every stream).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="An origin browsers may read from (repeatable; '*' for any). Default: none.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="The largest request body (default 16 MiB); larger ones get 413.",
)
@click.option("--allow-session-delete", is_flag=True, help="Let DELETE /v1/sessions/ID delete a session.")
@db_option
def serve(
    host: str,
    port: int,
    long_poll_timeout_ms: int,
    token: str | None,
    insecure: bool,
    cors_origins: tuple[str, ...],
    max_body_bytes: int | None,
    allow_session_delete: bool,
) -> None:
    """Serve the store over HTTP with the Durable Streams protocol: byte streams at
    /v1/stream/NAME, each session at /v1/sessions/ID (JSON, followable by long-poll or SSE),
    the store-wide feed at /v1/feed (the same, every session in commit order), and the session
    viewer for a browser at / (see docs/viewer.md).

    Prints one line with the URL once it accepts connections; Ctrl-C or SIGTERM stops it,
    ending open long-polls and SSE responses. Creates the store if needed.

    \b
    Example:
      sqlitestream --db events.db serve --port 8000
      curl 'http://127.0.0.1:8000/v1/sessions/s1?offset=-1'
    """
    try:
        import uvicorn

        from sqlitestream.http import DEFAULT_MAX_BODY_BYTES, create_app
    except ImportError:
        raise click.ClickException("serve needs the http extra: pip install 'sqlitestream[http]'") from None
    if not is_loopback(host) and token is None and not insecure:
        raise click.UsageError(
            f"refusing to listen on {host}, which is not a loopback address, without --token "
            "(or $SQLITESTREAM_TOKEN); give --insecure to do it anyway"
        )
    store = open_store(readonly=False, create=True)
    app = create_app(
        store,
        long_poll_timeout_ms=long_poll_timeout_ms,
        token=token,
        cors_origins=cors_origins,
        max_body_bytes=DEFAULT_MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes,
        allow_session_delete=allow_session_delete,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
        # Longer than clients keep idle connections (node's fetch: 4 s), so a client never
        # reuses a connection at the moment the server closes it ("other side closed").
        timeout_keep_alive=30,
        server_header=False,
        # The protocol is plain HTTP: no WebSocket upgrade to accept, nor its libraries to load.
        ws="none",
    )
    server = _Server(config, app)
    server.run()
    if server.failed_start:
        raise click.ClickException(f"could not listen on {host}:{port}")


class _Server:
    """uvicorn's server, which prints the URL once listening and ends live responses as soon
    as it is told to stop (uvicorn itself would wait for them to finish)."""

    def __init__(self, config: Any, app: Any) -> None:
        import uvicorn

        outer = self

        class Server(uvicorn.Server):
            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                if self.should_exit:
                    outer.failed_start = True
                    return
                bound = self.servers[0].sockets[0].getsockname()
                address = bound[0] if ":" not in bound[0] else f"[{bound[0]}]"
                click.echo(f"serving http://{address}:{bound[1]}")
                sys.stdout.flush()

            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                super().handle_exit(sig, frame)
                loop = outer.loop
                if loop is not None:
                    loop.call_soon_threadsafe(app.shutdown)

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                # uvicorn re-raises the signal after its shutdown, which would end the process
                # before the store is closed; a stop by signal is a normal, clean exit here.
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                previous = {
                    sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
                }
                try:
                    yield
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)

            async def serve(self, sockets: Any = None) -> None:
                import asyncio

                outer.loop = asyncio.get_running_loop()
                await super().serve(sockets)

        self.failed_start = False
        self.loop: Any = None
        self._server = Server(config)

    def run(self) -> None:
        self._server.run()
