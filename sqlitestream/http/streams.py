"""``/v1/stream/{name}``: the Durable Streams protocol on a store's byte streams
(:class:`~sqlitestream.bytestreams.ByteStreams`). Each store call runs on a worker thread and
returns before the response is sent, so no read or write transaction outlives it; live reads
wait on the store's wake-ups (:mod:`sqlitestream.http.live`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from sqlitestream.bytestreams import ByteStreams, StreamFork, StreamRead, StreamState, check_stream_name
from sqlitestream.errors import SqliteStreamError, ValidationError
from sqlitestream.http import protocol
from sqlitestream.http.errors import error_response, json_error
from sqlitestream.http.live import Feed, Follower, Registrations, SharedReads, Shutdown, Waiter

T = TypeVar("T")

STREAM_PREFIX = "/v1/stream/"
SSE_MAX_SECONDS = 60.0  # the protocol asks servers to end SSE responses about every minute


class BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class Limits:
    long_poll_timeout_s: float
    max_body_bytes: int


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused (:class:`BodyTooLarge`) past ``max_bytes``, before reading it
    all when ``Content-Length`` already says so."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > max_bytes:
            raise BodyTooLarge
        parts.append(part)
    return b"".join(parts)


def too_large(max_bytes: int) -> Response:
    return json_error(413, "payload_too_large", f"the request body is larger than {max_bytes} bytes")


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(function, *args, **kwargs)


def _state_headers(state: StreamState) -> dict[str, str]:
    headers = {"content-type": state.content_type, protocol.NEXT_OFFSET: state.next_offset}
    if state.closed:
        headers[protocol.CLOSED] = "true"
    return headers


class StreamRoutes:
    """The handlers; ``streams`` is None for a store without byte streams (501)."""

    def __init__(self, streams: ByteStreams | None, limits: Limits, shutdown: Shutdown) -> None:
        self._streams = streams
        self._limits = limits
        self._shutdown = shutdown
        self._reads = SharedReads()
        self._registrations = Registrations()
        self._feeds: dict[tuple[str, bool], _FeedEntry] = {}

    async def _read_after_wake(
        self, streams: ByteStreams, name: str, offset: str, wait: Waiter
    ) -> StreamRead:
        return await self._reads.read(
            (name, offset), wait.woken_at, lambda: call(streams.read_stream, name, offset=offset)
        )

    async def handle(self, request: Request) -> Response:
        streams = self._streams
        if streams is None:
            return json_error(501, "not_implemented", "this store has no byte streams")
        try:
            name = check_stream_name(request.path_params["name"])
            method = request.method
            if method == "GET":
                return await self._get(streams, request, name)
            if method == "HEAD":
                state = await call(streams.stream_state, name)
                headers = _state_headers(state)
                headers["cache-control"] = "no-store"
                if state.ttl_seconds is not None:
                    headers[protocol.TTL] = str(state.ttl_seconds)
                if state.expires_at is not None:
                    headers[protocol.EXPIRES_AT] = protocol.format_expires_at(state.expires_at)
                return Response(status_code=200, headers=headers)
            if method == "PUT":
                return await self._put(streams, request, name)
            if method == "POST":
                return await self._post(streams, request, name)
            if method == "DELETE":
                await call(streams.delete_stream, name)
                return Response(status_code=204)
            return json_error(405, "method_not_allowed", f"{method} is not allowed here")
        except BodyTooLarge:
            return too_large(self._limits.max_body_bytes)
        except SqliteStreamError as exc:
            return error_response(exc)

    async def _put(self, streams: ByteStreams, request: Request, name: str) -> Response:
        headers = request.headers
        ttl_text, expires_text = headers.get(protocol.TTL), headers.get(protocol.EXPIRES_AT)
        if ttl_text is not None and expires_text is not None:
            raise ValidationError(f"give {protocol.TTL} or {protocol.EXPIRES_AT}, not both")
        ttl = None if ttl_text is None else protocol.decimal(ttl_text, protocol.TTL)
        expires = None if expires_text is None else protocol.expires_at(expires_text)
        fork = _fork(request)
        body = await read_body(request, self._limits.max_body_bytes)
        result = await call(
            streams.create_stream,
            name,
            content_type=headers.get("content-type"),
            ttl_seconds=ttl,
            expires_at=expires,
            closed=protocol.is_true(headers.get(protocol.CLOSED)),
            data=body,
            fork=fork,
        )
        response_headers = _state_headers(result.state)
        if result.created:
            response_headers["location"] = str(request.url.replace(query=""))
        return Response(status_code=201 if result.created else 200, headers=response_headers)

    async def _post(self, streams: ByteStreams, request: Request, name: str) -> Response:
        headers = request.headers
        producer = protocol.producer(headers)
        body = await read_body(request, self._limits.max_body_bytes)
        result = await call(
            streams.append,
            name,
            body,
            content_type=headers.get("content-type"),
            close=protocol.is_true(headers.get(protocol.CLOSED)),
            stream_seq=headers.get(protocol.SEQ),
            producer=producer,
        )
        response_headers = _state_headers(result.state)
        del response_headers["content-type"]
        # 200 tells a producer its data was stored now; a duplicate, or a close without data, is 204.
        status = 200 if producer is not None and body and not result.duplicate else 204
        if producer is not None and result.producer_epoch is not None:
            response_headers[protocol.PRODUCER_EPOCH] = str(result.producer_epoch)
            response_headers[protocol.PRODUCER_SEQ] = str(result.producer_seq)
        return Response(status_code=status, headers=response_headers)

    async def _get(self, streams: ByteStreams, request: Request, name: str) -> Response:
        params = request.query_params
        offset = params.get("offset")
        live = params.get("live")
        if live is not None and live not in ("long-poll", "sse"):
            raise ValidationError(f"live must be long-poll or sse, got {live!r}")
        if live is not None and offset is None:
            raise ValidationError("live reads need an offset")
        offset = "-1" if offset is None else offset
        read = await call(streams.read_stream, name, offset=offset)
        if live == "sse":
            return self._sse(streams, name, read, params.get("cursor"))
        if live == "long-poll":
            return await self._long_poll(streams, name, read, params.get("cursor"))
        return _catch_up(request, read, now=offset == "now")

    async def _long_poll(
        self, streams: ByteStreams, name: str, read: StreamRead, client_cursor: str | None
    ) -> Response:
        if not read.has_data and not read.closed:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._limits.long_poll_timeout_s
            async with Waiter(
                self._registrations,
                name,
                lambda woken: streams.watch_stream(name, woken),
                self._shutdown,
                self._reads,
            ) as wait:
                read = await call(streams.read_stream, name, offset=read.next_offset)
                while not read.has_data and not read.closed and not wait.stopping:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    if await wait(remaining):
                        read = await self._read_after_wake(streams, name, read.next_offset, wait)
        if read.has_data:
            response = _catch_up(None, read, now=False)
            if not read.closed:
                response.headers[protocol.CURSOR] = protocol.cursor(client_cursor)
            return response
        headers = {
            protocol.NEXT_OFFSET: read.next_offset,
            protocol.UP_TO_DATE: "true",
            "cache-control": "no-store",
        }
        if read.closed:
            headers[protocol.CLOSED] = "true"
        else:
            headers[protocol.CURSOR] = protocol.cursor(client_cursor)
        return Response(status_code=204, headers=headers)

    def _sse(self, streams: ByteStreams, name: str, first: StreamRead, client_cursor: str | None) -> Response:
        encoded = protocol.sse_encoded(first.state.content_type)
        headers = {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
        }
        if encoded:
            headers[protocol.SSE_ENCODING] = "base64"

        async def follow(follower: Follower, write: Callable[[bytes], Awaitable[None]]) -> None:
            await self._follow(streams, name, first, encoded, follower, write)

        return SseResponse(headers, client_cursor, follow, self._shutdown)

    async def _follow(
        self,
        streams: ByteStreams,
        name: str,
        first: StreamRead,
        encoded: bool,
        follower: Follower,
        write: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """Catch up on its own from ``first``, then take the frames the stream's feed makes
        for all its followers at the tip; on its own again if it lags behind them."""
        key = (name, encoded)
        try:
            entry = await self._feed(streams, key)
        except SqliteStreamError:
            return  # deleted before its wake-ups were registered
        feed = entry.feed
        try:
            # Read again now that wake-ups are registered: nothing between is missed.
            offset = first.start_offset
            announce = True  # the first control event goes out even without data
            while not follower.ended:
                seen = feed.changes
                read = await call(streams.read_stream, name, offset=offset)
                if follower.ended:
                    return
                if read.has_data or announce or read.closed:
                    await write(sse_frame(read, follower.cursor, encoded))
                    announce = False
                if read.closed:
                    return
                offset = read.next_offset
                if not read.up_to_date:
                    continue
                feed.attach(follower, offset, seen)
                # Until it ends or lags, and then the frames it was given before that.
                while frames := await follower.frames():
                    for frame in frames:
                        await write(frame)
                offset = follower.offset
        except SqliteStreamError:
            return  # deleted or closed store mid-stream: the client reconnects and learns why
        finally:
            feed.detach(follower)
            self._release(key, entry)

    async def _feed(self, streams: ByteStreams, key: tuple[str, bool]) -> _FeedEntry:
        entry = self._feeds.get(key)
        if entry is None or (entry.joined.done() and entry.joined.exception() is not None):
            name, encoded = key

            def frame(page: StreamRead, cursor: str | None) -> bytes:
                return sse_frame(page, cursor, encoded)

            feed: Feed[StreamRead] = Feed(
                lambda offset: call(streams.read_stream, name, offset=offset), frame
            )
            joined = asyncio.ensure_future(
                self._registrations.join(name, lambda woken: streams.watch_stream(name, woken), feed)
            )
            entry = self._feeds[key] = _FeedEntry(feed, joined)
        entry.users += 1
        try:
            await asyncio.shield(entry.joined)
        except BaseException:
            self._release(key, entry)
            raise
        return entry

    def _release(self, key: tuple[str, bool], entry: _FeedEntry) -> None:
        entry.users -= 1
        if entry.users == 0:
            if self._feeds.get(key) is entry:
                del self._feeds[key]
            self._registrations.leave(key[0], entry.feed)


class _FeedEntry:
    """A stream's feed, the registration it is joining, and how many responses use it."""

    __slots__ = ("feed", "joined", "users")

    def __init__(self, feed: Feed[StreamRead], joined: asyncio.Future[None]) -> None:
        self.feed = feed
        self.joined = joined
        self.users = 0


