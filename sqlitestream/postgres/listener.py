"""Cross-node wake-ups for the PostgreSQL store: ``LISTEN``/``NOTIFY`` plus a slow fallback poll.

Every append and delete sends a notification on the store's channel inside its own
transaction, so it is delivered exactly when the write commits (and never if it rolls back).
One thread per store object holds one listening connection; it turns each notification into
a wake-up (or, for a delete, a release) of the waiters on the named session in the in-process
:class:`WakeHub` (byte-stream changes: of the waiters on the named stream, in a second hub). Notifications are hints: a woken waiter re-runs its query.

Notifications can be lost: while the listening connection is down, or behind a connection
pooler in transaction mode that does not forward them. So while someone waits, the thread also
reads the waited-on sessions' latest sequences every ``fallback_interval_s`` and wakes those
that moved (releases those that vanished). When the listener cannot connect, it wakes every
waiter at that interval instead, and they poll through the store's pool.
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlitestream._core.waiting import FEED, WakeHub
from sqlitestream.postgres.connection import translate

if TYPE_CHECKING:
    from sqlitestream.postgres.connection import Connection

__all__ = ["APPEND_PAYLOAD_SQL", "STREAM_KIND", "NotificationListener", "channel_for", "payload"]

_log = logging.getLogger("sqlitestream.postgres")

_MAX_PLAIN_ID_BYTES = 1000
"""Session ids up to this many UTF-8 bytes travel as they are; longer ones as a SHA-256, since
a notification payload must stay under 8000 bytes."""

APPEND_PAYLOAD_SQL = (
    "CASE WHEN octet_length(session_id) <= 1000 THEN 'a:' || session_id "
    "ELSE 'a#' || encode(sha256(convert_to(session_id, 'UTF8')), 'hex') END"
)
"""The append payload computed in SQL from a ``session_id`` column (same rule as
:func:`payload`), so a batch notifies once per session without another round trip."""

_RECONNECT_BACKOFF_S = (0.05, 0.2, 1.0, 5.0)

STREAM_KIND = "s"
"""The payload kind of a byte-stream change (``s:name``); its waiters are in the streams hub."""

_Known = dict[tuple[str, str], object]
"""What the last fallback poll saw: ``("s", session id)`` -> latest sequence, ``("b", stream
name)`` -> (generation, version); None for absent."""


def _readable(fds: list[int], timeout_s: float) -> list[int]:
    """The descriptors of ``fds`` ready to read within ``timeout_s``. ``poll``, not ``select``:
    a server process holding 2,000 follower sockets gives a listener started then descriptors
    past 1,023, which ``select`` refuses (the thread died, and with it every cross-node wake-up
    of that process)."""
    if not hasattr(select, "poll"):  # Windows: select has no descriptor ceiling there
        return select.select(fds, [], [], timeout_s)[0]
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(timeout_s * 1000)]


def channel_for(schema: str) -> str:
    return f"sqlitestream:{schema}"


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def payload(kind: str, session_id: str) -> str:
    """The notification text: ``a`` (append), ``d`` (delete) or ``s`` (a byte stream's
    change), then ``:id`` or ``#sha256``."""
    if len(session_id.encode("utf-8")) <= _MAX_PLAIN_ID_BYTES:
        return f"{kind}:{session_id}"
    return f"{kind}#{_digest(session_id)}"


