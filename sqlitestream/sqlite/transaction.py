"""The one write transaction of the SQLite backend: ``with writer.transaction(action) as conn``.

Nothing else in the backend begins, commits or rolls back a transaction (savepoints inside one,
for each append of a group commit and a batch's optimistic insert, undo only their own part).
A transaction is ``BEGIN IMMEDIATE``, so it holds SQLite's write lock from its first statement
and never fails half way for lack of it.
"""

from __future__ import annotations

import threading
import weakref

import apsw

from sqlitestream.errors import StorageError, StoreClosedError
from sqlitestream.sqlite.checkpoint import WalCheckpointer
from sqlitestream.sqlite.connection import BusyRetry, translate
from sqlitestream.sqlite.files import StoreFiles
from sqlitestream.sqlite.sidelock import SideLock


class Writer:
    """A store's write connection (``None`` for a read-only store), the thread lock that lets
    one transaction at a time use it, and the side lock that contended writers queue on.

    ``busy_timeout_ms`` bounds each wait: for the side lock, then for SQLite's lock.

    ``files`` holds the files the connection has open (the store, its ``-wal`` and ``-shm``);
    every commit first checks that each path still names that file (see :meth:`check_files`).
    """

    __slots__ = (
        "busy_timeout_s",
        "checkpoints",
        "closed",
        "conn",
        "cursor",
        "files",
        "lock",
        "path",
        "retry",
        "running",
        "side_lock",
    )

    def __init__(
        self,
        conn: apsw.Connection | None,
        path: str,
        *,
        busy_timeout_ms: int,
        side_lock: SideLock | None = None,
    ) -> None:
        self.conn = conn
        # Every statement of the transaction itself runs on this one cursor: apsw's
        # Connection.execute makes a new cursor each call, about 3,100 instructions (callgrind),
        # which BEGIN and COMMIT paid on every write.
        self.cursor = None if conn is None else conn.cursor()
        self.path = path
        # Re-entrant: an in-memory store reads through ``conn`` under it, and releasing it from
        # a thread that does not hold it raises (WriteTransaction._release relies on that).
        self.lock = threading.RLock()
        self.side_lock = side_lock
        self.busy_timeout_s = busy_timeout_ms / 1000.0
        self.retry = BusyRetry(busy_timeout_ms)
        self.closed = False
        self.running: weakref.ref[WriteTransaction] | None = None  # see finish_abandoned
        self.files = StoreFiles(())
        # Keeps the WAL bounded (see checkpoint.py); None for a read-only store.
        self.checkpoints = None if conn is None else WalCheckpointer(conn)

    def transaction(self, action: str) -> WriteTransaction:
        """One write transaction; ``action`` names it in error messages ("append an event")."""
        return WriteTransaction(self, action)

    def finish_abandoned(self, running: weakref.ref[WriteTransaction]) -> None:
        """Roll back and let go of a transaction whose ``__exit__`` never ran to its end.

        A ``with`` statement calls ``__exit__`` as a plain Python call, and an asynchronous
        exception (a signal's ``KeyboardInterrupt``) can strike as that call begins, before its
        first line, or part way through it; no Python code can guard that instant. The running
        transaction is registered here by a weak reference whose callback is this method, and
        unregistered as the last step of a completed exit; so when an abandoned one is freed
        (in CPython: as soon as the interrupt's traceback is dropped) this finishes it, while the
        thread lock is still its own. A completed transaction costs nothing here.
        """
        self.running = None
        try:
            if self.conn is not None and self.cursor is not None and not self.conn.getautocommit():
                self.cursor.execute("ROLLBACK")
        finally:
            try:
                if self.side_lock is not None:
                    self.side_lock.release()  # also when not held: it then only cancels the wait
            finally:
                self.lock.release()

    def check_files(self, action: str) -> None:
        """Raise ``StorageError`` if a file of the store was moved, deleted or replaced: a
        commit then would go into a file nobody opening the path will ever read again (or,
        for ``-wal`` and ``-shm``, corrupt the file that is there now)."""
        moved = self.files.moved()
        if moved is not None:
            raise StorageError(
                f"cannot {action}: the store file was moved or deleted ({moved!r} is no longer "
                "the file this store opened); nothing was written: close the store and open it again"
            )

    def close(self) -> None:
        """Refuse new transactions, wait for the running one, then close the connection and
        the side lock. When a file of the store was moved or deleted, the connection closes
        without its checkpoint, which would write into the old file and then delete whatever
        ``-wal`` and ``-shm`` are at the paths now."""
        self.closed = True
        with self.lock:
            if self.conn is not None:
                if self.files.moved() is not None:
                    self.conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
                self.conn.close()
                self.conn = self.cursor = None
            if self.side_lock is not None:
                self.side_lock.close()
                self.side_lock = None


