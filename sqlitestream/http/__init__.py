"""The HTTP server: a store served with the Durable Streams protocol (``create_app``).

Needs the ``http`` extra (``pip install 'sqlitestream[http]'``: Starlette and uvicorn).
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from sqlitestream.errors import MissingDependencyError

    raise MissingDependencyError(
        "the HTTP server needs the http extra: pip install 'sqlitestream[http]'"
    ) from exc

from sqlitestream.http.app import DEFAULT_MAX_BODY_BYTES, TOKEN_ENV, ServerApp, create_app

__all__ = ["DEFAULT_MAX_BODY_BYTES", "TOKEN_ENV", "ServerApp", "create_app"]
