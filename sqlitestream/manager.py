"""``SessionManager``: session and run lifecycles, adapter events, and cursor streaming.

The manager persists everything through the store's sequenced appends, so any process can
follow a session by cursor while another one runs it. It works with every ``SessionStore``.
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    Generator,
    Iterable,
    Mapping,
)
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlitestream import streaming as _streaming
from sqlitestream._core.validate import check_id, check_json_object, describe
from sqlitestream._execution import RunExecutions, manager_event, record
from sqlitestream._runs import (
    EventCallback,
    Sink,
    adapter_event,
    check_adapter,
    check_adapter_opts,
    check_callback,
    check_input,
    check_names,
    describe_error,
    not_following,
)
from sqlitestream.adapters import (
    ProviderAdapter,
    ProviderError,
)
from sqlitestream.errors import (
    ConflictError,
    SqliteStreamError,
    ValidationError,
)
from sqlitestream.models import (
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    StoredEvent,
    new_id,
    utc_now,
)
from sqlitestream.store import SessionStore

__all__ = ["EventCallback", "RunOnceResult", "RunResult", "SessionManager"]

_TERMINAL_SESSION = frozenset({SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.CANCELLED})
_OPEN_SESSION = frozenset({SessionStatus.PENDING, SessionStatus.ACTIVE, SessionStatus.PAUSED})


@dataclass(frozen=True, slots=True)
class RunResult:
    """A completed run: the final ``run`` record, its output and token usage, and the events
    ``execute_run`` appended (message_sent, then the adapter's), in sequence order."""

    run: Run
    output: dict[str, Any]
    token_usage: dict[str, Any]
    events: list[StoredEvent]

    @property
    def run_id(self) -> str:
        return self.run.id

    @property
    def session_id(self) -> str:
        return self.run.session_id


@dataclass(frozen=True, slots=True)
class RunOnceResult:
    """A completed ``run_once``: every event it appended, session_created to session_completed."""

    output: dict[str, Any]
    token_usage: dict[str, Any]
    events: list[StoredEvent]
    session_id: str
    run_id: str


class SessionManager:
    """Runs agent sessions through an adapter and records every step in ``store``.

    ``adapter`` is optional for a manager that only reads or streams (or drives session
    lifecycles with an explicit ``agent_id``). Every event the manager appends carries
    ``metadata["provider"]`` = the adapter's name. One manager may be shared by threads.
    """

    def __init__(self, store: SessionStore, adapter: ProviderAdapter | None = None) -> None:
        if not isinstance(store, SessionStore):
            raise ValidationError(f"store must be a SessionStore, got {describe(store)}")
        if adapter is not None:
            check_adapter(adapter)
        self._store = store
        self._adapter = adapter
        self._runs = None if adapter is None else RunExecutions(store, adapter)

    @property
    def store(self) -> SessionStore:
        return self._store

    @property
    def adapter(self) -> ProviderAdapter | None:
        return self._adapter

    # Sessions -----------------------------------------------------------------------------

    def start_session(
        self,
        agent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        *,
        session_id: str | None = None,
    ) -> Session:
        """Save a new pending session and append ``session_created`` (data ``{"provider"}``).

        ``agent_id`` defaults to the adapter's name; ``metadata["provider"]`` is set to it.
        ``session_id`` lets the caller choose the id (so another process can follow it before
        it exists); an id already saved raises ``ConflictError`` and writes nothing.
        """
        return self._start_session(agent_id, metadata, context, tags, session_id, Sink())

    def activate_session(self, session_id: str) -> Session:
        """Pending or paused -> active; appends ``session_started``."""
        return self._transition(
            session_id,
            SessionStatus.ACTIVE,
            EventType.SESSION_STARTED,
            {},
            Sink(),
            allowed=frozenset({SessionStatus.PENDING, SessionStatus.PAUSED}),
        )

    def complete_session(self, session_id: str) -> Session:
        """Any open status -> completed; appends ``session_completed``."""
        return self._transition(session_id, SessionStatus.COMPLETED, EventType.SESSION_COMPLETED, {}, Sink())

    def fail_session(self, session_id: str, error: BaseException | Mapping[str, Any] | str) -> Session:
        """Any open status -> failed; appends ``session_failed`` with ``error_code`` and
        ``error_message`` (from a ``ProviderError``, any exception, a ``{"code", "message"}``
        dict, or a message string)."""
        code, message, _ = describe_error(error)
        data = {"error_code": code, "error_message": message}
        return self._transition(session_id, SessionStatus.FAILED, EventType.SESSION_FAILED, data, Sink())

    def _start_session(
        self,
        agent_id: str | None,
        metadata: dict[str, Any] | None,
        context: dict[str, Any] | None,
        tags: list[str] | None,
        session_id: str | None,
        sink: Sink,
    ) -> Session:
        provider = self._provider()
        if agent_id is None:
            if provider is None:
                raise ValidationError("agent_id is required when the SessionManager has no adapter")
            agent_id = provider
        session_metadata = {} if metadata is None else check_json_object(metadata, "metadata")
        if provider is not None:
            session_metadata["provider"] = provider
        session = Session(
            agent_id=agent_id,
            id=new_id("ses_") if session_id is None else check_id(session_id, "session_id"),
            metadata=session_metadata,
            context={} if context is None else context,
            tags=[] if tags is None else tags,
        )
        self._store.create_session(session)
        data = {} if provider is None else {"provider": provider}
        self._append(EventType.SESSION_CREATED, session.id, None, data, sink)
        return session

    def _transition(
        self,
        session_id: str,
        status: SessionStatus,
        event_type: EventType,
        data: dict[str, Any],
        sink: Sink,
        *,
        allowed: frozenset[SessionStatus] = _OPEN_SESSION,
    ) -> Session:
        session = self._store.get_session(check_id(session_id, "session_id"))
        if session.status not in allowed:
            raise ConflictError(
                f"session {session.id!r} is {session.status.value}; cannot make it {status.value}"
            )
        updated = replace(session, status=status, updated_at=utc_now())
        self._store.save_session(updated)
        self._append(event_type, session.id, None, data, sink)
        return updated

    # Runs ---------------------------------------------------------------------------------

    def start_run(
        self,
        session_id: str,
        input: Mapping[str, Any],
        required_capabilities: Iterable[str] = (),
        optional_capabilities: Iterable[str] = (),
    ) -> Run:
        """Save a pending run of an open session (no event is appended).

        A required capability the adapter lacks raises ``ProviderError(code=
        "missing_capabilities")``; missing optional ones are listed in the run's
        ``metadata["missing_optional_capabilities"]``. Unknown session:
        ``SessionNotFoundError``; a completed, failed or cancelled one: ``ConflictError``.
        """
        adapter = self._require_adapter()
        run_input = check_input(input)
        required = check_names(required_capabilities, "required_capabilities")
        optional = check_names(optional_capabilities, "optional_capabilities")
        session = self._store.get_session(check_id(session_id, "session_id"))
        if session.status in _TERMINAL_SESSION:
            raise ConflictError(f"session {session.id!r} is {session.status.value}; start a new one")
        available = set(adapter.capabilities())
        missing = sorted(required - available)
        if missing:
            raise ProviderError(
                f"adapter {adapter.name!r} lacks required capabilities: {', '.join(missing)}",
                "missing_capabilities",
                details={"missing": missing},
            )
        metadata: dict[str, Any] = {"provider": adapter.name}
        missing_optional = sorted(optional - available)
        if missing_optional:
            metadata["missing_optional_capabilities"] = missing_optional
        run = Run(session_id=session.id, input=run_input, metadata=metadata)
        self._store.save_run(run)
        return run

    def execute_run(
        self,
        run_id: str,
        event_callback: EventCallback | None = None,
        adapter_opts: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Execute a pending run with the adapter and record it.

        Appends the input messages as ``message_sent`` events, then each event the adapter
        emits, in emit order; ``event_callback`` gets each stored event as it is appended. On
        success the run ends ``completed`` with the outcome's output and token usage. On
        failure the run ends ``failed`` (error ``code`` and ``message``), one ``run_failed`` is
        appended (unless the adapter emitted one), and the error is raised: a
        ``ProviderError``, the store's error if an append failed, ``ValidationError`` for bad
        event data, or the callback's own exception. A run cancelled meanwhile raises
        ``ProviderError(code="cancelled")``. A run that is not pending raises ``ConflictError``.
        """
        check_callback(event_callback)
        opts = check_adapter_opts(adapter_opts)
        return self._execute(check_id(run_id, "run_id"), Sink(event_callback), opts)

    def run_once(
        self,
        input: Mapping[str, Any],
        agent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        event_callback: EventCallback | None = None,
        adapter_opts: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
    ) -> RunOnceResult:
        """Start a session, run ``input`` once, and end the session.

        Events: session_created, session_started, message_sent..., the adapter's events,
        session_completed. On failure: the events so far, run_failed, session_failed, and the
        error is raised (see :meth:`execute_run`); on cancellation: run_cancelled,
        session_cancelled, and ``ProviderError(code="cancelled")``. ``event_callback`` gets
        every event this call appends.
        """
        check_callback(event_callback)
        opts = check_adapter_opts(adapter_opts)
        self._require_adapter()
        check_input(input)  # before anything is written
        sink = Sink(event_callback)
        session = self._start_session(agent_id, metadata, context, tags, session_id, sink)
        run: Run | None = None
        try:
            self._transition(
                session.id,
                SessionStatus.ACTIVE,
                EventType.SESSION_STARTED,
                {},
                sink,
                allowed=frozenset({SessionStatus.PENDING}),
            )
            run = self.start_run(session.id, input)
            result = self._execute(run.id, sink, opts)
        except BaseException as exc:
            if isinstance(exc, ProviderError) and exc.code == "cancelled":
                self._end_after_error(
                    session.id, exc, SessionStatus.CANCELLED, EventType.SESSION_CANCELLED, {}, sink
                )
            else:
                self._fail_after_error(session.id, exc, run, sink)
            raise
        self._transition(session.id, SessionStatus.COMPLETED, EventType.SESSION_COMPLETED, {}, sink)
        return RunOnceResult(
            output=result.output,
            token_usage=result.token_usage,
            events=list(sink.events),
            session_id=session.id,
            run_id=run.id,
        )

    def cancel_run(self, run_id: str) -> Run:
        """Cancel a pending run, or a run executing in this manager, and append ``run_cancelled``.

        The run ends ``cancelled``; for an executing run the adapter's ``cancel`` is called and
        later events it emits are refused. Cancelling a cancelled run returns it unchanged.
        A completed or failed run, or one executing in another manager or process, raises
        ``ConflictError``.
        """
        run_id = check_id(run_id, "run_id")
        runs = self._runs
        execution = None if runs is None else runs.find(run_id)
        if runs is not None and execution is not None:
            return runs.cancel(execution)
        run = self._store.get_run(run_id)
        if run.status is RunStatus.CANCELLED:
            return run
        if run.status is RunStatus.RUNNING:
            raise ConflictError(
                f"run {run_id!r} is executing in another SessionManager or process; cancel it there"
            )
        if run.status is not RunStatus.PENDING:
            raise ConflictError(f"run {run_id!r} already ended {run.status.value}")
        cancelled = replace(run, status=RunStatus.CANCELLED, ended_at=utc_now())
        self._store.save_run(cancelled)
        self._append(EventType.RUN_CANCELLED, run.session_id, run.id, {}, Sink())
        return cancelled

    def _fail_after_error(self, session_id: str, exc: BaseException, run: Run | None, sink: Sink) -> None:
        code, message, _ = describe_error(exc)
        if run is not None:
            try:  # the session's failure says what the run's record says
                error = self._store.get_run(run.id).error or {}
                code, message = str(error.get("code", code)), str(error.get("message", message))
            except SqliteStreamError:
                pass
        data = {"error_code": code, "error_message": message}
        self._end_after_error(session_id, exc, SessionStatus.FAILED, EventType.SESSION_FAILED, data, sink)

    def _end_after_error(
        self,
        session_id: str,
        exc: BaseException,
        status: SessionStatus,
        event_type: EventType,
        data: dict[str, Any],
        sink: Sink,
    ) -> None:
        try:
            self._transition(session_id, status, event_type, data, sink)
        except Exception as record_exc:  # noqa: BLE001 - never hide the original error behind this one
            exc.add_note(f"recording the session's end also failed: {record_exc!r}")

    # Adapter events -----------------------------------------------------------------------

    def handle_adapter_event(self, run: Run, session: Session, event_data: Mapping[str, Any]) -> StoredEvent:
        """Build the stored event for one adapter event and append it; returns it stored.

        The type is normalised (see ``normalise_event_type``; an unknown type is stored as
        ``error_occurred`` with ``data["original_type"]``); an aware ``timestamp`` is kept
        (a naive one raises ``ValidationError``), else it is now; ``metadata`` is merged into
        the event's metadata and ``metadata["provider"]`` is always the adapter's name; a
        top-level ``status`` is copied into the data unless the data has one.
        """
        if not isinstance(run, Run):
            raise ValidationError(f"run must be a Run, got {describe(run)}")
        if not isinstance(session, Session):
            raise ValidationError(f"session must be a Session, got {describe(session)}")
        return self._store.append_event_with_sequence(
            adapter_event(run, session, event_data, self._provider())
        )

    # Reading and streaming ----------------------------------------------------------------

    def get_session_events(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        type: EventType | str | None = None,
        since: datetime | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        wait_timeout_ms: int | None = None,
    ) -> list[StoredEvent]:
        """The store's ``get_events``, unchanged."""
        return self._store.get_events(
            session_id,
            run_id=run_id,
            type=type,
            since=since,
            after=after,
            before=before,
            limit=limit,
            wait_timeout_ms=wait_timeout_ms,
        )

    def stream_session_events(
        self,
        session_id: str,
        *,
        after: int = 0,
        limit: int = 100,
        poll_interval_ms: int = 250,
        wait_timeout_ms: int | None = None,
        run_id: str | None = None,
        type: EventType | str | None = None,
        since: datetime | None = None,
        before: int | None = None,
        follow: bool = True,
    ) -> Generator[StoredEvent, None, None]:
        """The session's events after sequence ``after``, each exactly once, in sequence order.

        :func:`sqlitestream.streaming.follow` on this manager's store: reads pages of up to
        ``limit``; to resume, pass the last sequence number you saw as ``after``. With
        ``follow`` (default) the iterator waits for new events forever: with
        ``wait_timeout_ms`` > 0 it long-polls the store (no busy loop); otherwise, or when the
        store returns an empty page early (a store without long-poll), it sleeps
        ``poll_interval_ms`` before asking again. With ``follow=False`` it stops once caught
        up. It also stops once no event can pass ``before`` any more. A session deleted while
        followed (and perhaps written again) is followed again from sequence 1. Arguments are
        checked when called (``ValidationError``); the iterator holds nothing between items,
        so ``close()`` or dropping it releases everything.
        """
        return _streaming.follow(
            self._store,
            session_id,
            after=after,
            run_id=run_id,
            type=type,
            since=since,
            before=before,
            limit=limit,
            wait_timeout_ms=wait_timeout_ms,
            poll_interval_ms=poll_interval_ms,
            stop_when_caught_up=not_following(follow),
        )

    def astream_session_events(
        self,
        session_id: str,
        *,
        after: int = 0,
        limit: int = 100,
        poll_interval_ms: int = 250,
        wait_timeout_ms: int | None = None,
        run_id: str | None = None,
        type: EventType | str | None = None,
        since: datetime | None = None,
        before: int | None = None,
        follow: bool = True,
    ) -> AsyncGenerator[StoredEvent, None]:
        """:meth:`stream_session_events` as an async iterator for asyncio applications
        (:func:`sqlitestream.streaming.afollow`).

        Store calls run in a worker thread owned by this iterator, never on the event loop;
        long-polls are made in waits of at most 250 ms, so cancelling the consuming task
        ends the iteration at once and the worker thread within 250 ms. Close it with
        ``contextlib.aclosing`` (or let the task be cancelled) to release the thread.
        """
        return _streaming.afollow(
            self._store,
            session_id,
            after=after,
            run_id=run_id,
            type=type,
            since=since,
            before=before,
            limit=limit,
            wait_timeout_ms=wait_timeout_ms,
            poll_interval_ms=poll_interval_ms,
            stop_when_caught_up=not_following(follow),
        )

    # Helpers ------------------------------------------------------------------------------

    def _provider(self) -> str | None:
        return None if self._adapter is None else self._adapter.name

    def _require_adapter(self) -> ProviderAdapter:
        if self._adapter is None:
            raise _no_adapter()
        return self._adapter

    def _execute(self, run_id: str, sink: Sink, adapter_opts: dict[str, Any]) -> RunResult:
        if self._runs is None:
            raise _no_adapter()
        done, events = self._runs.execute(run_id, sink, adapter_opts)
        return RunResult(done, done.output or {}, done.token_usage, events)

    def _append(
        self, type: EventType, session_id: str, run_id: str | None, data: dict[str, Any], sink: Sink
    ) -> StoredEvent:
        return record(self._store, manager_event(self._provider(), type, session_id, run_id, data), sink)


def _no_adapter() -> ValidationError:
    return ValidationError(
        "adapter: this SessionManager has none; create it as SessionManager(store, adapter)"
    )
