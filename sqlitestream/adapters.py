"""Provider adapters: what runs an agent for :class:`~sqlitestream.manager.SessionManager`.

An adapter is anything with the :class:`ProviderAdapter` shape. While it executes a run it calls
``emit(event_data)`` for each event as it happens; the manager normalises the event's type,
stamps it, appends it and hands the stored event to the caller's callback.

Two adapters ship: :class:`ScriptedAdapter` replays a fixed script (tests, demos, examples) and
:class:`CommandAdapter` runs a real subprocess that prints one JSON object per line (an agent
command-line tool, or any script).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, runtime_checkable

from sqlitestream._core.validate import check_int, check_json_object, describe
from sqlitestream.errors import ProviderError, ValidationError
from sqlitestream.models import Event, EventType, Run, Session

__all__ = [
    "EVENT_TYPE_ALIASES",
    "CommandAdapter",
    "Emit",
    "ProviderAdapter",
    "ProviderError",
    "RunOutcome",
    "ScriptedAdapter",
    "normalise_event_type",
]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What a successful ``execute`` returns.

    ``output`` and ``token_usage`` become the run's; ``events`` is the adapter's own account of
    what it emitted, passed back for information only: the manager records events solely
    through ``emit``, so nothing here is appended twice.
    """

    output: dict[str, Any] = field(default_factory=dict)
    token_usage: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", check_json_object(self.output, "output"))
        object.__setattr__(self, "token_usage", check_json_object(self.token_usage, "token_usage"))
        if not isinstance(self.events, list):
            raise ValidationError(f"events must be a list of dicts, got {describe(self.events)}")


Emit = Callable[[Mapping[str, Any]], Event]
"""``emit(event_data) -> Event``: record one adapter event now; returns the stored event.

``event_data`` keys: ``type`` (an ``EventType``, a canonical string, or a provider string that
is normalised), and optionally ``data`` (dict), ``metadata`` (dict), ``timestamp`` (aware
datetime or ISO 8601 string with an offset), ``status`` (refines a ``done``-like type), ``id``
(makes the emit idempotent). Raises ``ValidationError`` for bad event data, a store error if
the append failed, or ``ProviderError(code="cancelled")`` once the run was cancelled; any of
these fails the run even if the adapter catches it.
"""


@runtime_checkable
class ProviderAdapter(Protocol):
    """The shape of an adapter. ``name`` is stored as ``metadata["provider"]`` on every event."""

    name: str

    def capabilities(self) -> set[str] | frozenset[str]:
        """Capability names, e.g. ``{"chat", "tool", "streaming"}``."""
        ...

    def execute(self, run: Run, session: Session, emit: Emit, **adapter_opts: Any) -> RunOutcome:
        """Run the agent, calling ``emit`` per event as it happens; raise ``ProviderError`` on
        failure. May be called from any thread; ``cancel`` may be called from another."""
        ...

    def cancel(self, run_id: str) -> None:
        """Stop the run with this id if it is executing here; a no-op otherwise."""
        ...


# Normalisation ----------------------------------------------------------------------------

EVENT_TYPE_ALIASES: Mapping[str, EventType] = {
    **{
        alias: EventType.MESSAGE_STREAMED
        for alias in ("delta", "chunk", "text_delta", "content_delta", "content_block_delta", "stream")
    },
    **{alias: EventType.TOOL_CALL_STARTED for alias in ("tool_use", "function_call", "tool_call")},
    **{alias: EventType.TOOL_CALL_COMPLETED for alias in ("tool_result", "function_result")},
    "tool_error": EventType.TOOL_CALL_FAILED,
    "usage": EventType.TOKEN_USAGE_UPDATED,
    **{alias: EventType.RUN_STARTED for alias in ("start", "run_start")},
    **{
        alias: EventType.RUN_COMPLETED
        for alias in ("done", "complete", "completed", "run_end", "end", "finish", "finished")
    },
    **{alias: EventType.MESSAGE_RECEIVED for alias in ("message", "assistant", "response")},
    **{alias: EventType.ERROR_OCCURRED for alias in ("error", "exception")},
}
"""Provider type strings and the event type each becomes. Keys are compared after lowercasing
and turning ``-``, ``.`` and spaces into ``_``. A ``run_completed`` alias is refined by the
event's ``status`` (see :func:`normalise_event_type`)."""

_STATUS_REFINEMENTS: Mapping[str, EventType] = {
    "error": EventType.RUN_FAILED,
    "failed": EventType.RUN_FAILED,
    "failure": EventType.RUN_FAILED,
    "cancelled": EventType.RUN_CANCELLED,
    "canceled": EventType.RUN_CANCELLED,
    "timeout": EventType.RUN_TIMEOUT,
    "timed_out": EventType.RUN_TIMEOUT,
}

