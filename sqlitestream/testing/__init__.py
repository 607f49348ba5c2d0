"""The ``SessionStore`` contract as a pytest test class, shipped for custom stores.

Subclass :class:`SessionStoreContract` in a ``test_*.py`` file and provide a factory::

    from sqlitestream.testing import SessionStoreContract

    class TestMyStore(SessionStoreContract):
        def make_store(self, tmp_path):
            return MyStore(...)

The class name does not start with ``Test``, so pytest collects only your subclass. Durable
stores also override :meth:`SessionStoreContract.reopen` (close and open the same storage) so
the persistence tests run; stores that cannot long-poll set ``supports_long_poll = False``; a
store made with another ``max_event_bytes`` than the default says so in ``max_event_bytes``.
The same class runs the cursor follower (:func:`sqlitestream.streaming.follow`) on your store,
and the tables of bad and hostile values (:mod:`sqlitestream.testing.bad_input`,
:mod:`sqlitestream.testing.hostile`). Requires pytest.

One module per concern: ``sessions`` (sessions and runs), ``events`` (sequencing, idempotency,
batches), ``reads`` (cursor reads), ``longpoll`` (long-polls and closing), ``follow`` (the
follower), ``feed`` (the store-wide feed and consumer cursors, for a
:class:`~sqlitestream.feed.FeedStore`), ``retention`` (trims, for a
:class:`~sqlitestream.retention.RetentionStore`), ``bad_input`` and ``hostile``.
"""

from __future__ import annotations

from sqlitestream.testing._base import Background
from sqlitestream.testing.bad_input import BadInputContract
from sqlitestream.testing.events import EventsContract
from sqlitestream.testing.feed import FeedContract
from sqlitestream.testing.follow import FollowContract
from sqlitestream.testing.hostile import HostileValuesContract
from sqlitestream.testing.longpoll import LongPollContract
from sqlitestream.testing.reads import ReadsContract
from sqlitestream.testing.retention import RetentionContract
from sqlitestream.testing.sessions import SessionsContract

__all__ = ["Background", "SessionStoreContract"]


class SessionStoreContract(
    SessionsContract,
    EventsContract,
    ReadsContract,
    LongPollContract,
    FollowContract,
    FeedContract,
    RetentionContract,
    BadInputContract,
    HostileValuesContract,
):
    """Every rule of the ``SessionStore`` contract, one behaviour per test, and the cursor
    follower (:mod:`sqlitestream.streaming`) on the store.

    Hooks: :meth:`make_store` (required), :meth:`reopen`, :meth:`stored_state`,
    :attr:`supports_long_poll`, :attr:`max_event_bytes`.

    No test sleeps and hopes: a waiter is checked by what it returns (the event appended
    after it started, or ``[]`` no sooner than its timeout), and an idempotent action that
    should release a waiter is repeated until it does, within a deadline.
    """
