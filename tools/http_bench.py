"""``python -m tools.http_bench [--rounds N] [--appends N] [--followers N] [--json FILE]
[--db postgresql://...] [--no-reference]``: the HTTP server beside the reference Node server
(``@durable-streams/server`` 0.3.7, file-backed: log files and LMDB), in the same run, with the
same clients. With ``--db``, also a PostgreSQL-backed ``serve`` (a fresh schema, dropped after),
as one node and as two nodes on that database: the waiter on node A and the writer on node B,
two writers (one per node) against two on one node, the followers split over the two nodes.

1. **append-to-wake**: a long-poll waiter on one connection, a ``POST`` on another; the time
   from just before the ``POST`` to the waiter holding the data (p50, p99). Measured twice:
   with the waiter a thread of the writer's process, and in a process of its own (in one
   process the waiter also waits for the writer's thread to finish with the ``POST``'s
   response: they share one interpreter lock).
2. **append throughput**: small (64-byte) ``POST``\\ s one after another over one keep-alive
   connection (appends a second).
3. **SSE fan-out**: N followers on one stream, one broadcast append, the time until each
   follower has it (p50, p99, max), and the server's threads and resident memory with all N
   connected; measured twice, with the followers in one asyncio client process and spread over
   ``--client-processes`` processes (the client alone can be what is slow: the last of 2,000
   followers in one event loop reads its frame after the other 1,999). Times are taken with
   the system's monotonic clock, which all processes share; the client processes' CPU time
   for the broadcast is reported beside the server's.
4. **feed SSE fan-out** (``--workloads feed_sse_fan_out``, not run by default): the same with the
   followers on the store-wide feed (``/v1/feed?offset=now&live=sse``) and the broadcast an event
   appended to a new session (sqlitestream only: the reference server has no feed).

The reference server is npm-installed into ``.conformance/`` (as ``tools/conformance.py`` does)
and run by node. Only ratios measured in one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tools.conformance import ROOT
from tools.http_fanout import CpuClock, fan_out, fan_out_spread, feed_fan_out, percentile

REFERENCE = "@durable-streams/server"
REFERENCE_VERSION = "0.3.7"
_NODE_SERVER = """
import { pathToFileURL } from "node:url"
const [modulePath, dataDir] = process.argv.slice(2)
const { DurableStreamTestServer } = await import(pathToFileURL(modulePath).href)
const server = new DurableStreamTestServer({ port: 0, host: "127.0.0.1", dataDir, longPollTimeout: 20000 })
const url = await server.start()
console.log(`serving ${url}`)
process.on("SIGTERM", async () => { await server.stop(); process.exit(0) })
"""


def install_reference(directory: Path) -> Path:
    module = directory / "node_modules" / REFERENCE / "dist" / "index.js"
    package = directory / "node_modules" / REFERENCE / "package.json"
    if not package.exists() or json.loads(package.read_text())["version"] != REFERENCE_VERSION:
        directory.mkdir(parents=True, exist_ok=True)
        if not (directory / "package.json").exists():
            (directory / "package.json").write_text('{"name": "conformance", "private": true}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", f"{REFERENCE}@{REFERENCE_VERSION}"],
            cwd=directory,
            check=True,
        )
    return module


@contextmanager
def server(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """A server process printing ``serving URL``; yields the URL and its pid."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=cwd, env=env)
    assert process.stdout is not None
    line = ""
    for line in process.stdout:  # the reference server logs its recovery first
        if line.startswith("serving "):
            break
    else:
        process.kill()
        raise SystemExit(f"{command[0]} did not start: {line!r}")
    # Keep its pipe drained: a server blocked writing its log would measure the log.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    try:
        yield line.split()[1].rstrip("/"), process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def append_to_wake(
    url: str, rounds: int, writer_url: str | None = None, pid: int | None = None
) -> dict[str, float]:
    """``writer_url``: append through another node (default: the waiter's); ``pid``: the
    server's, for its CPU time a round trip (the writer's node's, with ``writer_url``)."""
    name = f"/v1/stream/wake-{time.monotonic_ns()}"
    stream, written = f"{url}{name}", f"{writer_url or url}{name}"
    headers = {"content-type": "application/octet-stream"}
    with httpx.Client(timeout=30) as writer, httpx.Client(timeout=30) as reader:
        offset = writer.put(written, headers=headers).headers["stream-next-offset"]
        latencies = []
        clock = None if pid is None else CpuClock(pid)
        cpu = None if clock is None else clock.ms()

        def wait(at: str, armed: threading.Event, got: list[float]) -> None:
            armed.set()
            response = reader.get(stream, params={"offset": at, "live": "long-poll"})
            got.append(time.perf_counter())
            assert response.status_code == 200, response.status_code

        for _ in range(rounds):
            got: list[float] = []
            armed = threading.Event()
            waiter = threading.Thread(target=wait, args=(offset, armed, got))
            waiter.start()
            armed.wait()
            time.sleep(0.002)  # let the long-poll reach the server and park (a benchmark, no assertion)
            start = time.perf_counter()
            offset = writer.post(written, content=b"x" * 64, headers=headers).headers["stream-next-offset"]
            waiter.join()
            latencies.append((got[0] - start) * 1000)
    return _wake_figures(latencies, clock, cpu)


