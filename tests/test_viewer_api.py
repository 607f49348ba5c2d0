"""The viewer's HTTP side: its pages and files, and the JSON endpoints the pages read
(``/v1/sessions``, ``/v1/runs``, ``/v1/export``), over HTTP from a real uvicorn server on
loopback (``client``: conftest.py's, on this module's ``store``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the viewer needs the http extra (starlette)")

import httpx
from http_support import http_client, serving

from sqlitestream import Event, InMemorySessionStore, Run, Session, SQLiteSessionStore
from sqlitestream.http import create_app

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteSessionStore]:
    with SQLiteSessionStore(tmp_path / "viewer.db") as opened:
        yield opened


def _session(store: SQLiteSessionStore, session_id: str, agent: str, status: str, minutes: int) -> None:
    moment = T0 + timedelta(minutes=minutes)
    store.save_session(
        Session(id=session_id, agent_id=agent, status=status, created_at=moment, updated_at=moment)
    )


def _events(store: SQLiteSessionStore, session_id: str, count: int, minutes: int) -> None:
    moment = T0 + timedelta(minutes=minutes)
    store.append_events(
        [
            Event(type="message_sent", session_id=session_id, timestamp=moment, data={"n": n})
            for n in range(count)
        ]
    )


def test_the_sessions_page_and_its_files_are_served_with_a_strict_content_policy(
    client: httpx.Client,
) -> None:
    for path, script in (("/", "static/sessions.js"), ("/session", "static/session.js")):
        page = client.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert f'src="{script}"' in page.text
        assert client.get("/" + script).status_code == 200
    css = client.get("/static/viewer.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_the_pages_load_nothing_from_another_origin() -> None:
    static = Path(__file__).resolve().parent.parent / "sqlitestream" / "http" / "static"
    for file in static.iterdir():
        text = file.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, file.name


def test_listing_has_every_field_newest_activity_first(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    _session(store, "old", "coder", "completed", 0)
    _session(store, "new", "reviewer", "active", 10)
    _session(store, "quiet", "coder", "active", 5)
    _events(store, "old", 3, 20)  # written to last: the most recent activity
    _events(store, "log-only", 2, 1)

    listing = client.get("/v1/sessions").json()

    assert [row["session_id"] for row in listing["sessions"]] == ["old", "new", "quiet", "log-only"]
    first = listing["sessions"][0]
    assert first == {
        "session_id": "old",
        "agent_id": "coder",
        "status": "completed",
        "event_count": 3,
        "latest_sequence": 3,
        "last_activity": (T0 + timedelta(minutes=20)).isoformat(),
        "created_at": T0.isoformat(),
        "parent_session_id": None,
    }
    log_only = listing["sessions"][3]
    assert (log_only["agent_id"], log_only["status"], log_only["event_count"]) == (None, None, 2)
    assert listing["total"] == 4
    assert listing["agents"] == ["coder", "reviewer"]


def test_listing_filters_by_status_agent_and_id(store: SQLiteSessionStore, client: httpx.Client) -> None:
    _session(store, "ses_a1", "coder", "active", 0)
    _session(store, "ses_b2", "coder", "failed", 1)
    _session(store, "SES_A3", "reviewer", "active", 2)

    def ids(**params: str) -> list[str]:
        response = client.get("/v1/sessions", params=params)
        assert response.status_code == 200
        return [row["session_id"] for row in response.json()["sessions"]]

    assert ids(status="active") == ["SES_A3", "ses_a1"]
    assert ids(agent="coder") == ["ses_b2", "ses_a1"]
    assert ids(status="active", agent="coder") == ["ses_a1"]
    assert ids(q="_a") == ["SES_A3", "ses_a1"]  # any case
    assert ids(id="ses_b2") == ["ses_b2"]
    assert ids(id="nope") == []
    limited = client.get("/v1/sessions", params={"limit": "1"}).json()
    assert (len(limited["sessions"]), limited["total"]) == (1, 3)


@pytest.mark.parametrize(
    ("params", "named"),
    [({"status": "sleeping"}, "status"), ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit")],
)
def test_bad_listing_parameters_are_a_400_naming_them(
    client: httpx.Client, params: dict[str, str], named: str
) -> None:
    response = client.get("/v1/sessions", params=params)
    assert response.status_code == 400
    assert named in response.json()["error"]["message"]


def test_an_unchanged_listing_is_a_304_and_a_change_a_new_etag(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    _session(store, "s1", "coder", "active", 0)
    first = client.get("/v1/sessions")
    tag = first.headers["etag"]
    assert client.get("/v1/sessions", headers={"if-none-match": tag}).status_code == 304
    _events(store, "s1", 1, 1)
    changed = client.get("/v1/sessions", headers={"if-none-match": tag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != tag
    assert changed.json()["sessions"][0]["latest_sequence"] == 1


def test_runs_lists_the_sessions_saved_runs(store: SQLiteSessionStore, client: httpx.Client) -> None:
    _session(store, "s1", "coder", "active", 0)
    run = Run(session_id="s1", id="r1", status="completed", token_usage={"input_tokens": 5}, started_at=T0)
    store.save_run(run)
    body = client.get("/v1/runs", params={"session_id": "s1"}).json()
    assert body == {"runs": [run.to_dict()]}
    assert client.get("/v1/runs", params={"session_id": "other"}).json() == {"runs": []}
    missing = client.get("/v1/runs")
    assert missing.status_code == 400 and "session_id" in missing.json()["error"]["message"]


def test_export_downloads_the_session_in_the_export_format(
    store: SQLiteSessionStore, client: httpx.Client
) -> None:
    _session(store, "a/b c", "coder", "active", 0)
    store.save_run(Run(session_id="a/b c", id="r1", started_at=T0))
    _events(store, "a/b c", 3, 1)
    _events(store, "other", 2, 1)

    response = client.get("/v1/export", params={"session_id": "a/b c"})

    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="a_b_c.jsonl"'
    expected = [
        json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        for record in store.export_records(["a/b c"])
    ]
    assert response.text == "\n".join(expected) + "\n"
    kinds = [json.loads(line)["kind"] for line in response.text.splitlines()]
    assert kinds == ["header", "session", "run", "event", "event", "event"]


def test_export_of_an_unknown_session_is_a_404(client: httpx.Client) -> None:
    response = client.get("/v1/export", params={"session_id": "nope"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_listing_works_on_a_store_without_admin_methods() -> None:
    with (
        InMemorySessionStore() as store,
        serving(create_app(store)) as live,
        http_client(live.url, timeout=30) as client,
    ):
        store.save_session(Session(id="s1", agent_id="coder"))
        store.append_event(Event(type="message_sent", session_id="s1"))
        row = client.get("/v1/sessions").json()["sessions"][0]
        assert (row["session_id"], row["event_count"], row["latest_sequence"]) == ("s1", 1, 1)


def test_the_installed_package_carries_the_viewer_files(tmp_path: Path) -> None:
    """From another directory the import resolves to the installed package (in CI, the wheel
    built by ``pip install .``), which must ship the pages, script and style sheet."""
    import os
    import subprocess
    import sys

    code = (
        "from importlib.resources import files\n"
        "static = files('sqlitestream.http') / 'static'\n"
        "names = ['index.html', 'session.html', 'common.js', 'sessions.js', 'session.js', 'viewer.css']\n"
        "print(all((static / name).is_file() for name in names))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_the_viewer_works_mounted_under_a_prefix(store: SQLiteSessionStore) -> None:
    """The pages use relative URLs, so the app can be mounted inside another ASGI app."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    _session(store, "s1", "coder", "active", 0)
    outer = Starlette(routes=[Mount("/tools", app=create_app(store))])
    # serving() takes any ASGI app; it is typed for the ServerApp most tests mount.
    with serving(outer) as live, http_client(live.url, timeout=30) as client:  # type: ignore[arg-type]
        page = client.get("/tools/")
        assert page.status_code == 200 and 'href="static/viewer.css"' in page.text
        assert client.get("/tools/static/viewer.css").status_code == 200
        assert client.get("/tools/session").status_code == 200
        assert client.get("/tools/v1/sessions").json()["sessions"][0]["session_id"] == "s1"
