"""What the SQLite and PostgreSQL group commits share: their bounds, their statistics record and
the wake-up of a group's callers. Each backend's queue lives with its write path
(``sqlite/groupcommit.py``, ``postgres/groupcommit.py``): SQLite's leader writes under the
store's writer lock with savepoints, PostgreSQL's on a pooled connection in one statement or a
pipeline."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass

__all__ = ["MAX_APPENDS", "MAX_BYTES", "GroupCommitStats", "release_all", "release_rest"]

MAX_APPENDS = 64
"""The most appends (single events or batches) one shared transaction takes (a bound on how
long its leader writes)."""
MAX_BYTES = 4 << 20
"""The most encoded data + metadata one shared transaction takes (its first append always)."""

_RELEASE = type(threading.Lock()).release


@dataclass(frozen=True, slots=True)
class GroupCommitStats:
    """How a store object's appends have shared transactions since it was opened."""

    transactions: int
    """Write transactions the appends ran in (committed or failed)."""
    appends: int
    """Appends those transactions carried; ``appends / transactions`` is the mean group size."""
    largest: int
    """The most appends one transaction carried."""
    queued: int
    """Appends waiting now for a transaction."""


def release_all(wakeups: Iterable[threading.Lock]) -> None:
    """Release every lock of ``wakeups`` (the held locks a group's callers wait on). A map of the
    C method run by a C ``deque``: no bytecode runs between two releases, so an interrupt of the
    releasing thread cannot strand a caller part way. One can still strike just before that
    call or just after it (in this function's own bytecode): the caller catches it and calls
    :func:`release_rest`."""
    deque(map(_RELEASE, wakeups), 0)


def release_rest(wakeups: Iterable[threading.Lock]) -> None:
    """After an interrupt struck around :func:`release_all`: release every lock of ``wakeups``
    it had not released. A lock already released may be unlocked (``RuntimeError``, skipped)
    or taken again by its woken caller, who never uses it after: releasing it then is harmless.
    """
    for wakeup in wakeups:
        with suppress(RuntimeError):
            wakeup.release()