def sse_frame(read: StreamRead, client_cursor: str | None, encoded: bool) -> bytes:
    """A read's data event (when it has data) and its control event, as one write."""
    frames = protocol.sse_data(read.body(), base64_encoded=encoded) if read.has_data else b""
    control: dict[str, object] = {"streamNextOffset": read.next_offset}
    if read.closed:
        control["streamClosed"] = True
        control["upToDate"] = True
    else:
        control["streamCursor"] = protocol.cursor(client_cursor)
        if read.up_to_date:
            control["upToDate"] = True
    return frames + protocol.sse_control(control)


async def sse_slices(shutdown: Shutdown) -> AsyncIterator[int]:
    """The milliseconds left of an SSE response, before each of its reads: the response ends
    (the iteration stops) after :data:`SSE_MAX_SECONDS`, or when the server shuts down."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SSE_MAX_SECONDS
    while not shutdown.stopping:
        remaining_ms = int((deadline - loop.time()) * 1000)
        if remaining_ms <= 0:
            return
        yield remaining_ms


class SseResponse(Response):
    """An SSE response written straight to the ASGI ``send``, without Starlette's
    ``StreamingResponse`` (its task group, cancel scopes and async generator per response):
    ``follow(follower, write)`` writes the events. The response ends when ``follow`` returns;
    ``follower`` is ended (:meth:`Follower.set`) when the client goes away, the server stops,
    or after :data:`SSE_MAX_SECONDS`. With the :class:`Feed`, this took a broadcast to 2,000
    followers of one stream from 100-190 ms of server CPU to 60-70 ms (docs/server.md), and
    sending its frames through :class:`_Writer` to 30-45 ms."""

    def __init__(
        self,
        headers: dict[str, str],
        client_cursor: str | None,
        follow: Callable[[Follower, Callable[[bytes], Awaitable[None]]], Awaitable[None]],
        shutdown: Shutdown,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self._cursor = client_cursor
        self._follow = follow
        self._shutdown = shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        write = _Writer(send)
        follower = Follower(self._cursor, write.now)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        hang_up = asyncio.ensure_future(_until_disconnect(receive, follower))
        timer = asyncio.get_running_loop().call_later(SSE_MAX_SECONDS, follower.set)
        self._shutdown.watch(follower)
        if self._shutdown.stopping:
            follower.set()
        try:
            await self._follow(follower, write)
            await write.finish()
        except OSError:
            pass  # the client went away (servers of ASGI 2.4 tell so by raising from send)
        finally:
            self._shutdown.unwatch(follower)
            timer.cancel()
            hang_up.cancel()
            write.cancel()


class _Writer:
    """An SSE response's body, written through the ASGI ``send``: ``await write(frame)`` from
    the response's task, or :meth:`now` from the :class:`Feed` broadcasting a frame, without
    waking the response's task: a task's wake-up (a future resolved, the task resumed, back to
    waiting) costs about as much as the socket write itself, and sent this way a broadcast to
    2,000 followers costs the server 30-45 ms of CPU instead of 45-75 ms (docs/server.md).

    :meth:`now` starts the ``send`` coroutine by hand: a server's ``send`` returns without
    waiting unless the socket is full, and then the rest of it runs in a task of its own,
    which the next write waits for, so frames go out in order."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._rest: asyncio.Future[None] | None = None

    def now(self, frame: bytes) -> bool:
        """True when ``frame`` was sent, or is on its way; False when it was not (the caller
        then queues it for :meth:`__call__`, which also raises what sending it raised)."""
        if self._rest is not None:
            return False
        steps = self._send(_body(frame)).__await__()
        try:
            awaited = steps.send(None)
        except StopIteration:
            return True
        except Exception:  # noqa: BLE001 - queued instead: the task's send raises it where it is handled
            return False
        self._rest = asyncio.ensure_future(_resume(steps, awaited))
        return True

    async def __call__(self, frame: bytes) -> None:
        await self._drained()
        await self._send(_body(frame))

    async def finish(self) -> None:
        await self._drained()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _drained(self) -> None:
        if self._rest is not None:
            rest, self._rest = self._rest, None
            await rest

    def cancel(self) -> None:
        """Stop a send still waiting (the response ends without it)."""
        rest = self._rest
        if rest is not None:
            if rest.done() and not rest.cancelled():
                rest.exception()  # the client went away meanwhile: nothing to report
            rest.cancel()


