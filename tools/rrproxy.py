"""``python -m tools.rrproxy --port P URL...``: a small round-robin HTTP proxy, each request to
the next of the given servers (no stickiness: what the conformance run over several ``serve``
nodes and the two-node benchmark put in front of them, like a load balancer would). Bodies
stream both ways, so SSE and long-polls pass through as they are; no timeout of its own."""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection, never forwarded.
_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"}
)


def create_proxy(upstreams: list[str]) -> Starlette:
    """The proxy app: request ``n`` goes to ``upstreams[n % len(upstreams)]``."""
    turns = itertools.cycle(upstreams)
    client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=None))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    async def forward(request: Request) -> Response:
        target = next(turns).rstrip("/") + request.url.path
        if request.url.query:
            target += "?" + request.url.query
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
        upstream = await client.send(
            client.build_request(request.method, target, headers=headers, content=await request.body()),
            stream=True,
        )
        reply = [(k, v) for k, v in upstream.headers.multi_items() if k.lower() not in _HOP]
        response = StreamingResponse(
            upstream.aiter_raw(), status_code=upstream.status_code, background=BackgroundTask(upstream.aclose)
        )
        response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply]
        return response

    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("upstreams", nargs="+", help="the servers' base URLs")
    args = parser.parse_args(argv)
    config = uvicorn.Config(create_proxy(args.upstreams), host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    print(f"proxying http://{args.host}:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
