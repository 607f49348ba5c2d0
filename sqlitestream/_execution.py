"""Executing runs for ``SessionManager``: the runs one manager is executing, a run's execution
through the adapter, cancelling one while it executes, and recording how it failed.

The manager's own events (lifecycle and run events) are built by :func:`manager_event`, so
each carries ``metadata["provider"]`` the same way wherever it is written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from sqlitestream._core.validate import describe
from sqlitestream._runs import Execution, Sink, adapter_event, describe_error, input_messages
from sqlitestream.adapters import ProviderAdapter, ProviderError, RunOutcome
from sqlitestream.errors import ConflictError, SqliteStreamError, ValidationError
from sqlitestream.models import Event, EventType, Run, RunStatus, StoredEvent, utc_now
from sqlitestream.store import SessionStore


def manager_event(
    provider: str | None, type: EventType, session_id: str, run_id: str | None, data: dict[str, Any]
) -> Event:
    """One of the manager's own events, with ``metadata["provider"]`` when it has an adapter."""
    metadata = {} if provider is None else {"provider": provider}
    return Event(type=type, session_id=session_id, run_id=run_id, data=data, metadata=metadata)


def record(store: SessionStore, event: Event, sink: Sink) -> StoredEvent:
    """Append ``event`` and deliver the stored event to ``sink``."""
    stored = store.append_event_with_sequence(event)
    sink.deliver(stored)
    return stored


