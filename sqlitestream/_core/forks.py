"""A store belongs to the process that opened it: what a child of ``fork()`` inherits is kept,
never used and never closed.

A forked child gets copies of the parent's store objects, connections and file descriptors,
but none of the parent's POSIX locks (SQLite's cross-process safety rests on them) and none
of its other threads (a lock one of them held at the fork stays held forever). A psycopg
connection's socket is shared with the parent, so closing it in the child ends the parent's
session. So an inherited store refuses every call, and neither closing it nor dropping it
may reach its connections: closing a SQLite connection can checkpoint, roll back into the
shared ``-shm`` and delete ``-wal`` and ``-shm``, all without the locks that make that safe.

The stores register here while open; in the child each one still registered is kept alive
for the rest of the process, interpreter shutdown included, so its connections are
deliberately leaked and the operating system closes their descriptors at exit.
"""

from __future__ import annotations

import os
import weakref

from sqlitestream.errors import StoreClosedError

_open_stores: weakref.WeakSet[object] = weakref.WeakSet()


def opened(store: object) -> int:
    """Register an open store; returns the id of the process it belongs to."""
    _open_stores.add(store)
    return os.getpid()


def closed(store: object) -> None:
    """Unregister a store closed by its own process."""
    _open_stores.discard(store)


def refuse_if_inherited(owner_pid: int, store: object) -> None:
    """Raise ``StoreClosedError`` if this process is not ``owner_pid``, the one that opened
    ``store`` (a child of ``fork()`` inherited it; ``store`` names it: its path or location,
    shown by ``repr`` only in the error, since every store call checks)."""
    if owner_pid != os.getpid():
        raise StoreClosedError(
            f"the store {store!r} was opened by process {owner_pid} and this process "
            f"({os.getpid()}) inherited it through fork(), where it is unusable (a child holds "
            "none of its parent's locks): open a new store in this process after the fork"
        )


def _keep_inherited() -> None:
    stores = list(_open_stores)
    _open_stores.clear()
    if not stores:
        return
    import ctypes  # here: only a child that inherited a store needs it

    for store in stores:
        # One reference nobody will ever drop: not even interpreter shutdown frees the store,
        # so no connection of it is ever closed in this process.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(store))


os.register_at_fork(after_in_child=_keep_inherited)
