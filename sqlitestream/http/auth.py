"""Who may call a server started with a token, and how a browser signs in.

Every request needs ``Authorization: Bearer <token>``, except:

- the viewer's pages and static files (``/``, ``/session``, ``/static/...``): they carry no
  data, and a browser cannot send a header when it opens a page;
- ``/v1/auth``, where the viewer exchanges the token for a cookie: ``GET`` says whether a token
  is required and whether this request is signed in, ``POST`` with ``{"token": "..."}`` (JSON,
  so a cross-site form cannot post it) sets the cookie, ``DELETE`` clears it;
- reads (``GET``, ``HEAD``) that carry the cookie instead of the header, which is what lets a
  page's ``fetch`` and ``EventSource`` through. Writes always need the header: the cookie is
  sent by the browser on its own, and a credential that goes along by itself should not be able
  to change anything.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's request
carries it), ``Secure`` over HTTPS, and lasts until the browser closes. Its value is an HMAC of
the token, so the token itself is never stored in the browser, and changing the token signs
every browser out. The token goes in a request body or header only, never in a URL (URLs end
up in logs and histories).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import orjson
from starlette.requests import cookie_parser
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sqlitestream.http.errors import json_error

AUTH_PATH = "/v1/auth"
COOKIE = "sqlitestream_auth"
_MAX_SIGN_IN_BYTES = 4096
_OPEN_PAGES = frozenset({"/", "/session"})
_READS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Policy:
    token: bytes | None
    origins: frozenset[str]

    @property
    def cookie_value(self) -> str | None:
        if self.token is None:
            return None
        return hmac.new(self.token, b"sqlitestream viewer cookie v1", hashlib.sha256).hexdigest()

    def allows(self, method: str, path: str, headers: dict[str, str]) -> bool:
        """Whether a request (``path`` below the app's root) may go on to the app."""
        if method in _READS and (path in _OPEN_PAGES or path.startswith("/static/")):
            return True
        return self.signed_in(method, headers)

    def signed_in(self, method: str, headers: dict[str, str]) -> bool:
        """Whether the request carries the token (or, for a read, the cookie)."""
        if self.token is None or _bearer_matches(headers.get("authorization"), self.token):
            return True
        return method in _READS and self._cookie_matches(headers.get("cookie"))

    def _cookie_matches(self, header: str | None) -> bool:
        expected = self.cookie_value
        if header is None or expected is None:
            return False
        given = cookie_parser(header).get(COOKIE)
        return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _bearer_matches(header: str | None, token: bytes) -> bool:
    if header is None or not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode("utf-8", errors="replace"), token)


def unauthorized() -> Response:
    response = json_error(401, "unauthorized", "a valid bearer token is required")
    response.headers["www-authenticate"] = "Bearer"
    return response


async def sign_in(
    policy: Policy, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
) -> None:
    """``/v1/auth``: the viewer's sign-in (see the module docs)."""
    method = scope["method"]
    if method in _READS:
        body = {"token_required": policy.token is not None, "signed_in": policy.signed_in("GET", headers)}
        response = Response(
            orjson.dumps(body), media_type="application/json", headers={"cache-control": "no-store"}
        )
    elif method == "DELETE":
        response = Response(status_code=204, headers={"cache-control": "no-store"})
        response.set_cookie(COOKIE, "", max_age=0, path=_cookie_path(scope), httponly=True, samesite="strict")
    elif method == "POST":
        response = await _exchange(policy, scope, receive, headers)
    else:
        response = json_error(405, "method_not_allowed", "sign in with POST, sign out with DELETE")
    await response(scope, receive, send)


async def _exchange(policy: Policy, scope: Scope, receive: Receive, headers: dict[str, str]) -> Response:
    if policy.token is None or policy.cookie_value is None:
        return json_error(404, "not_found", "this server takes no token")
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return json_error(400, "invalid_request", 'sign in with a JSON body: {"token": "..."}')
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return json_error(400, "invalid_request", "the request ended early")
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > _MAX_SIGN_IN_BYTES:
            return json_error(413, "payload_too_large", "the sign-in body is too large")
    try:
        given = orjson.loads(body).get("token")
    except (orjson.JSONDecodeError, AttributeError):
        given = None
    if not isinstance(given, str) or not hmac.compare_digest(given.encode("utf-8", "replace"), policy.token):
        return unauthorized()
    response = Response(status_code=204, headers={"cache-control": "no-store"})
    response.set_cookie(
        COOKIE,
        policy.cookie_value,
        path=_cookie_path(scope),
        httponly=True,
        samesite="strict",
        secure=scope.get("scheme") == "https",
    )
    return response


def _cookie_path(scope: Scope) -> str:
    return str(scope.get("root_path") or "") or "/"
