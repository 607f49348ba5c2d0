"""What every part of the contract kit shares: the factory hooks, the ``store`` fixture, a
background caller with a deadline, and small event helpers. Requires pytest."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sqlitestream.models import Event
from sqlitestream.store import DEFAULT_MAX_EVENT_BYTES, SessionStore

# Long enough never to end a passing test; short enough that a broken store fails it soon.
DEADLINE_S = 10.0

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def new_event(session_id: str = "s1", type: str = "message_sent", **fields: Any) -> Event:
    return Event(type=type, session_id=session_id, **fields)


def seqs(events: Sequence[Event]) -> list[int | None]:
    return [event.sequence_number for event in events]


class Background:
    """Run a call in a thread; ``result()`` waits for it, failing the test after a deadline.

    A call still blocked in the store when the test ends is ended by the fixture closing the
    store (long-polls then raise ``StoreClosedError``)."""

    def __init__(self, target: Any, *args: Any, **kwargs: Any) -> None:
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = target(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread by result()
                self._error = exc
            finally:
                self._done.set()

        threading.Thread(target=run, daemon=True).start()

    def wait(self, timeout: float) -> bool:
        """Whether the call has finished, waiting up to ``timeout`` s for it."""
        return self._done.wait(timeout)

    def result(self, timeout: float = DEADLINE_S) -> Any:
        assert self._done.wait(timeout), "background call did not finish in time"
        if self._error is not None:
            raise self._error
        return self._value


class ContractBase:
    """The hooks a store's subclass provides and the fixture every contract test uses."""

    #: Whether ``get_events(wait_timeout_ms=...)`` waits for a matching append.
    supports_long_poll = True

    #: The ``max_event_bytes`` of the stores ``make_store`` returns: an event whose encoded
    #: ``data`` and ``metadata`` are larger must be refused.
    max_event_bytes = DEFAULT_MAX_EVENT_BYTES

    def make_store(self, tmp_path: Path) -> SessionStore:
        raise NotImplementedError("subclasses return a new, empty store")

    def reopen(self, store: SessionStore, tmp_path: Path) -> SessionStore:
        """Close ``store`` and open the same storage again; non-durable stores return it as is."""
        return store

    def stored_state(self, store: SessionStore, tmp_path: Path) -> object:
        """Everything in the store's storage, read beside the store (``None``: not provided).

        The bad-input tests compare it before and after each refused call, in addition to
        what the public API shows; a file store can return every row of every table."""
        return None

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SessionStore]:
        holder = [self.make_store(tmp_path)]
        self._holder = holder
        try:
            yield holder[0]
        finally:
            holder[-1].close()

    def reopened(self, store: SessionStore, tmp_path: Path) -> SessionStore:
        new = self.reopen(store, tmp_path)
        self._holder.append(new)
        return new

    def _require_long_poll(self) -> None:
        if not self.supports_long_poll:
            pytest.skip("this store does not implement wait_timeout_ms")
