"""Where the test suite spends its CPU: a pytest plugin and a report over what it records.

On a shared machine wall time says more about the neighbours than about the suite, so this
measures CPU: for each test, the user+sys time of the pytest process (``RUSAGE_SELF``) and of
the child processes it waited for (``RUSAGE_CHILDREN``) across setup, call and teardown, plus
the wall time (the critical path with two workers is bounded by the longest tests).

    python -m pytest -q -p tools.suite_profile --suite-profile=/tmp/prof   # one JSON per worker
    python -m tools.suite_profile /tmp/prof                                 # per file, top tests

Children still running when a test ends (a server a fixture keeps for the module) are counted
to the test that waits for them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

Sample = dict[str, float]

# Processes this process starts (multiprocessing's spawn and forkserver start theirs through
# _posixsubprocess without an audit event, and grandchildren are not seen: a lower bound).
_SPAWNS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty"})


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


class _Recorder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.tests: dict[str, Sample] = {}
        self.started = time.monotonic()
        self.cpu_at_start = _cpu()
        self.spawned = 0
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event in _SPAWNS:
            self.spawned += 1

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, Any, None]:
        own, children = _cpu()
        wall = time.monotonic()
        spawned = self.spawned
        yield
        own_after, children_after = _cpu()
        self.tests[item.nodeid] = {
            "self": own_after - own,
            "children": children_after - children,
            "wall": time.monotonic() - wall,
            "spawned": self.spawned - spawned,
        }

    def pytest_sessionfinish(self) -> None:
        own, children = _cpu()
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.directory.mkdir(parents=True, exist_ok=True)
        report = {
            "worker": worker,
            "wall": time.monotonic() - self.started,
            # From the plugin's start (after this process imported pytest and its plugins).
            "self": own,
            "children": children,
            "tests": self.tests,
        }
        (self.directory / f"{worker}.json").write_text(json.dumps(report))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--suite-profile", metavar="DIR", help="write per-test CPU and wall times to DIR")


def pytest_configure(config: pytest.Config) -> None:
    directory = config.getoption("--suite-profile")
    if directory:  # the xdist controller too: its own CPU counts, it runs no tests
        config.pluginmanager.register(_Recorder(Path(directory)), "suite-profile-recorder")


def _load(directory: Path) -> tuple[list[dict[str, Any]], dict[str, Sample]]:
    workers = [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]
    tests: dict[str, Sample] = {}
    for worker in workers:
        tests.update(worker["tests"])
    return workers, tests


def report(directory: Path, top: int) -> str:
    workers, tests = _load(directory)
    lines = []
    for worker in workers:
        lines.append(
            f"worker {worker['worker']}: wall {worker['wall']:.1f} s, cpu self {worker['self']:.1f} s"
            f" + children {worker['children']:.1f} s"
        )
    per_file: dict[str, Sample] = {}
    for nodeid, sample in tests.items():
        entry = per_file.setdefault(
            nodeid.split("::")[0], {"self": 0.0, "children": 0.0, "wall": 0.0, "spawned": 0, "n": 0}
        )
        for key in ("self", "children", "wall", "spawned"):
            entry[key] += sample.get(key, 0)
        entry["n"] += 1
    total = {
        key: sum(sample.get(key, 0) for sample in tests.values())
        for key in ("self", "children", "wall", "spawned")
    }
    lines.append(
        f"{len(tests)} tests: cpu self {total['self']:.1f} s + children {total['children']:.1f} s"
        f" = {total['self'] + total['children']:.1f} s; sum of wall {total['wall']:.1f} s;"
        f" {int(total['spawned'])} processes started"
    )
    lines.append("")
    lines.append(f"{'file':46} {'n':>5} {'cpu':>7} {'self':>7} {'child':>7} {'wall':>7} {'procs':>5}")
    for name, entry in sorted(per_file.items(), key=lambda item: -(item[1]["self"] + item[1]["children"])):
        cpu = entry["self"] + entry["children"]
        lines.append(
            f"{name:46} {int(entry['n']):5} {cpu:7.2f} {entry['self']:7.2f} {entry['children']:7.2f}"
            f" {entry['wall']:7.2f} {int(entry['spawned']):5}"
        )
    for key, title in (("cpu", "by cpu"), ("wall", "by wall")):
        lines.append("")
        lines.append(f"top {top} tests {title}:")

        def measure(sample: Sample, key: str = key) -> float:
            return sample["self"] + sample["children"] if key == "cpu" else sample["wall"]

        ranked = sorted(tests.items(), key=lambda item: -measure(item[1]))[:top]
        for nodeid, sample in ranked:
            lines.append(
                f"  {sample['self'] + sample['children']:6.2f} cpu {sample['wall']:6.2f} wall  {nodeid}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    print(report(args.directory, args.top))


if __name__ == "__main__":
    main()
