"""Child processes forked from a server process that has imported their code once
(multiprocessing's forkserver start method), behind the part of ``subprocess.Popen`` the tools
and the tests use.

A new interpreter imports the package, and the tool, before it does anything: 0.1-0.5 s of CPU
a child (more where PYTHONDONTWRITEBYTECODE is set, as in many containers: the checkout is then
compiled from source each time), more than the work of many of them. A child of the server
starts in milliseconds and is still another OS process, with its own files, connections, pid
and signals: what a crash test kills or a race runs in. A test about an interpreter's own start
(imports, the environment, exit codes of ``python``) runs ``subprocess`` instead.

There is one server per process (multiprocessing keeps one), started by the first
:func:`context` call with every module :func:`configure` was given until then.
"""

from __future__ import annotations

import contextlib
import functools
import io
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["Child", "configure", "context"]

_PRELOAD: list[str] = []
_PATH: list[str] = []


def configure(*, preload: Iterable[str] = (), path: Iterable[str] = ()) -> None:
    """Have the server import the modules ``preload`` as it starts (one that cannot be imported
    is skipped) with the directories ``path`` first on its import path. Only what is configured
    before this process's server starts takes effect."""
    _PRELOAD.extend(module for module in preload if module not in _PRELOAD)
    _PATH.extend(directory for directory in path if directory not in _PATH)


def context() -> multiprocessing.context.ForkServerContext:
    """The forkserver context, its server started (once per process) with what was configured."""
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(list(_PRELOAD))
    _start(os.getpid())
    return forkserver


@functools.cache
def _start(pid: int) -> None:
    """Start this process's server once (``pid``: a forked process starts its own).

    Before Python 3.12.8 and 3.13.1 the server ignores the caller's ``sys.path`` (CPython
    gh-117378): a module found only through it (the tools run from a checkout, the tests'
    helpers) fails to preload without a word and every child imports it again. PYTHONPATH
    carries the path instead, the workaround the fix names; PYTHONSAFEPATH keeps the server's
    working directory off it."""
    directories = [*_PATH, *(entry or os.getcwd() for entry in sys.path)]
    with _environment(PYTHONPATH=os.pathsep.join(dict.fromkeys(directories)), PYTHONSAFEPATH="1"):
        multiprocessing.forkserver.ensure_running()


@contextlib.contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """Set ``variables`` in this process's environment for the ``with`` block."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Child:
    """``target(*args)`` in a child of :func:`context`'s server, with ``environment`` added to
    its environment. Its standard output and error are pipes (``stdout``, ``stderr``; errors go
    to the file ``stderr_path`` instead when given, and ``stderr`` is then None); with
    ``stdin=True`` its standard input is a pipe too (``stdin``), otherwise it reads nothing. The
    streams are text unless ``text=False``. Like ``Popen``: ``pid``, ``poll``, ``wait``,
    ``communicate``, ``send_signal``, ``terminate``, ``kill``; ``stop`` terminates it and kills it
    if it lingers. Its exit code is what ``target`` returns, as a console script's is what its
    ``main`` returns (None: 0), or its ``SystemExit`` code; 1 when it raises (the traceback on
    its stderr), ``-N`` after signal N. ``close`` (or leaving it as a context manager) kills it
    if it still runs and closes the streams."""

    def __init__(
        self,
        target: Callable[..., object],
        args: Sequence[object] = (),
        *,
        environment: dict[str, str] | None = None,
        stdin: bool = False,
        stderr_path: Path | None = None,
        text: bool = True,
    ) -> None:
        self.args = [getattr(target, "__qualname__", repr(target)), *map(str, args)]
        in_receiver, in_sender = multiprocessing.Pipe(duplex=False) if stdin else (None, None)
        out_receiver, out_sender = multiprocessing.Pipe(duplex=False)
        err_receiver, err_sender = multiprocessing.Pipe(duplex=False) if stderr_path is None else (None, None)
        errors_to = err_sender if stderr_path is None else str(stderr_path)
        self._process = context().Process(
            target=_bootstrap,
            args=(target, tuple(args), dict(environment or {}), in_receiver, out_sender, errors_to),
        )
        self._process.start()
        assert self._process.pid is not None
        self.pid: int = self._process.pid
        mode = "w" if text else "wb"
        self.stdin: IO[Any] | None = None if in_sender is None else _stream(in_receiver, in_sender, mode)
        self.stdout: IO[Any] = _stream(out_sender, out_receiver, mode.replace("w", "r"))
        self.stderr: IO[Any] | None = (
            None if err_receiver is None else _stream(err_sender, err_receiver, mode.replace("w", "r"))
        )

    @property
    def returncode(self) -> int | None:
        code: int | None = self._process.exitcode
        return code

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self.returncode
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def communicate(self, timeout: float | None = None) -> tuple[Any, Any]:
        """Close ``stdin``, read ``stdout`` and ``stderr`` to their ends (then close them), and
        wait: ``(stdout, stderr)``, ``stderr`` None when it goes to a file."""
        if self.stdin is not None:
            self.stdin.close()
        errors: list[Any] = []
        if self.stderr is not None:
            stderr = self.stderr
            reader = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
            reader.start()
        out = self.stdout.read()
        self.stdout.close()
        if self.stderr is not None:
            reader.join(timeout)
            self.stderr.close()
        self.wait(timeout)
        return out, errors[0] if errors else None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, a wait of up to ``timeout`` seconds for it to end, then :meth:`close`."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):  # killed by close() then
            self.wait(timeout)
        self.close()

    def close(self) -> None:
        self.kill()
        self.wait(timeout=30)
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _stream(closed: Any, kept: Any, mode: str) -> IO[Any]:
    """This process's end ``kept`` of a pipe as a file object (its copy of the child's end
    ``closed`` closed, so that reading ends when the child does)."""
    closed.close()
    stream: IO[Any] = open(os.dup(kept.fileno()), mode, encoding=None if "b" in mode else "utf-8")  # noqa: SIM115
    kept.close()
    return stream


def _bootstrap(
    target: Callable[..., object],
    args: tuple[object, ...],
    environment: dict[str, str],
    stdin: Any,
    stdout: Any,
    stderr: Any,
) -> None:
    """In the child: the pipes become its file descriptors 0, 1 and 2 (and ``sys``'s streams on
    them, made as a new interpreter makes them), then ``target(*args)`` runs."""
    os.environ.update(environment)
    if stdin is None:
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, 0)
        os.close(fd)
    else:
        os.dup2(stdin.fileno(), 0)
        stdin.close()
    os.dup2(stdout.fileno(), 1)
    stdout.close()
    if isinstance(stderr, str):
        with open(stderr, "ab") as log:
            os.dup2(log.fileno(), 2)
    else:
        os.dup2(stderr.fileno(), 2)
        stderr.close()
    # As a new interpreter makes them: stdout buffered on a pipe unless PYTHONUNBUFFERED is set,
    # stderr written at once.
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "rb", closefd=False), encoding="utf-8")
    out = io.FileIO(1, "wb", closefd=False)
    sys.stdout = io.TextIOWrapper(
        out if unbuffered else io.BufferedWriter(out), encoding="utf-8", write_through=unbuffered
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "wb", closefd=False), encoding="utf-8", errors="backslashreplace", write_through=True
    )
    raise SystemExit(target(*args))