class RunExecutions:
    """The runs executing in one manager through its ``adapter``, by run id.

    One execution per run at a time; its :class:`~sqlitestream._runs.Execution` lock orders
    the adapter's emits against a concurrent cancel, so no event slips in after
    ``run_cancelled`` and none after the run finished.
    """

    def __init__(self, store: SessionStore, adapter: ProviderAdapter) -> None:
        self._store = store
        self._adapter = adapter
        self._lock = threading.Lock()
        self._running: dict[str, Execution] = {}

    def find(self, run_id: str) -> Execution | None:
        """The execution of ``run_id`` in this manager, if it is executing."""
        with self._lock:
            return self._running.get(run_id)

    def execute(self, run_id: str, sink: Sink, adapter_opts: dict[str, Any]) -> tuple[Run, list[StoredEvent]]:
        """Execute the pending run ``run_id``; returns the completed run and the events this
        execution appended (see ``SessionManager.execute_run`` for what is recorded)."""
        run = self._store.get_run(run_id)
        if run.status is not RunStatus.PENDING:
            raise ConflictError(f"run {run_id!r} is {run.status.value}; only a pending run can execute")
        session = self._store.get_session(run.session_id)
        first_event = len(sink.events)
        with self._lock:
            if run_id in self._running:
                raise ConflictError(f"run {run_id!r} is already executing")
            run = replace(run, status=RunStatus.RUNNING, started_at=utc_now())
            execution = Execution(run=run, session=session, sink=sink)
            self._running[run_id] = execution
        try:
            self._store.save_run(run)
            try:
                with execution.lock:
                    for role, content in input_messages(run.input):
                        data = {"role": role, "content": content}
                        self._record(execution, self._event(EventType.MESSAGE_SENT, run, data))
                    if execution.cancelled:
                        raise ProviderError(f"run {run_id!r} was cancelled", "cancelled")
                outcome = self._adapter.execute(run, session, self._emitter(execution), **adapter_opts)
                if not isinstance(outcome, RunOutcome):
                    raise ProviderError(
                        f"adapter {self._adapter.name!r} returned {describe(outcome)}, not a RunOutcome",
                        "adapter_error",
                    )
            except BaseException as exc:
                to_raise = self._finish_failed(execution, exc)
                if to_raise is exc:
                    raise
                raise to_raise from exc
            with execution.lock:
                failure = execution.emit_failure
                if not execution.cancelled and failure is None:
                    execution.finished = True
            if execution.cancelled:
                raise ProviderError(f"run {run_id!r} was cancelled", "cancelled")
            if failure is not None:
                raise self._finish_failed(execution, failure[1])
            done = replace(
                execution.run,
                status=RunStatus.COMPLETED,
                output=outcome.output,
                token_usage=outcome.token_usage,
                ended_at=utc_now(),
            )
            self._store.save_run(done)
            return done, sink.events[first_event:]
        finally:
            with self._lock:
                self._running.pop(run_id, None)

    def cancel(self, execution: Execution) -> Run:
        """Cancel an executing run: it ends ``cancelled``, ``run_cancelled`` is appended, and
        the adapter's ``cancel`` is called; a finished one raises ``ConflictError``."""
        marked = False
        try:
            # Under the execution's lock, so no adapter event slips in between the cancel
            # and its run_cancelled event.
            with execution.lock:
                if execution.cancelled:
                    return execution.run
                if execution.finished:
                    raise ConflictError(f"run {execution.run.id!r} already finished executing")
                execution.cancelled = marked = True
                run = replace(execution.run, status=RunStatus.CANCELLED, ended_at=utc_now())
                execution.run = run
                self._store.save_run(run)
                self._append(EventType.RUN_CANCELLED, run, {}, execution.sink)
            return run
        finally:
            if marked:
                # Outside the lock: an adapter's cancel may wait for its execute to wind down.
                self._adapter.cancel(execution.run.id)

    def _finish_failed(self, execution: Execution, exc: BaseException) -> BaseException:
        """Record the run's failure (unless it was cancelled) and return what to raise."""
        with execution.lock:
            execution.finished = True
            if execution.cancelled:
                return ProviderError(f"run {execution.run.id!r} was cancelled", "cancelled")
            to_raise = exc
            if execution.emit_failure is not None:
                code, to_raise = execution.emit_failure
                _, message, details = describe_error(to_raise)
            else:
                code, message, details = describe_error(exc)
                if not isinstance(exc, SqliteStreamError) and isinstance(exc, Exception):
                    to_raise = ProviderError(message, code)
        try:
            error: dict[str, Any] = {"code": code, "message": message}
            if details:
                error["details"] = details
            if not execution.saw_run_failed:
                data = {"error_code": code, "error_message": message}
                self._append(EventType.RUN_FAILED, execution.run, data, Sink())
            failed = replace(execution.run, status=RunStatus.FAILED, error=error, ended_at=utc_now())
            self._store.save_run(failed)
        except Exception as record_exc:  # noqa: BLE001 - never hide the run's own error behind this one
            to_raise.add_note(f"recording the run failure also failed: {record_exc!r}")
        return to_raise

    def _emitter(self, execution: Execution) -> Callable[[Mapping[str, Any]], StoredEvent]:
        def emit(event_data: Mapping[str, Any]) -> StoredEvent:
            with execution.lock:
                run = execution.run
                if execution.cancelled:
                    raise ProviderError(f"run {run.id!r} was cancelled", "cancelled")
                if execution.finished:
                    raise ProviderError(f"run {run.id!r} already finished", "run_finished")
                try:
                    event = adapter_event(run, execution.session, event_data, self._adapter.name)
                except ValidationError as exc:
                    execution.note_failure("invalid_event", exc)
                    raise
                if event_data.get("id") is None:
                    return self._record(execution, event)
                repeated = execution.emitted.get(event.id)
                if repeated is not None:
                    return repeated  # the adapter re-sent an id: recorded once, delivered once
                stored = self._record(execution, event)
                execution.emitted[event.id] = stored
                return stored

        return emit

    def _record(self, execution: Execution, event: Event) -> StoredEvent:
        """Append one event of an executing run and deliver it; a failure here fails the run
        even if the adapter swallows the exception."""
        try:
            stored = self._store.append_event_with_sequence(event)
        except SqliteStreamError as exc:
            execution.note_failure("storage_error", exc)
            raise
        if stored.type is EventType.RUN_FAILED:
            execution.saw_run_failed = True
        try:
            execution.sink.deliver(stored)
        except BaseException as exc:
            execution.note_failure("callback_error", exc)
            raise
        return stored

    def _event(self, type: EventType, run: Run, data: dict[str, Any]) -> Event:
        return manager_event(self._adapter.name, type, run.session_id, run.id, data)

    def _append(self, type: EventType, run: Run, data: dict[str, Any], sink: Sink) -> StoredEvent:
        return record(self._store, self._event(type, run, data), sink)
