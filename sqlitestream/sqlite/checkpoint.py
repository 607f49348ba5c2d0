"""Keeping the WAL bounded: the checkpoint a store's writer runs after its commits.

SQLite's own auto-checkpoint is PASSIVE: it copies what it can into the database file but never
waits, and the WAL is only restarted from its beginning when no reader holds a snapshot in it.
With readers active all the time (the store's own read connections, other processes) that moment
may never come and the WAL grows without bound. So the writer takes over the auto-checkpoint:
its WAL hook records the frames in the WAL at each commit (free: SQLite passes the count), and
after the commit :meth:`WalCheckpointer.after_commit` runs PASSIVE past SQLite's usual 1,000
frames and, past half of ``journal_size_limit``, a TRUNCATE that waits a few milliseconds for
readers to leave their old snapshots. A TRUNCATE that cannot finish (a read transaction held
open, by any connection) is retried at most every :data:`RETRY_S`; once the reader leaves, the
next attempt empties the WAL.
"""

from __future__ import annotations

import time

import apsw

from sqlitestream.sqlite.connection import JOURNAL_SIZE_LIMIT, BusyRetry

PASSIVE_FRAMES = 1000
"""WAL frames past which each commit is followed by a PASSIVE checkpoint (SQLite's default)."""
TRUNCATE_BYTES = JOURNAL_SIZE_LIMIT // 2
"""WAL bytes past which the writer empties the WAL (TRUNCATE), so it stays under the limit."""
TRUNCATE_BUSY_MS = 10
"""How long a TRUNCATE waits for readers to finish their snapshots before giving up."""
RETRY_S = 0.25
"""The least time between two TRUNCATE attempts, so a pinned WAL costs the writer little."""
_FRAME_HEADER_BYTES = 24


class WalCheckpointer:
    """The checkpoint policy of one write connection (installed as its WAL hook).

    ``blocked`` is True while the last TRUNCATE attempt could not finish in time: a read
    transaction (of any connection, maybe in another process) holds a snapshot in the WAL.
    """

    __slots__ = ("_busy", "_frames", "_next_attempt", "_truncate_frames", "blocked")

    def __init__(self, conn: apsw.Connection) -> None:
        page_size = int(conn.pragma("page_size"))
        self._truncate_frames = TRUNCATE_BYTES // (page_size + _FRAME_HEADER_BYTES)
        self._frames = 0
        self._next_attempt = 0.0
        self._busy = BusyRetry(TRUNCATE_BUSY_MS)
        self.blocked = False
        conn.set_wal_hook(self._on_commit)  # replaces SQLite's auto-checkpoint

    def _on_commit(self, conn: apsw.Connection, name: str, frames: int) -> int:
        self._frames = frames
        return apsw.SQLITE_OK

    def after_commit(self, conn: apsw.Connection) -> None:
        """Checkpoint as the policy says; called by the writer after each COMMIT, with the
        write lock of this process still held. Never raises an apsw error: the commit is done,
        and a checkpoint that fails is simply tried again after a later commit."""
        frames, self._frames = self._frames, 0
        if frames < PASSIVE_FRAMES:
            return
        now = time.monotonic()
        if frames < self._truncate_frames or now < self._next_attempt:
            try:
                conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
            except apsw.Error:
                pass  # another connection is checkpointing, or an I/O error: try again later
            return
        self._next_attempt = now + RETRY_S
        conn.set_busy_handler(self._busy)  # the next write transaction sets its own again
        try:
            conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
            self.blocked = False
        except apsw.BusyError:
            self.blocked = True
        except apsw.Error:
            pass