_CANONICAL = {member.value: member for member in EventType}


def _key(text: str) -> str:
    return text.strip().lower().replace("-", "_").replace(".", "_").replace(" ", "_")


def normalise_event_type(raw: object, *, status: object = None) -> tuple[EventType, str | None]:
    """The stored type for an adapter's ``type``, and the original string if it was unknown.

    An ``EventType`` or a canonical string maps to itself; an alias maps through
    :data:`EVENT_TYPE_ALIASES`; a ``done``-like alias with ``status`` error/failed/failure,
    cancelled/canceled or timeout/timed_out becomes ``run_failed``, ``run_cancelled`` or
    ``run_timeout``. Any other string gives ``(ERROR_OCCURRED, raw)``. A non-string type raises
    ``ValidationError``.
    """
    if isinstance(raw, EventType):
        return raw, None
    if not isinstance(raw, str):
        raise ValidationError(f"event_data['type'] must be a string, got {describe(raw)}")
    key = _key(raw)
    canonical = _CANONICAL.get(key)
    if canonical is not None:
        return canonical, None
    alias = EVENT_TYPE_ALIASES.get(key)
    if alias is None:
        return EventType.ERROR_OCCURRED, raw
    if alias is EventType.RUN_COMPLETED and isinstance(status, str):
        return _STATUS_REFINEMENTS.get(_key(status), alias), None
    return alias, None


# ScriptedAdapter --------------------------------------------------------------------------


class _Cancellations:
    """Per-run cancel flags an adapter's ``execute`` can wait on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, threading.Event] = {}

    def register(self, run_id: str) -> threading.Event:
        with self._lock:
            return self._flags.setdefault(run_id, threading.Event())

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._flags.pop(run_id, None)

    def cancel(self, run_id: str) -> bool:
        with self._lock:
            flag = self._flags.get(run_id)
        if flag is None:
            return False
        flag.set()
        return True


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"name must be a non-empty string, got {describe(name)}")
    return name


def _check_capabilities(capabilities: object) -> frozenset[str]:
    if isinstance(capabilities, str) or not isinstance(capabilities, Iterable):
        raise ValidationError(f"capabilities must be a collection of strings, got {describe(capabilities)}")
    checked = frozenset(capabilities)
    for item in checked:
        if not isinstance(item, str):
            raise ValidationError(f"capabilities must hold strings, got {describe(item)}")
    return checked


_DEFAULT_CAPABILITIES = frozenset({"chat", "streaming", "tool"})


class ScriptedAdapter:
    """Replays ``events`` (event dicts as passed to ``emit``), ``delay_ms`` apart, then returns
    ``outcome`` (default: an empty output) or raises ``error`` if one is given.

    Each execute replays the whole script. ``cancel`` stops a replay between events (the wait
    is interrupted at once); the execute then raises ``ProviderError(code="cancelled")``.
    """

    def __init__(
        self,
        events: Sequence[Mapping[str, Any]] = (),
        *,
        name: str = "scripted",
        capabilities: Iterable[str] = _DEFAULT_CAPABILITIES,
        delay_ms: int = 0,
        outcome: RunOutcome | None = None,
        error: BaseException | None = None,
    ) -> None:
        if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Sequence):
            raise ValidationError(f"events must be a list of dicts, got {describe(events)}")
        for index, item in enumerate(events):
            if not isinstance(item, Mapping):
                raise ValidationError(f"events[{index}] must be a dict, got {describe(item)}")
        self.name = _check_name(name)
        self._capabilities = _check_capabilities(capabilities)
        self._events = [dict(item) for item in events]
        self._delay_s = (check_int(delay_ms, "delay_ms", minimum=0, allow_none=False) or 0) / 1000
        if outcome is not None and not isinstance(outcome, RunOutcome):
            raise ValidationError(f"outcome must be a RunOutcome, got {describe(outcome)}")
        if error is not None and not isinstance(error, BaseException):
            raise ValidationError(f"error must be an exception, got {describe(error)}")
        self._outcome = outcome
        self._error = error
        self._cancellations = _Cancellations()

    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    def execute(self, run: Run, session: Session, emit: Emit, **adapter_opts: Any) -> RunOutcome:
        cancelled = self._cancellations.register(run.id)
        try:
            emitted: list[dict[str, Any]] = []
            for index, item in enumerate(self._events):
                if self._delay_s and index > 0:
                    cancelled.wait(self._delay_s)
                if cancelled.is_set():
                    raise ProviderError(f"run {run.id!r} was cancelled", "cancelled")
                emit(dict(item))
                emitted.append(dict(item))
            if self._error is not None:
                raise self._error
            if self._outcome is not None:
                return self._outcome
            return RunOutcome(events=emitted)
        finally:
            self._cancellations.forget(run.id)

    def cancel(self, run_id: str) -> None:
        self._cancellations.cancel(run_id)


# CommandAdapter ---------------------------------------------------------------------------

_STDIN_MODES = ("prompt", "json", "none")
_RESULT_TYPE = "result"
_EVENT_KEYS = ("type", "data", "metadata", "timestamp", "status", "id")
_TERMINATE_GRACE_S = 2.0


def prompt_of(run_input: Mapping[str, Any] | None) -> str:
    """The prompt text of a run input: ``input["prompt"]``, else the last user message's
    string content, else ``""``."""
    if not run_input:
        return ""
    prompt = run_input.get("prompt")
    if isinstance(prompt, str) and prompt:
        return prompt
    messages = run_input.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, Mapping) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
    return ""


def _json_event(text: str) -> dict[str, Any] | None:
    """The line as a JSON object with a string ``type``, else ``None``."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if isinstance(parsed, dict) and isinstance(parsed.get("type"), str):
        return parsed
    return None


