"""PostgreSQL connections: the lazy psycopg import, the connection settings, a small
thread-safe pool, the one place that turns psycopg errors into sqlitestream errors, and the
one helper that runs work in a transaction with bounded retries.

psycopg is optional (the ``postgres`` extra): nothing here imports it until a store is opened.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from sqlitestream._core import descriptors
from sqlitestream.errors import (
    MissingDependencyError,
    SqliteStreamError,
    StorageError,
    StoreBusyError,
    StoreClosedError,
    ValidationError,
)

if TYPE_CHECKING:
    import psycopg

    Connection = psycopg.Connection[tuple[Any, ...]]

__all__ = ["Database", "MissingDependencyError", "load_psycopg", "redact_dsn"]

T = TypeVar("T")

INSTALL_HINT = 'pip install "sqlitestream[postgres]"'

MAX_CONFLICT_ATTEMPTS = 8
"""Attempts for a transaction that lost a race (serialization failure, deadlock, or a
concurrent insert of the same event id). Each retry re-reads, so a lost race never shows up
as a gap or a duplicate; after the last one the caller gets ``StoreBusyError``."""

MAX_RECONNECT_ATTEMPTS = 2
"""Attempts when the connection dropped (server restart, idle connection killed): one retry on
a fresh connection. Every write is idempotent (upserts, event ids), so a retry after a commit
whose acknowledgement was lost cannot store anything twice."""

_RETRY_STATES = {
    "40001": "a serialization failure",
    "40P01": "a deadlock",
    "23505": "a concurrent insert of the same key",
}
_READ_ONLY_STATE = "25006"
_BUSY_STATES = {
    "55P03": "a lock was not available",
    "57014": "the statement was cancelled (statement_timeout or lock_timeout?)",
    "53300": "the server has too many connections",
    "57P03": "the server is starting up or shutting down",
}


def load_psycopg() -> ModuleType:
    """The psycopg module, or ``MissingDependencyError`` naming the extra to install."""
    try:
        import psycopg
    except ImportError as exc:
        raise MissingDependencyError(
            f"the PostgreSQL store needs psycopg 3, which is not installed: {INSTALL_HINT}"
        ) from exc
    return psycopg


def redact_dsn(dsn: str) -> str:
    """The connection string without its password, for messages and ``repr``."""
    psycopg = load_psycopg()
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable DSN>"
    params.pop("password", None)
    return str(psycopg.conninfo.make_conninfo(**params))


def _detail(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_HOLDS = "one per pooled connection, up to pool_size, and one for the listener"


def translate(exc: BaseException, action: str) -> SqliteStreamError:
    """The sqlitestream error for a psycopg (or text-encoding) error; the SQLSTATE is in the
    message and in ``StorageError.sqlstate``."""
    if isinstance(exc, UnicodeEncodeError):
        return ValidationError(
            f"{action}: a value holds text that is not valid Unicode (a lone surrogate?): {exc}"
        )
    if isinstance(exc, OSError):
        if descriptors.ran_out(exc):
            return StorageError(f"{action}: {descriptors.ran_out_message(_HOLDS)}")
        return StorageError(f"{action}: {exc.strerror or exc}")
    sqlstate = getattr(exc, "sqlstate", None)
    detail = _detail(exc)
    if sqlstate in _RETRY_STATES:
        return StoreBusyError(
            f"{action}: gave up after {MAX_CONFLICT_ATTEMPTS} attempts, each lost to "
            f"{_RETRY_STATES[sqlstate]} (SQLSTATE {sqlstate}): {detail}",
            sqlstate=sqlstate,
        )
    if sqlstate == _READ_ONLY_STATE:
        return StorageError(f"cannot {action}: the store was opened read-only", sqlstate=sqlstate)
    if sqlstate in _BUSY_STATES:
        return StoreBusyError(
            f"{action}: {_BUSY_STATES[sqlstate]} (SQLSTATE {sqlstate}): {detail}", sqlstate=sqlstate
        )
    if sqlstate is not None and sqlstate.startswith("53"):
        return StorageError(
            f"{action}: the server is out of resources (SQLSTATE {sqlstate}): {detail}", sqlstate=sqlstate
        )
    if sqlstate is not None and sqlstate.startswith(("08", "57P")):
        return StorageError(
            f"{action}: lost the connection to PostgreSQL (SQLSTATE {sqlstate}): {detail}",
            sqlstate=sqlstate,
        )
    if sqlstate is None and type(exc).__name__ == "OperationalError":
        if descriptors.ran_out():  # libpq could not make its socket: "connection is bad"
            return StorageError(f"{action}: {descriptors.ran_out_message(_HOLDS)}")
        return StorageError(f"{action}: lost or could not open the connection to PostgreSQL: {detail}")
    state = f" (SQLSTATE {sqlstate})" if sqlstate else ""
    return StorageError(f"{action} failed: {type(exc).__name__}{state}: {detail}", sqlstate=sqlstate)


def _is_translatable(exc: BaseException) -> bool:
    if isinstance(exc, UnicodeEncodeError):
        return True
    psycopg = load_psycopg()
    return isinstance(exc, psycopg.Error)


class ConnectionPool:
    """At most ``max_size`` open connections, opened on demand and reused LIFO.

    A thread that finds every connection lent out waits up to ``timeout_s`` for one, then gets
    ``StoreBusyError``. Broken connections, and connections returned inside a transaction, are
    closed instead of reused.
    """

    def __init__(self, connect: Callable[[], Connection], *, max_size: int, timeout_s: float) -> None:
        self._connect = connect
        self._max_size = max_size
        self._timeout_s = timeout_s
        self._cond = threading.Condition()
        self._idle: list[Connection] = []
        self._size = 0
        self._pids: set[int] = set()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        conn = self._acquire()
        try:
            yield conn
        finally:
            self._release(conn)

    def owns_backend(self, pid: int) -> bool:
        """Whether ``pid`` is the server process of one of this pool's connections."""
        with self._cond:
            return pid in self._pids

    def _acquire(self) -> Connection:
        deadline = time.monotonic() + self._timeout_s
        stale: list[Connection] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise StoreClosedError("the store is closed")
                    while self._idle:
                        conn = self._idle.pop()
                        if conn.closed or conn.broken:
                            self._forget(conn)
                            stale.append(conn)
                            continue
                        return conn
                    if self._size < self._max_size:
                        self._size += 1
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise StoreBusyError(
                            f"all {self._max_size} connections of the store stayed in use for "
                            f"{self._timeout_s:g} s; raise pool_size or pool_timeout_ms"
                        )
                    self._cond.wait(remaining)
        finally:
            for conn in stale:
                conn.close()
        try:
            conn = self._connect()
        except BaseException:
            with self._cond:
                self._size -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._pids.add(conn.info.backend_pid)
        return conn

    def _forget(self, conn: Connection) -> None:
        """Drop ``conn`` from the books (the caller holds the lock and closes it)."""
        self._size -= 1
        self._pids.discard(conn.info.backend_pid)
        self._cond.notify()

    def _release(self, conn: Connection) -> None:
        idle = load_psycopg().pq.TransactionStatus.IDLE
        with self._cond:
            reusable = (
                not self._closed
                and not conn.closed
                and not conn.broken
                and conn.info.transaction_status == idle
            )
            if reusable:
                self._idle.append(conn)
                self._cond.notify()
                return
            self._forget(conn)
        conn.close()

    def discard_idle(self) -> None:
        """Close every idle connection: after one was found dead, the others likely are too."""
        with self._cond:
            idle, self._idle = self._idle, []
            for conn in idle:
                self._forget(conn)
        for conn in idle:
            conn.close()

    def close(self) -> None:
        """Close idle connections now; lent ones are closed when returned."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.discard_idle()


class Database:
    """A PostgreSQL server reached through one pool: ``run`` is the only way work is done."""

    def __init__(
        self,
        dsn: str,
        *,
        application_name: str,
        pool_size: int,
        pool_timeout_s: float,
        connect_timeout_s: int,
        readonly: bool = False,
    ) -> None:
        self._psycopg = load_psycopg()
        self._readonly = readonly
        self._dsn = dsn
        self._application_name = application_name
        self._connect_timeout_s = connect_timeout_s
        self.pool = ConnectionPool(self.connect, max_size=pool_size, timeout_s=pool_timeout_s)

    def connect(self) -> Connection:
        """A new connection with the store's settings (see docs/postgres.md).

        ``autocommit``: a read is one statement with no BEGIN/COMMIT round trips; writes open
        their transaction explicitly in :meth:`run`. ``application_name`` makes the store's
        connections easy to find in ``pg_stat_activity``. A read-only store's sessions have
        ``default_transaction_read_only`` on, so the server itself refuses any write.
        """
        try:
            conn: Connection = self._psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=self._connect_timeout_s,
                application_name=self._application_name,
            )
        except self._psycopg.Error as exc:
            if getattr(exc, "sqlstate", None) is None and descriptors.ran_out():
                raise translate(exc, "connect to PostgreSQL") from exc  # libpq: "connection is bad"
            raise StorageError(f"cannot connect to PostgreSQL: {_detail(exc)}") from exc
        except OSError as exc:  # psycopg's selector, before it has a connection
            raise translate(exc, "connect to PostgreSQL") from exc
        if self._readonly:
            try:
                conn.execute("SET default_transaction_read_only = on")
            except self._psycopg.Error as exc:
                conn.close()
                raise translate(exc, "configure a read-only connection") from exc
        return conn

    def run(
        self,
        action: str,
        work: Callable[[Connection], T],
        *,
        transaction: bool,
        exclusive: str | None = None,
    ) -> T:
        """``work(conn)`` on a pooled connection, inside one transaction if asked.

        The transaction commits when ``work`` returns and rolls back when it raises. A lost race
        (serialization failure, deadlock, concurrent insert of the same id) is retried up to
        ``MAX_CONFLICT_ATTEMPTS`` times, a dropped connection once on a fresh one; anything
        else, and the last failure, is raised as a ``SqliteStreamError``.

        ``exclusive`` names an advisory lock held around the whole transaction: runs with the
        same name, from any connection or host, happen one after the other. It is taken before
        BEGIN so that the transaction starts after the previous holder committed and sees its
        catalog changes (a lock taken inside a transaction can leave stale catalog caches).
        """
        attempt = 0
        while True:
            attempt += 1
            with self.pool.connection() as conn:
                try:
                    if exclusive is not None:
                        return self._exclusively(conn, exclusive, work, transaction)
                    if not transaction:
                        return work(conn)
                    with conn.transaction():
                        return work(conn)
                except SqliteStreamError:
                    raise
                except Exception as exc:
                    if not _is_translatable(exc):
                        raise
                    error = translate(exc, action)
                    lost = conn.broken or conn.closed
                    sqlstate = getattr(exc, "sqlstate", None)
                    if lost:
                        self.pool.discard_idle()
                        retry = attempt < MAX_RECONNECT_ATTEMPTS
                    else:
                        retry = sqlstate in _RETRY_STATES and attempt < MAX_CONFLICT_ATTEMPTS
                    if not retry:
                        raise error from exc
            if not lost:
                # Jittered exponential backoff so racing writers do not collide again in step.
                time.sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 6)))

    def run_pipelined(self, action: str, work: Callable[[Connection], tuple[Callable[[], T], bool]]) -> T:
        """``work(conn)`` in one transaction sent as a psycopg pipeline, with :meth:`run`'s
        retries: statements go out without waiting for each other's results until one is
        read, and the ``COMMIT`` with the statements before it. ``work`` returns how to read
        its results once committed, and whether there is anything to commit (if not, the
        transaction is rolled back)."""
        return self.run(action, lambda conn: self._pipelined(conn, work), transaction=False)

    def _pipelined(self, conn: Connection, work: Callable[[Connection], tuple[Callable[[], T], bool]]) -> T:
        if not self._psycopg.Pipeline.is_supported():
            with conn.transaction():
                finish, keep = work(conn)
                if not keep:
                    raise self._psycopg.Rollback()
            return finish()
        # BEGIN and COMMIT by hand rather than conn.transaction(), which in a pipeline wraps
        # the block in pipelines of its own; and the block's error raised only once the
        # pipeline has ended. A pipeline ended by an error that cannot end cleanly either (a
        # connection the server dropped) logs that second error as a psycopg warning, which
        # would reach the application's log or stderr; ended without one, it raises it.
        failure: Exception | None = None
        try:
            with conn.pipeline():
                try:
                    conn.execute("BEGIN")
                    finish, keep = work(conn)
                    conn.execute("COMMIT" if keep else "ROLLBACK")
                except Exception as exc:  # noqa: BLE001 - raised below, once the pipeline ended
                    failure = exc
        except Exception:
            if failure is None:
                raise  # the COMMIT failed, or the pipeline could not end
        if failure is not None:
            self._roll_back(conn)
            raise failure
        return finish()

    def _roll_back(self, conn: Connection) -> None:
        """End the failed transaction of a connection still open, so the pool can lend it
        again; one that cannot is closed by the pool instead (the server then rolls back)."""
        if conn.broken or conn.info.transaction_status == self._psycopg.pq.TransactionStatus.IDLE:
            return
        with suppress(self._psycopg.Error):
            conn.execute("ROLLBACK")

    @staticmethod
    def _exclusively(conn: Connection, name: str, work: Callable[[Connection], T], transaction: bool) -> T:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
        try:
            if not transaction:
                return work(conn)
            with conn.transaction():
                return work(conn)
        finally:
            if not conn.broken:  # a dropped connection has released the lock already
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))

    def close(self) -> None:
        self.pool.close()
