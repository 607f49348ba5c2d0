"""The read connections of a SQLite file store: a small pool that lends one connection per
read, so readers never wait for the writer (WAL) and thousands of long-polling threads share a
bounded number of connections (each holds file descriptors and a page cache)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import apsw

from sqlitestream.errors import StoreClosedError
from sqlitestream.sqlite.connection import translate, translating

MAX_READERS = 16
"""Read connections a store keeps at most."""


class ReaderPool:
    """Read connections opened on demand by ``open_reader``, at most :data:`MAX_READERS`;
    a borrower beyond that waits for one to come back."""

    def __init__(self, open_reader: Callable[[], apsw.Connection], path: str) -> None:
        self._open_reader = open_reader
        self._path = path
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)
        self._idle: list[apsw.Connection] = []
        self._count = 0  # open, idle or lent
        self._closed = False

    def adopt(self, conn: apsw.Connection) -> None:
        """Take an already open read connection into the pool (a read-only store's first)."""
        with self._lock:
            self._idle.append(conn)
            self._count += 1

    def fetch(self, action: str, sql: str, bindings: tuple[Any, ...] = ()) -> list[Any]:
        """All rows of one query: the path of every page read and latest-sequence read."""
        conn: apsw.Connection | None = None
        try:
            conn = self._borrow()
            return conn.execute(sql, bindings).fetchall()
        except apsw.Error as exc:
            raise translate(exc, action) from exc
        finally:
            if conn is not None:
                self._give_back(conn)

    @contextlib.contextmanager
    def reading(self, action: str) -> Iterator[apsw.Connection]:
        """A connection for several queries, its apsw errors translated."""
        conn: apsw.Connection | None = None
        try:
            conn = self._borrow()
            with translating(action):
                yield conn
        finally:
            if conn is not None:
                self._give_back(conn)

    def close(self) -> None:
        """Close the idle connections now and each lent one as it comes back; borrowers still
        waiting raise ``StoreClosedError``."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._returned.notify_all()
        for conn in idle:
            conn.close()

    def _borrow(self) -> apsw.Connection:
        with self._lock:
            while True:
                if self._closed:
                    raise StoreClosedError(f"the store {self._path!r} is closed")
                if self._idle:
                    return self._idle.pop()
                if self._count < MAX_READERS:
                    self._count += 1
                    break
                self._returned.wait()
        try:
            return self._open_reader()
        except BaseException:
            self._give_back(None)
            raise

    def _give_back(self, conn: apsw.Connection | None) -> None:
        """Return a lent connection (``None``: one that failed to open)."""
        with self._lock:
            if conn is None or self._closed:
                self._count -= 1
                if conn is not None:
                    conn.close()
            else:
                self._idle.append(conn)
            self._returned.notify()