class WriteTransaction:
    """``with writer.transaction(action) as conn:`` runs the block in one transaction.

    Entering takes the writer's thread lock, refuses a closed or read-only store
    (``StoreClosedError``, ``StorageError``) and begins. The first ``BEGIN IMMEDIATE`` does not
    wait: uncontended, the side lock would only cost time. Only when SQLite's lock is busy does
    the writer queue on the side lock (see ``sidelock.py``; at most the busy timeout, and not
    taken in time it goes on without it) and begin again, now with SQLite's busy handler and its
    own busy timeout.

    Leaving commits when the block finished and the store's files are still where it opened
    them (``StorageError`` and a rollback otherwise: :meth:`Writer.check_files`), and otherwise
    rolls back and lets the block's exception through. Either way both locks are let go. apsw errors, from the block or the
    commit, leave as the ``StorageError`` of :func:`~sqlitestream.sqlite.connection.translate`
    (``StoreBusyError`` when the lock stayed busy past the timeout).

    An exception at any moment (a signal's ``KeyboardInterrupt``) leaves no transaction open
    and no lock held, so a write is whole or absent; an interrupt that strikes as ``__exit__``
    begins is finished by :meth:`Writer.finish_abandoned` once its traceback is dropped.
    """

    __slots__ = ("__weakref__", "_action", "_conn", "_cursor", "_queued", "_writer")

    def __init__(self, writer: Writer, action: str) -> None:
        self._writer = writer
        self._action = action
        self._conn: apsw.Connection | None = None  # set once it is ours to roll back
        self._cursor: apsw.Cursor | None = None  # the writer's, with the connection
        self._queued = False

    def __enter__(self) -> apsw.Connection:
        writer = self._writer
        try:
            writer.lock.acquire()
            if writer.running is not None:
                raise StorageError(
                    f"cannot {self._action}: a write transaction of this thread has not finished "
                    "(a write inside a write, or the exception of an interrupted write still held)"
                )
            # Held by the writer alone: a reference kept anywhere else would outlive this
            # transaction and run the callback when it is freed after a completed exit.
            writer.running = weakref.ref(self, writer.finish_abandoned)
            conn, cursor = self._usable_connection()
            self._cursor = cursor
            self._conn = conn
            side = writer.side_lock
            if side is None:
                conn.set_busy_handler(writer.retry)
                cursor.execute("BEGIN IMMEDIATE")
                return conn
            conn.set_busy_handler(None)  # the first attempt must not wait
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return conn
            except apsw.BusyError:
                pass
            self._queued = True
            side.acquire(writer.busy_timeout_s)
            conn.set_busy_handler(writer.retry)
            cursor.execute("BEGIN IMMEDIATE")
            return conn
        except BaseException as exc:
            self._release()
            if isinstance(exc, apsw.Error):
                raise translate(exc, self._action) from exc
            raise

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        conn, cursor = self._conn, self._cursor
        assert conn is not None and cursor is not None
        try:
            if exc is None:
                self._writer.check_files(self._action)  # refused: rolled back below
                cursor.execute("COMMIT")
                if self._writer.checkpoints is not None:
                    self._writer.checkpoints.after_commit(conn)
        except apsw.Error as error:
            exc = error
        finally:
            self._release()  # rolls back unless the COMMIT ended the transaction
        if isinstance(exc, apsw.Error):
            raise translate(exc, self._action) from exc

    def _usable_connection(self) -> tuple[apsw.Connection, apsw.Cursor]:
        writer = self._writer
        if writer.closed:
            raise StoreClosedError(f"the store {writer.path!r} is closed")
        conn, cursor = writer.conn, writer.cursor
        if conn is None or cursor is None:
            raise StorageError(f"cannot {self._action}: the store {writer.path!r} was opened read-only")
        return conn, cursor

    def _release(self) -> None:
        """Roll back what is still open, let go of the side lock, unregister, and let go of the
        thread lock, in this order: an interrupt before the last two leaves it all to
        :meth:`Writer.finish_abandoned`, and nothing can strike between them. A failed rollback
        is raised (translated) once the locks are let go."""
        writer = self._writer
        failure: apsw.Error | None = None
        conn, cursor = self._conn, self._cursor
        if conn is not None and cursor is not None:
            try:
                if not conn.getautocommit():  # SQLite itself may have rolled back (disk full)
                    cursor.execute("ROLLBACK")
            except apsw.Error as exc:
                failure = exc
        if self._queued and writer.side_lock is not None:
            writer.side_lock.release()  # also when not held: it then only cancels the wait
        running = writer.running
        if running is not None and running() is self:
            writer.running = None
        try:
            writer.lock.release()
        except RuntimeError:  # the interrupt struck while waiting for it: never held
            pass
        if failure is not None:
            raise translate(failure, f"roll back ({self._action})") from failure
