"""What the wake-latency tools (``tools/waiters.py``, ``tools/async_followers.py``) share: when
the process has gone quiet (its waiters armed), and the garbage collector's full collections,
whose pauses hold every thread and the event loop."""

from __future__ import annotations

import gc
import time

QUIET_WINDOW_S = 0.5
QUIET_SHARE = 0.05  # CPU time per wall-clock second below which the process counts as quiet


def is_quiet(cpu_before: float, window_s: float = QUIET_WINDOW_S) -> bool:
    """Whether the CPU time this process used since ``cpu_before`` (``time.process_time()``
    taken ``window_s`` ago) is under :data:`QUIET_SHARE` of the window."""
    return time.process_time() - cpu_before < QUIET_SHARE * window_s


def until_quiet(limit_s: float = 120.0) -> None:
    """Return once this process has gone quiet over one window, or after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        cpu = time.process_time()
        time.sleep(QUIET_WINDOW_S)
        if is_quiet(cpu):
            return


class FullCollections:
    """The garbage collector's full (generation 2) collections between start() and stop(),
    and the longest pause among them."""

    def __init__(self) -> None:
        self.count = 0
        self.longest = 0.0
        self._began = 0.0

    def start(self) -> None:
        gc.callbacks.append(self._on_collect)

    def stop(self) -> None:
        gc.callbacks.remove(self._on_collect)

    def summary(self) -> str:
        return f"full collections {self.count}, longest {self.longest * 1000:.0f} ms"

    def _on_collect(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.count += 1
            self.longest = max(self.longest, time.perf_counter() - self._began)
