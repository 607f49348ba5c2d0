"""``create_app``: the ASGI application (Starlette) serving a store over HTTP with the Durable
Streams protocol: byte streams at ``/v1/stream/{name}``, every session at
``/v1/sessions/{session_id}`` and the store-wide feed at ``/v1/feed``.

Every response, errors included, carries ``X-Content-Type-Options: nosniff`` and
``Cross-Origin-Resource-Policy: cross-origin``. With a token, every request but a CORS
preflight, the viewer's pages and its sign-in needs ``Authorization: Bearer <token>`` (401
otherwise), or for reads the viewer's cookie (:mod:`sqlitestream.http.auth`). CORS answers only the
origins given. Bodies beyond ``max_body_bytes`` get 413 without being read to their end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sqlitestream.aio import AsyncStore
from sqlitestream.bytestreams import ByteStreams
from sqlitestream.errors import ValidationError
from sqlitestream.http import protocol, viewer
from sqlitestream.http.auth import AUTH_PATH, Policy, sign_in, unauthorized
from sqlitestream.http.errors import error_response
from sqlitestream.http.feed import FEED_PATH, FeedRoutes
from sqlitestream.http.live import Shutdown
from sqlitestream.http.sessions import SessionRoutes
from sqlitestream.http.streams import Limits, StreamRoutes
from sqlitestream.locations import open_store
from sqlitestream.store import SessionStore

__all__ = ["DEFAULT_MAX_BODY_BYTES", "TOKEN_ENV", "ServerApp", "create_app"]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest request body accepted by default (16 MiB); larger ones get 413."""
TOKEN_ENV = "SQLITESTREAM_TOKEN"
"""The environment variable ``sqlitestream serve`` reads the bearer token from."""

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-resource-policy", b"cross-origin"),
]
_METHODS = "GET, HEAD, PUT, POST, DELETE, OPTIONS"


class ServerApp:
    """The ASGI application returned by :func:`create_app`: call it as any ASGI app. Its
    :meth:`shutdown` ends open long-polls and SSE responses (``sqlitestream serve`` calls it
    on SIGINT and SIGTERM, before the server waits for connections to close)."""

    def __init__(self, app: ASGIApp, policy: Policy, shutdown: Shutdown) -> None:
        self._app = app
        self._policy = policy
        self._shutdown = shutdown

    def shutdown(self) -> None:
        """End every live response now (call in the event loop's thread)."""
        self._shutdown.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        origin = headers.get("origin")
        allowed = origin is not None and ("*" in self._policy.origins or origin in self._policy.origins)
        extra = list(_SECURITY_HEADERS)
        if allowed:
            assert origin is not None
            extra += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin"),
                (b"access-control-expose-headers", ", ".join(protocol.EXPOSED_HEADERS).encode()),
            ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if scope["method"] == "OPTIONS":
            await _preflight(headers, send_with_headers)
            return
        if not _path_is_utf8(scope):
            refused = ValidationError("the request path is not UTF-8 once its %-escapes are decoded")
            await error_response(refused)(scope, receive, send_with_headers)
            return
        root = scope.get("root_path") or ""
        path = scope["path"][len(root) :] if root and scope["path"].startswith(root) else scope["path"]
        if path == AUTH_PATH:
            await sign_in(self._policy, scope, receive, send_with_headers, headers)
            return
        if not self._policy.allows(scope["method"], path, headers):
            await unauthorized()(scope, receive, send_with_headers)
            return
        await self._app(scope, receive, send_with_headers)


def _path_is_utf8(scope: Scope) -> bool:
    """Whether the path's %-escapes decode to UTF-8. ASGI servers decode the others to
    replacement characters, which would make every such name (``%FF``, ``%FE``) the same
    session or stream."""
    raw = scope.get("raw_path")
    if raw is None:
        return True
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _preflight(headers: dict[str, str], send: Send) -> None:
    """A CORS preflight: the methods and headers allowed. Without an allowed origin the
    browser still refuses the request (no ``Access-Control-Allow-Origin``)."""
    requested = headers.get("access-control-request-headers", "")
    allow_headers = requested or "content-type, authorization, if-none-match"
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [
                (b"access-control-allow-methods", _METHODS.encode()),
                (b"access-control-allow-headers", allow_headers.encode("latin-1")),
                (b"access-control-max-age", b"600"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def _whole(value: object, name: str, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise ValidationError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def create_app(
    store_or_location: SessionStore | str | os.PathLike[str],
    *,
    long_poll_timeout_ms: int = 20000,
    token: str | None = None,
    cors_origins: Iterable[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    allow_session_delete: bool = False,
) -> ServerApp:
    """The ASGI app serving ``store_or_location`` (a store, which stays yours to close, or a
    location for :func:`~sqlitestream.open_store`, opened now and closed when the app's
    lifespan ends).

    Args:
        long_poll_timeout_ms: how long a long-poll waits for data before its 204.
        token: when set, every request needs ``Authorization: Bearer <token>`` (reads may
            carry the cookie the viewer gets from ``POST /v1/auth`` instead).
        cors_origins: origins allowed to read cross-origin (``"*"``: any).
        max_body_bytes: the largest request body (413 beyond it).
        allow_session_delete: let ``DELETE /v1/sessions/{id}`` delete a session (refused
            with 405 otherwise).
    """
    timeout = _whole(long_poll_timeout_ms, "long_poll_timeout_ms", 0)
    max_body = _whole(max_body_bytes, "max_body_bytes", 1)
    if token is not None and (type(token) is not str or not token):
        raise ValidationError("token must be a non-empty string")
    origins = frozenset(cors_origins)
    if isinstance(cors_origins, str) or not all(type(origin) is str for origin in origins):
        raise ValidationError("cors_origins must be an iterable of origin strings")
    if isinstance(store_or_location, SessionStore):
        store, owned = store_or_location, False
    else:
        store, owned = open_store(store_or_location), True
    byte_streams = getattr(store, "byte_streams", None)
    streams = byte_streams() if callable(byte_streams) else None
    if streams is not None and not isinstance(streams, ByteStreams):
        streams = None
    shutdown = Shutdown()
    limits = Limits(long_poll_timeout_s=timeout / 1000.0, max_body_bytes=max_body)
    stream_routes = StreamRoutes(streams, limits, shutdown)
    async_store = AsyncStore(store)
    session_routes = SessionRoutes(async_store, limits, shutdown, allow_delete=allow_session_delete)
    feed_routes = FeedRoutes(async_store, limits, shutdown)
    methods = ["GET", "HEAD", "PUT", "POST", "DELETE"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            shutdown.stop()
            await async_store.aclose()
            if owned:
                store.close()

    starlette = Starlette(
        routes=[
            Route("/v1/stream/{name:path}", stream_routes.handle, methods=methods),
            Route("/v1/sessions/{session_id:path}", session_routes.handle, methods=methods),
            Route(FEED_PATH, feed_routes.handle, methods=methods),
            *viewer.routes(async_store),
        ],
        lifespan=lifespan,
    )
    policy = Policy(None if token is None else token.encode("utf-8"), origins)
    return ServerApp(starlette, policy, shutdown)
