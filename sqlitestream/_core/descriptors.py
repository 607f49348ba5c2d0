"""Telling a user that this process ran out of file descriptors (``ulimit -n``).

The libraries below us say it badly or not at all: SQLite reports "unable to open database file"
or a disk I/O error, psycopg an ``OSError`` from its selector. Each backend's translation point
asks :func:`ran_out` and words the error with :func:`ran_out_message`.
"""

from __future__ import annotations

import errno
import os

try:
    import resource  # imported up front: at the descriptor limit an import fails (it opens a file)
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

__all__ = ["ran_out", "ran_out_message"]

_EXHAUSTED = (errno.EMFILE, errno.ENFILE)


def ran_out(exc: OSError | None = None) -> bool:
    """Whether ``exc`` says descriptors ran out or, with no ``exc``, whether this process is at
    its limit right now (it asks the OS for one more descriptor)."""
    if exc is not None:
        return exc.errno in _EXHAUSTED
    try:
        os.close(os.open(os.devnull, os.O_RDONLY))
    except OSError as probe:
        return probe.errno in _EXHAUSTED
    return False


def ran_out_message(holds: str) -> str:
    """The message, ``holds`` saying what an open store holds descriptors for."""
    limit = ""
    if resource is not None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limit = "" if soft == resource.RLIM_INFINITY else f" (its limit: {soft})"
    return (
        f"file descriptors ran out: this process has as many files open as it may{limit}; "
        f"each open store holds several ({holds}): close stores no longer needed, or raise "
        "the limit (ulimit -n)"
    )