def _body(frame: bytes) -> Message:
    return {"type": "http.response.body", "body": frame, "more_body": True}


async def _resume(steps: Generator[Any, None, None], awaited: Any) -> None:
    """Run an awaitable's ``steps`` on from where they wait for ``awaited`` (what they yielded:
    a future of this loop, or None for a bare yield), as a task would."""
    try:
        while True:
            if awaited is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait((awaited,))  # done, without taking its result: the steps do
            awaited = steps.send(None)
    except StopIteration:
        return
    finally:
        steps.close()


async def _until_disconnect(receive: Receive, follower: Follower) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    follower.set()


def _catch_up(request: Request | None, read: StreamRead, *, now: bool) -> Response:
    headers = {"content-type": read.state.content_type, protocol.NEXT_OFFSET: read.next_offset}
    if read.up_to_date:
        headers[protocol.UP_TO_DATE] = "true"
    if read.closed:
        headers[protocol.CLOSED] = "true"
    if now:
        headers["cache-control"] = "no-store"
        return Response(read.body(), status_code=200, headers=headers)
    return cached_page(request, read.body(), headers, protocol.etag(read), has_data=read.has_data)


def cached_page(
    request: Request | None, body: bytes, headers: dict[str, str], tag: str, *, has_data: bool
) -> Response:
    """A catch-up page under its ETag: ``304`` when the client holds it already. A page with
    data never changes, so it may be cached; an empty page at the tail changes with the next
    append, so it may not."""
    headers["etag"] = tag
    headers["cache-control"] = "private, max-age=60, stale-while-revalidate=300" if has_data else "no-store"
    if request is not None and protocol.etag_matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers={k: v for k, v in headers.items() if k != "content-type"})
    return Response(body, status_code=200, headers=headers)


def _fork(request: Request) -> StreamFork | None:
    headers = request.headers
    source = headers.get(protocol.FORKED_FROM)
    offset = headers.get(protocol.FORK_OFFSET)
    sub_text = headers.get(protocol.FORK_SUB_OFFSET)
    if source is None:
        if offset is not None or sub_text is not None:
            raise ValidationError(
                f"{protocol.FORK_OFFSET} and {protocol.FORK_SUB_OFFSET} need {protocol.FORKED_FROM}"
            )
        return None
    sub = 0 if sub_text is None else protocol.decimal(sub_text, protocol.FORK_SUB_OFFSET)
    return StreamFork(source_name(request, source), offset, sub)


def source_name(request: Request, path: str) -> str:
    """The stream name in a ``Stream-Forked-From`` path (this server's URL of the source)."""
    path = unquote(path.split("?", 1)[0])
    prefix = request.scope.get("root_path", "") + STREAM_PREFIX
    if path.startswith(prefix):
        return path[len(prefix) :]
    if path.startswith(STREAM_PREFIX):
        return path[len(STREAM_PREFIX) :]
    return path.lstrip("/")