def _event_from_line(text: str, parsed: dict[str, Any] | None) -> dict[str, Any]:
    if parsed is None:
        return {"type": EventType.MESSAGE_STREAMED, "data": {"text": text}}
    event = {key: parsed[key] for key in _EVENT_KEYS if key in parsed}
    if not isinstance(parsed.get("data"), dict):
        # A flat line such as {"type": "delta", "text": "hi"}: the other keys are the data.
        event["data"] = {k: v for k, v in parsed.items() if k not in _EVENT_KEYS}
    return event


def _outcome_from_result(result: Mapping[str, Any], token_usage: dict[str, Any]) -> RunOutcome:
    output = result.get("output")
    if not isinstance(output, dict):
        output = {k: v for k, v in result.items() if k not in ("type", "token_usage", "usage")}
    usage = result.get("token_usage", result.get("usage"))
    return RunOutcome(output=output, token_usage=usage if isinstance(usage, dict) else token_usage)


class CommandAdapter:
    """Runs ``argv`` as a subprocess per run and turns its stdout into events.

    Input: every ``{prompt}`` inside an ``argv`` item is replaced by the run's prompt (see
    :func:`prompt_of`); ``stdin="prompt"`` (default) also writes the prompt text to its stdin,
    ``stdin="json"`` writes the whole run input as one JSON line, ``stdin="none"`` gives it no
    input. Either way stdin is then closed.

    Output: each stdout line that is a JSON object with a string ``type`` is emitted as an
    event (keys ``data``/``metadata``/``timestamp``/``status``/``id`` as in ``emit``; without a
    ``data`` object, the remaining keys become the data). Any other non-blank line is emitted as
    ``message_streamed`` with ``{"text": line}``. A ``{"type": "result", ...}`` object is not
    an event: it is the outcome (its ``output`` object, or its other keys, and its
    ``token_usage``/``usage``). Without one, a clean exit gives output ``{"exit_code": 0}`` and
    the data of the last ``token_usage_updated`` event as token usage.

    A non-zero exit raises ``ProviderError(code="command_failed")`` with ``exit_code`` and the
    last ``stderr_tail_chars`` of stderr in its message and ``details``. ``cancel`` sends
    SIGTERM to the process group (the command and anything it started), then SIGKILL after a
    grace period. The subprocess always ends before ``execute`` returns or raises.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str = "command",
        capabilities: Iterable[str] = frozenset({"chat", "streaming"}),
        stdin: str = "prompt",
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stderr_tail_chars: int = 4000,
    ) -> None:
        if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence) or not argv:
            raise ValidationError(f"argv must be a non-empty list of strings, got {describe(argv)}")
        for index, item in enumerate(argv):
            if not isinstance(item, str):
                raise ValidationError(f"argv[{index}] must be a string, got {describe(item)}")
        if stdin not in _STDIN_MODES:
            raise ValidationError(f"stdin must be one of {', '.join(_STDIN_MODES)}; got {describe(stdin)}")
        self.argv = list(argv)
        self.name = _check_name(name)
        self._capabilities = _check_capabilities(capabilities)
        self._stdin_mode = stdin
        self._env = None if env is None else dict(env)
        self._cwd = cwd
        self._tail_chars = check_int(stderr_tail_chars, "stderr_tail_chars", minimum=1, allow_none=False) or 1
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen[str]] = {}
        self._cancelled: set[str] = set()

    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    def execute(self, run: Run, session: Session, emit: Emit, **adapter_opts: Any) -> RunOutcome:
        prompt = prompt_of(run.input)
        argv = [item.replace("{prompt}", prompt) for item in self.argv]
        proc = self._spawn(run.id, argv)
        stderr_tail: collections.deque[str] = collections.deque()
        helpers = [
            threading.Thread(
                target=self._feed, args=(proc.stdin, self._stdin_text(run, prompt)), daemon=True
            ),
            threading.Thread(target=self._drain, args=(proc.stderr, stderr_tail), daemon=True),
        ]
        for helper in helpers:
            helper.start()
        try:
            result: dict[str, Any] | None = None
            usage: dict[str, Any] = {}
            assert proc.stdout is not None
            for line in proc.stdout:
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                parsed = _json_event(text)
                if parsed is not None and parsed["type"] == _RESULT_TYPE:
                    result = parsed
                    continue
                stored = emit(_event_from_line(text, parsed))
                if stored.type is EventType.TOKEN_USAGE_UPDATED:
                    usage = stored.data
            code = proc.wait()
        finally:
            self._stop(proc)
            for helper in helpers:
                helper.join()
            with self._lock:
                self._processes.pop(run.id, None)
                cancelled = run.id in self._cancelled
                self._cancelled.discard(run.id)
        if cancelled:
            raise ProviderError(f"run {run.id!r} was cancelled", "cancelled")
        if code != 0:
            tail = "".join(stderr_tail)[-self._tail_chars :]
            raise ProviderError(
                f"command {argv[0]!r} exited with code {code}"
                + (f": {tail.strip()}" if tail.strip() else ""),
                "command_failed",
                details={"exit_code": code, "stderr_tail": tail},
            )
        if result is not None:
            return _outcome_from_result(result, usage)
        return RunOutcome(output={"exit_code": 0}, token_usage=usage)

    def cancel(self, run_id: str) -> None:
        with self._lock:
            # Remembered even before the process exists, so a cancel racing the spawn holds.
            self._cancelled.add(run_id)
            proc = self._processes.get(run_id)
        if proc is None:
            return
        self._terminate(proc)

    def _terminate(self, proc: subprocess.Popen[str]) -> None:
        _signal_group(proc, signal.SIGTERM)
        # Escalate from a helper thread so the caller of cancel() does not wait for the grace.
        threading.Thread(target=self._kill_after_grace, args=(proc,), daemon=True).start()

    # Process plumbing ---------------------------------------------------------------------

    def _stdin_text(self, run: Run, prompt: str) -> str | None:
        if self._stdin_mode == "prompt":
            return prompt
        if self._stdin_mode == "json":
            return json.dumps(run.input or {}, ensure_ascii=False) + "\n"
        return None

    def _spawn(self, run_id: str, argv: list[str]) -> subprocess.Popen[str]:
        env = None if self._env is None else {**os.environ, **self._env}
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=env,
                cwd=self._cwd,
                # Its own process group, so cancel reaches everything the command starts.
                start_new_session=os.name == "posix",
                creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            )
        except OSError as exc:
            with self._lock:
                self._cancelled.discard(run_id)
            code = "command_not_found" if isinstance(exc, FileNotFoundError) else "provider_error"
            raise ProviderError(f"cannot start {argv[0]!r}: {exc}", code) from exc
        with self._lock:
            self._processes[run_id] = proc
            cancelled = run_id in self._cancelled
        if cancelled:
            self._terminate(proc)
        return proc

    @staticmethod
    def _feed(pipe: IO[str] | None, text: str | None) -> None:
        if pipe is None:
            return
        try:
            if text:
                pipe.write(text)
        except (BrokenPipeError, OSError, ValueError):
            pass  # the command exited without reading its input: its exit code tells the story
        finally:
            try:
                pipe.close()
            except (BrokenPipeError, OSError):
                pass

    def _drain(self, pipe: IO[str] | None, tail: collections.deque[str]) -> None:
        if pipe is None:
            return
        kept = 0
        for chunk in iter(lambda: pipe.read(1024), ""):
            tail.append(chunk)
            kept += len(chunk)
            while tail and kept - len(tail[0]) >= self._tail_chars:
                kept -= len(tail.popleft())

    def _kill_after_grace(self, proc: subprocess.Popen[str]) -> None:
        try:
            proc.wait(_TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc, getattr(signal, "SIGKILL", signal.SIGTERM))

    def _stop(self, proc: subprocess.Popen[str]) -> None:
        """End the process group (if still running), reap it and close its pipes."""
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            self._kill_after_grace(proc)
        else:
            # The leader exited; anything it left behind in its group is asked to go too.
            _signal_group(proc, signal.SIGTERM)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone
