"""The in-memory backend: :class:`InMemorySessionStore`, the reference implementation.

Modules by concern: ``store`` (the contract's operations on dicts and lists in this process),
``bytestreams`` (the byte streams' tables). Only the names re-exported here are public.
"""

from sqlitestream.memory.store import InMemorySessionStore

__all__ = ["InMemorySessionStore"]