def _wake_figures(latencies: list[float], clock: CpuClock | None, cpu: float | None) -> dict[str, float]:
    figures = {"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)}
    if clock is not None and cpu is not None:
        # The server's CPU for a round trip (a long-poll, its wake-up and a POST), which a busy
        # machine changes far less than the latencies.
        figures["server_cpu_us"] = (clock.ms() - cpu) * 1000 / len(latencies)
    return figures


def _waiter_process(stream: str, pipe: Any) -> None:
    """The long-poll waiter of :func:`append_to_wake_across_processes`: for each offset it is
    sent, says "armed", long-polls from it and sends back when it had the data."""
    with httpx.Client(timeout=30) as reader:
        while (offset := pipe.recv()) is not None:
            pipe.send("armed")
            response = reader.get(stream, params={"offset": offset, "live": "long-poll"})
            pipe.send(time.monotonic())
            assert response.status_code == 200, response.status_code


def append_to_wake_across_processes(url: str, rounds: int, pid: int | None = None) -> dict[str, float]:
    """As :func:`append_to_wake`, with the waiter in another process: in one process the
    waiter's thread waits for the writer's thread to finish reading the POST's response (the
    two share one interpreter lock), which the server does not cause. Times from the system's
    monotonic clock, which both processes share."""
    stream = f"{url}/v1/stream/wake2-{time.monotonic_ns()}"
    headers = {"content-type": "application/octet-stream"}
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    child = context.Process(target=_waiter_process, args=(stream, theirs))
    with httpx.Client(timeout=30) as writer:
        offset = writer.put(stream, headers=headers).headers["stream-next-offset"]
        child.start()
        latencies = []
        clock = None if pid is None else CpuClock(pid)
        cpu = None if clock is None else clock.ms()
        try:
            for _ in range(rounds):
                mine.send(offset)
                if mine.recv() != "armed":
                    raise SystemExit("the waiter process did not start its long-poll")
                time.sleep(0.002)  # let the long-poll reach the server and park (a benchmark, no assertion)
                start = time.monotonic()
                offset = writer.post(stream, content=b"x" * 64, headers=headers).headers["stream-next-offset"]
                latencies.append((mine.recv() - start) * 1000)
        finally:
            mine.send(None)
            child.join(timeout=30)
    return _wake_figures(latencies, clock, cpu)


def throughput(url: str, appends: int) -> dict[str, float]:
    return parallel_throughput([url], appends)


def parallel_throughput(urls: list[str], appends: int) -> dict[str, float]:
    """One writer thread per URL, each with its own stream and keep-alive connection,
    ``appends`` in all; appends a second over the whole run."""
    headers = {"content-type": "application/octet-stream"}
    body = b"m" * 64
    barrier = threading.Barrier(len(urls) + 1)

    def write(url: str) -> None:
        stream = f"{url}/v1/stream/tput-{time.monotonic_ns()}-{threading.get_ident()}"
        with httpx.Client(timeout=30) as client:
            client.put(stream, headers=headers)
            barrier.wait()
            for _ in range(appends // len(urls)):
                client.post(stream, content=body, headers=headers)

    writers = [threading.Thread(target=write, args=(url,)) for url in urls]
    for thread in writers:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in writers:
        thread.join()
    elapsed = time.perf_counter() - start
    return {"appends_per_s": (appends // len(urls)) * len(urls) / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="append-to-wake round trips")
    parser.add_argument("--appends", type=int, default=3000, help="appends for the throughput")
    parser.add_argument("--followers", type=int, default=2000, help="SSE followers")
    parser.add_argument(
        "--broadcasts", type=int, default=3, help="broadcasts per fan-out (one after another)"
    )
    parser.add_argument(
        "--client-processes", type=int, default=4, help="client processes for the spread fan-out"
    )
    parser.add_argument("--only", choices=("sqlitestream", "reference"), help="run one server only")
    parser.add_argument(
        "--workloads",
        default="append_to_wake,append_to_wake_across_processes,throughput,sse_fan_out,sse_fan_out_spread",
        help="comma-separated",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--db", help="a postgresql:// URL: also measure PostgreSQL-backed nodes")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference server")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a directory holding another sqlitestream package (say, git archive of main): "
        "also measure its serve, labelled baseline, for A/B runs",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every server's workloads this many times, interleaved"
    )
    args = parser.parse_args(argv)
    module = (
        None if args.no_reference or args.only == "sqlitestream" else install_reference(ROOT / ".conformance")
    )
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="sqlitestream-http-bench-") as scratch:
        ours = [
            sys.executable,
            "-m",
            "sqlitestream",
            "--db",
            os.path.join(scratch, "store.db"),
            "serve",
            "--port",
            "0",
        ]
        servers: list[tuple[str, list[str], Path | None, dict[str, str] | None]] = [
            ("sqlitestream", ours, None, None)
        ]
        if args.baseline is not None and args.only in (None, "sqlitestream"):
            # Run from its directory: ``-m`` puts the working directory first on the path.
            baseline = args.baseline.resolve()
            baseline_env = {**os.environ, "PYTHONPATH": str(baseline)}
            command = [*ours[:4], os.path.join(scratch, "baseline.db"), *ours[5:]]
            servers.append(("baseline", command, baseline, baseline_env))
        if module is not None:
            script = Path(scratch) / "reference.mjs"
            script.write_text(_NODE_SERVER)
            servers.append(
                (
                    "reference",
                    ["node", str(script), str(module), os.path.join(scratch, "reference-data")],
                    None,
                    None,
                )
            )
        workloads = {
            "append_to_wake": lambda url, pid: append_to_wake(url, args.rounds, pid=pid),
            "append_to_wake_across_processes": lambda url, pid: append_to_wake_across_processes(
                url, args.rounds, pid
            ),
            "throughput": lambda url, pid: throughput(url, args.appends),
            "sse_fan_out": lambda url, pid: fan_out(url, pid, args.followers, args.broadcasts),
            "feed_sse_fan_out": lambda url, pid: feed_fan_out(url, pid, args.followers, args.broadcasts),
            "sse_fan_out_spread": lambda url, pid: fan_out_spread(
                url, pid, args.followers, args.client_processes, args.broadcasts
            ),
        }
        chosen = [name.strip() for name in args.workloads.split(",") if name.strip()]
        unknown = set(chosen) - set(workloads)
        if unknown:
            parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
        for repeat in range(args.repeat):
            for label, command, cwd, env in servers:
                if args.only not in (None, label) and label != "baseline":
                    continue
                run_label = label if args.repeat == 1 else f"{label} #{repeat + 1}"
                with server(command, cwd, env) as (url, pid):
                    # The reference server has no store-wide feed.
                    runs = [name for name in chosen if label != "reference" or not name.startswith("feed")]
                    results[run_label] = {}
                    for name in runs:
                        results[run_label][name] = measured = workloads[name](url, pid)
                        # As it goes too: a later workload failing (a timeout) keeps these.
                        print(f"{run_label} {name}: {json.dumps(measured)}", file=sys.stderr, flush=True)
    if args.db:
        results.update(postgres_nodes(args.db, args.rounds, args.appends, args.followers, chosen))
    for workload in chosen:
        print(workload)
        for label, figures in results.items():
            if workload in figures:
                shown = ", ".join(f"{key} {value:.1f}" for key, value in figures[workload].items())
                print(f"  {label:20} {shown}")
    ratios: dict[str, float] = {}
    if "throughput" in chosen and "reference" in results and "sqlitestream" in results:
        ratios["sqlitestream / reference"] = (
            results["sqlitestream"]["throughput"]["appends_per_s"]
            / results["reference"]["throughput"]["appends_per_s"]
        )
    if args.db and "throughput" in chosen:
        ratios["postgres 2 nodes / 1 node"] = (
            results["postgres-2-nodes"]["throughput"]["appends_per_s"]
            / results["postgres-1-node"]["throughput"]["appends_per_s"]
        )
    for label, ratio in ratios.items():
        print(f"throughput ratio ({label}): {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({**results, "throughput_ratios": ratios}, indent=2))
    return 0


def postgres_nodes(
    dsn: str, rounds: int, appends: int, followers: int, chosen: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """One and two PostgreSQL-backed ``serve`` nodes on a fresh schema of ``dsn``: the
    ``chosen`` workloads but the spread fan-out (the two-node figures are the comparison)."""
    from tools.conformance import drop_schema

    schema = f"sqlitestream_http_bench_{time.monotonic_ns() % 10**9}"
    location = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    command = [sys.executable, "-m", "sqlitestream", "--db", location, "serve", "--port", "0"]
    try:
        with server(command) as (url_a, pid_a), server(command) as (url_b, _pid_b):
            workloads: dict[str, tuple[Callable[[], dict[str, float]], Callable[[], dict[str, float]]]] = {
                "append_to_wake": (
                    lambda: append_to_wake(url_a, rounds),
                    lambda: append_to_wake(url_a, rounds, writer_url=url_b),
                ),
                "throughput": (
                    lambda: parallel_throughput([url_a, url_a], appends),
                    lambda: parallel_throughput([url_a, url_b], appends),
                ),
                "sse_fan_out": (
                    lambda: fan_out(url_a, pid_a, followers),
                    lambda: fan_out(url_a, pid_a, followers, more_urls=(url_b,)),
                ),
                "feed_sse_fan_out": (
                    lambda: feed_fan_out(url_a, pid_a, followers),
                    lambda: feed_fan_out(url_a, pid_a, followers, more_urls=(url_b,)),
                ),
            }
            one: dict[str, dict[str, float]] = {}
            two: dict[str, dict[str, float]] = {}
            for name in chosen:
                if name in workloads:
                    one[name] = workloads[name][0]()
                    two[name] = workloads[name][1]()
            return {"postgres-1-node": one, "postgres-2-nodes": two}
    finally:
        drop_schema(dsn, schema)


if __name__ == "__main__":
    sys.exit(main())
