"""A server started with a token, over real HTTP: what is open without it (the viewer's pages,
its sign-in), the token exchanged for an HttpOnly cookie, and what that cookie may do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from http_support import http_client, serving

from sqlitestream import Event, SQLiteSessionStore
from sqlitestream.http import create_app

TOKEN = "s3cret-t0ken-value"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    with SQLiteSessionStore(tmp_path / "store.db") as store:
        store.append_event(Event("message_sent", "s1"))
        with serving(create_app(store, token=TOKEN)) as live, http_client(live.url) as client:
            yield client


def _sign_in(client: httpx.Client, token: str = TOKEN) -> httpx.Response:
    return client.post("/v1/auth", json={"token": token})


def test_the_pages_and_their_files_are_open_but_carry_no_data(client: httpx.Client) -> None:
    for path in ("/", "/session", "/static/common.js", "/static/viewer.css"):
        assert client.get(path).status_code == 200, path
    for path in (
        "/v1/sessions",
        "/v1/sessions/s1?offset=-1",
        "/v1/runs?session_id=s1",
        "/v1/export?session_id=s1",
    ):
        assert client.get(path).status_code == 401, path
    assert client.get("/v1/auth").json() == {"token_required": True, "signed_in": False}


def test_signing_in_sets_an_httponly_strict_cookie_that_is_not_the_token(client: httpx.Client) -> None:
    response = _sign_in(client)
    assert response.status_code == 204
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie and "Secure" not in cookie  # plain HTTP on loopback
    assert client.get("/v1/auth").json() == {"token_required": True, "signed_in": True}
    page = client.get("/v1/sessions/s1", params={"offset": "-1"})
    assert page.status_code == 200 and page.json()[0]["type"] == "message_sent"
    assert client.get("/v1/sessions").status_code == 200


def test_a_wrong_token_or_a_form_post_sets_no_cookie(client: httpx.Client) -> None:
    wrong = _sign_in(client, "guess")
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers and "guess" not in wrong.text
    form = client.post("/v1/auth", data={"token": TOKEN})  # what a cross-site form could send
    assert form.status_code == 400 and "set-cookie" not in form.headers
    assert client.get("/v1/sessions").status_code == 401


def test_the_cookie_reads_but_never_writes(client: httpx.Client) -> None:
    _sign_in(client)
    assert client.post("/v1/sessions/s1", json={"type": "message_sent"}).status_code == 401
    assert client.put("/v1/stream/a").status_code == 401
    bearer = {"authorization": f"Bearer {TOKEN}"}
    assert client.post("/v1/sessions/s1", json={"type": "message_sent"}, headers=bearer).status_code == 204


def test_a_token_in_the_url_is_not_accepted(client: httpx.Client) -> None:
    assert client.get("/v1/sessions", params={"token": TOKEN}).status_code == 401


def test_signing_out_clears_the_cookie(client: httpx.Client) -> None:
    _sign_in(client)
    assert client.delete("/v1/auth").status_code == 204
    assert client.get("/v1/sessions").status_code == 401


def test_without_a_token_there_is_nothing_to_sign_in_to(tmp_path: Path) -> None:
    with (
        SQLiteSessionStore(tmp_path / "store.db") as store,
        serving(create_app(store)) as live,
        http_client(live.url) as client,
    ):
        assert client.get("/v1/auth").json() == {"token_required": False, "signed_in": True}
        assert _sign_in(client, "anything").status_code == 404