class NotificationListener:
    """The listening thread of one store, started by its first long-poll and kept until close."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        schema: str,
        hub: WakeHub,
        *,
        is_own_backend: Callable[[int], bool],
        fallback_interval_s: float,
        streams_hub: WakeHub | None = None,
    ) -> None:
        self._connect = connect
        self._schema = schema
        self._channel = channel_for(schema)
        self._hub = hub
        self._streams_hub = WakeHub() if streams_hub is None else streams_hub
        self._is_own_backend = is_own_backend
        self._interval_s = fallback_interval_s
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping = False
        self._wake_r, self._wake_w = -1, -1

    def ensure_started(self, timeout_s: float) -> None:
        """Start the thread if needed and wait until its first ``LISTEN`` succeeded or failed,
        so a waiter that queries after this call cannot miss a notification sent after it."""
        if self._ready.is_set():
            return
        with self._lock:
            if self._stopping:
                return  # the store is closing; the waiter will see StoreClosedError
            if self._thread is None:
                try:
                    self._wake_r, self._wake_w = os.pipe()
                except OSError as exc:
                    raise translate(exc, "wait for events") from exc
                self._thread = threading.Thread(
                    target=self._run, name=f"sqlitestream-listen-{self._schema}", daemon=True
                )
                self._thread.start()
        self._ready.wait(timeout_s)

    def stop(self) -> None:
        """Stop the thread and close its connection; waits for it to finish."""
        with self._lock:
            self._stopping = True
            thread = self._thread
            # Not alive yet: its start() was interrupted (Ctrl-C in the waiting thread) before
            # it ran. It cannot be joined, and if it runs at all, _run sees the stop first.
            running = thread is not None and thread.is_alive()
        self._ready.set()  # release callers still waiting in ensure_started
        if thread is None:
            return
        if running:
            os.write(self._wake_w, b"x")
            thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # The thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        with self._lock:
            if self._stopping:
                return
        conn: Connection | None = None
        failures = 0
        known: _Known = {}
        next_check = time.monotonic() + self._interval_s
        try:
            while True:
                if conn is None:
                    conn = self._listen()
                    if conn is None:
                        failures += 1
                    elif failures:
                        # Notifications sent while we were disconnected are gone: re-query all.
                        _log.info("sqlitestream: LISTEN connection re-established")
                        self._wake_all()
                        failures = 0
                    self._ready.set()
                now = time.monotonic()
                timeout = max(0.0, next_check - now)
                if conn is None:
                    backoff = _RECONNECT_BACKOFF_S[min(failures, len(_RECONNECT_BACKOFF_S)) - 1]
                    timeout = min(timeout, backoff)
                fds = [self._wake_r] if conn is None else [self._wake_r, conn.fileno()]
                readable = _readable(fds, timeout)
                if self._wake_r in readable:
                    return
                if conn is not None and readable:
                    conn = self._drain(conn)
                    failures = failures if conn is not None else 1
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self._interval_s
                    if self._hub.has_waiters() or self._streams_hub.has_waiters():
                        had_connection = conn is not None
                        conn, known = self._fallback(conn, known)
                        failures = 1 if had_connection and conn is None else failures
        finally:
            if conn is not None:
                conn.close()

    def _listen(self) -> Connection | None:
        conn: Connection | None = None
        try:
            conn = self._connect()
            conn.execute(f'LISTEN "{self._channel}"')
            return conn
        except Exception as exc:  # noqa: BLE001 - a background thread: log, retry later, never raise
            _log.warning("sqlitestream: cannot LISTEN for wake-ups (%s); polling instead", exc)
            if conn is not None:
                conn.close()
            return None

    def _drain(self, conn: Connection) -> Connection | None:
        """Dispatch the notifications that arrived; None if the connection broke."""
        try:
            for note in conn.notifies(timeout=0):
                if not self._is_own_backend(note.pid):  # our own appends woke waiters already
                    self._dispatch(note.payload)
            return conn
        except Exception as exc:  # noqa: BLE001 - a background thread: reconnect, never raise
            _log.warning("sqlitestream: lost the LISTEN connection (%s); reconnecting", exc)
            conn.close()
            self._wake_all()
            return None

    def _wake_all(self) -> None:
        self._hub.wake(self._hub.sessions())
        self._streams_hub.wake(self._streams_hub.sessions())

    def _dispatch(self, text: str) -> None:
        kind, marker, rest = text[:1], text[1:2], text[2:]
        hub = self._streams_hub if kind == STREAM_KIND else self._hub
        if marker == ":":
            targets = [rest]
        elif marker == "#":
            targets = [sid for sid in hub.sessions() if _digest(sid) == rest]
        else:
            return
        if kind == STREAM_KIND:
            self._streams_hub.wake(targets)
        elif kind == "d":
            for session_id in targets:
                self._hub.release(session_id)
        else:
            self._hub.wake(targets)

    def _fallback(self, conn: Connection | None, known: _Known) -> tuple[Connection | None, _Known]:
        """Wake waited-on sessions whose latest sequence moved since the last check, and
        waited-on byte streams whose version or generation changed (and, the first time one
        is seen, wake it once: a notification may already be lost)."""
        sessions = self._hub.sessions()
        names = self._streams_hub.sessions()
        if conn is None:
            self._wake_all()
            return None, {}
        try:
            rows: list[Any] = conn.execute(
                f'SELECT session_id, latest_seq FROM "{self._schema}".streams WHERE session_id = ANY(%s)',
                (sessions,),
            ).fetchall()
            if FEED in sessions:  # the feed's tip: its last position
                rows += [
                    (FEED, value)
                    for (value,) in conn.execute(
                        f'SELECT last_position FROM "{self._schema}".feed'
                    ).fetchall()
                ]
            tips: list[Any] = (
                conn.execute(
                    f'SELECT name, id, version FROM "{self._schema}".ds_streams WHERE name = ANY(%s)',
                    (names,),
                ).fetchall()
                if names
                else []
            )
        except Exception as exc:  # noqa: BLE001 - a background thread: wake all, never raise
            _log.warning("sqlitestream: fallback poll failed (%s)", exc)
            self._wake_all()
            if conn.broken or conn.closed:
                conn.close()
                return None, {}
            return conn, {}
        latest: dict[str, int | None] = {str(row[0]): int(row[1]) for row in rows}
        for session_id in sessions:
            now = latest.get(session_id)
            if ("s", session_id) in known and known["s", session_id] == now:
                continue
            if now is None and known.get(("s", session_id)) is not None:
                self._hub.release(session_id)  # deleted, and the notification was lost
            else:
                self._hub.wake([session_id])
        versions: dict[str, object] = {str(row[0]): (int(row[1]), int(row[2])) for row in tips}
        moved = [name for name in names if ("b", name) not in known or known["b", name] != versions.get(name)]
        self._streams_hub.wake(moved)
        seen: _Known = {("s", session_id): latest.get(session_id) for session_id in sessions}
        seen.update({("b", name): versions.get(name) for name in names})
        # Notifications read from the socket during the query wait in psycopg's backlog.
        return self._drain(conn), seen
