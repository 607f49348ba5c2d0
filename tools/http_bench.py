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
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tools.conformance import ROOT

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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


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
        cpu = None if pid is None else _cpu_ms(pid)

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
    return _wake_figures(latencies, pid, cpu)


def _wake_figures(latencies: list[float], pid: int | None, cpu: float | None) -> dict[str, float]:
    figures = {"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)}
    if pid is not None and cpu is not None:
        # The server's CPU for a round trip (a long-poll, its wake-up and a POST), which a busy
        # machine changes far less than the latencies.
        figures["server_cpu_us"] = (_cpu_ms(pid) - cpu) * 1000 / len(latencies)
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
        cpu = None if pid is None else _cpu_ms(pid)
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
    return _wake_figures(latencies, pid, cpu)


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


class _Broadcasts:
    """The broadcasts of one fan-out, sent one after another (the next once every follower
    has the last), and when each follower had each. A payload ends in ``!`` so that no
    broadcast's payload is a prefix of a later one's."""

    def __init__(self, tag: bytes, count: int, followers: int) -> None:
        self.payloads = [tag + b"-%d!" % index for index in range(count)]
        self.followers = followers
        self.arrivals: list[list[float]] = [[] for _ in range(count)]
        self.all_in = [asyncio.Event() for _ in range(count)]

    def arrived(self, index: int) -> None:
        self.arrivals[index].append(time.monotonic())
        if len(self.arrivals[index]) == self.followers:
            self.all_in[index].set()


async def _follower(
    host: str,
    port: int,
    path: str,
    ready: asyncio.Event,
    counter: list[int],
    broadcasts: _Broadcasts,
    hang_up: asyncio.Event,
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    seen = b""
    announced = False
    index = 0
    while index < len(broadcasts.payloads):
        chunk = await reader.read(65536)
        if not chunk:
            break
        seen += chunk
        if not announced and b"event: control" in seen:
            announced = True
            counter[0] += 1
            if counter[0] == broadcasts.followers:
                ready.set()
        while index < len(broadcasts.payloads) and (at := seen.find(broadcasts.payloads[index])) >= 0:
            broadcasts.arrived(index)
            seen = seen[at:]
            index += 1
    # Hang up only once every follower has the broadcasts: 2,000 disconnections handled while
    # the server is still sending would be measured as delivery time.
    await hang_up.wait()
    writer.close()


def _ticks_ms(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _cpu_ms(pid: int) -> float:
    """The CPU time (user and system) the process has used so far: its live threads' to the
    nanosecond (the scheduler's ``schedstat``: ``/proc/PID/stat`` counts in 10 ms ticks, as
    coarse as a broadcast's cost), plus in ticks that of threads that have ended."""
    try:
        total_ms = _ticks_ms(Path(f"/proc/{pid}/stat"))
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return float("nan")
    live_ms = 0.0
    for task in tasks:
        try:
            exact_ms = int((task / "schedstat").read_text().split()[0]) / 1e6
            total_ms -= _ticks_ms(task / "stat")
        except (OSError, IndexError, ValueError):
            continue  # the thread ended: the process's ticks hold its time
        live_ms += exact_ms
    return live_ms + total_ms


def _server_facts(pid: int) -> dict[str, float]:
    facts: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "Threads":
                facts["threads"] = int(value)
            elif key == "VmRSS":
                facts["rss_mib"] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return facts


def _new_stream(url: str) -> tuple[str, str, bytes]:
    name = f"fan-{time.monotonic_ns()}"
    httpx.put(f"{url}/v1/stream/{name}", headers={"content-type": "text/plain"})
    return name, f"/v1/stream/{name}?offset=-1&live=sse", f"broadcast-{time.monotonic_ns()}".encode()


async def _followers(
    urls: Sequence[str], path: str, broadcasts: _Broadcasts, ready: asyncio.Event, hang_up: asyncio.Event
) -> list[asyncio.Task[None]]:
    """``broadcasts.followers`` followers spread over ``urls`` (nodes of one store) round robin."""
    nodes = [httpx.URL(url) for url in urls]
    counter = [0]
    return [
        asyncio.create_task(
            _follower(
                str(nodes[n % len(nodes)].host),
                nodes[n % len(nodes)].port or 80,
                path,
                ready,
                counter,
                broadcasts,
                hang_up,
            )
        )
        for n in range(broadcasts.followers)
    ]


SETTLE_S = 0.1
"""How long after the last arrival of a broadcast the server's CPU is read (and the next
broadcast sent): the work it does after the last frame (the followers' tasks going back to
wait) is part of a broadcast's cost too."""


def _figures(
    starts: list[float], arrivals: list[list[float]], facts: dict[str, float], cpu_ms: list[float]
) -> dict[str, float]:
    """The latencies of every broadcast together; ``cpu_ms``: the server's CPU time for each
    broadcast (from it to :data:`SETTLE_S` after its last arrival), which a loaded machine
    changes far less than the latencies (it is the server's cost of the fan-out)."""
    latencies = [
        (arrival - start) * 1000 for start, theirs in zip(starts, arrivals, strict=True) for arrival in theirs
    ]
    return {
        "broadcasts": float(len(starts)),
        "server_cpu_ms": sum(cpu_ms) / len(cpu_ms),
        "server_cpu_ms_min": min(cpu_ms),
        "server_cpu_ms_max": max(cpu_ms),
        "followers": float(len(latencies) // len(starts)),
        "first_ms": min(latencies),
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
        **facts,
    }


def fan_out(
    url: str, pid: int, followers: int, broadcasts: int = 1, more_urls: tuple[str, ...] = ()
) -> dict[str, float]:
    """All followers in this process's event loop; ``more_urls``: other nodes, the followers
    spread over all of them (round robin), the broadcasts through ``url``, threads and memory
    those of ``pid`` (``url``'s)."""
    name, path, tag = _new_stream(url)

    async def post(client: httpx.AsyncClient, payload: bytes) -> None:
        await client.post(f"{url}/v1/stream/{name}", content=payload, headers={"content-type": "text/plain"})

    return _fan_out(url, pid, _Broadcasts(tag, broadcasts, followers), more_urls, path, post)


def feed_fan_out(
    url: str, pid: int, followers: int, broadcasts: int = 1, more_urls: tuple[str, ...] = ()
) -> dict[str, float]:
    """As :func:`fan_out`, the followers on the store-wide feed (``/v1/feed``, SSE), each
    broadcast one event appended to a new session."""
    tag = f"broadcast-{time.monotonic_ns()}".encode()

    async def post(client: httpx.AsyncClient, payload: bytes) -> None:
        event = {"type": "message_sent", "data": {"text": payload.decode()}}
        await client.post(f"{url}/v1/sessions/fan-{time.monotonic_ns()}", json=event)

    path = "/v1/feed?offset=now&live=sse"
    return _fan_out(url, pid, _Broadcasts(tag, broadcasts, followers), more_urls, path, post)


def _fan_out(
    url: str,
    pid: int,
    broadcasts: _Broadcasts,
    more_urls: tuple[str, ...],
    path: str,
    post: Callable[[httpx.AsyncClient, bytes], Awaitable[None]],
) -> dict[str, float]:
    async def run() -> dict[str, float]:
        ready, hang_up = asyncio.Event(), asyncio.Event()
        tasks = await _followers((url, *more_urls), path, broadcasts, ready, hang_up)
        await asyncio.wait_for(ready.wait(), 120)
        facts = _server_facts(pid)
        starts, cpu_ms = [], []
        async with httpx.AsyncClient(timeout=180) as client:
            for payload, all_in in zip(broadcasts.payloads, broadcasts.all_in, strict=True):
                cpu = _cpu_ms(pid)
                starts.append(time.monotonic())
                await post(client, payload)
                await asyncio.wait_for(all_in.wait(), 120)
                await asyncio.sleep(SETTLE_S)
                cpu_ms.append(_cpu_ms(pid) - cpu)
        hang_up.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        return _figures(starts, broadcasts.arrivals, facts, cpu_ms)

    return asyncio.run(run())


def _client_process(url: str, path: str, count: int, tag: bytes, broadcasts: int, pipe: Any) -> None:
    """One of the client processes: ``count`` followers; says "ready" once all are connected,
    then for each broadcast sends their arrival times and its CPU time for it."""

    async def run() -> None:
        ready, hang_up = asyncio.Event(), asyncio.Event()
        mine = _Broadcasts(tag, broadcasts, count)
        tasks = await _followers((url,), path, mine, ready, hang_up)
        await asyncio.wait_for(ready.wait(), 120)
        pipe.send("ready")
        for arrivals, all_in in zip(mine.arrivals, mine.all_in, strict=True):
            idle_cpu = time.process_time()  # connected and waiting: the broadcast costs what follows
            await asyncio.wait_for(all_in.wait(), 120)
            pipe.send((arrivals, (time.process_time() - idle_cpu) * 1000))
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # every process has its share
        hang_up.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)

    asyncio.run(run())


def fan_out_spread(
    url: str, pid: int, followers: int, processes: int, broadcasts: int = 1
) -> dict[str, float]:
    """The followers spread over ``processes`` client processes."""
    name, path, tag = _new_stream(url)
    payloads = _Broadcasts(tag, broadcasts, followers).payloads
    context = multiprocessing.get_context("spawn")
    pipes, children = [], []
    for index in range(processes):
        count = followers // processes + (1 if index < followers % processes else 0)
        mine, theirs = context.Pipe()
        child = context.Process(target=_client_process, args=(url, path, count, tag, broadcasts, theirs))
        child.start()
        pipes.append(mine)
        children.append(child)
    try:
        for pipe in pipes:
            if not pipe.poll(180) or pipe.recv() != "ready":
                raise SystemExit("a client process did not connect its followers")
        facts = _server_facts(pid)
        starts, cpu_ms, arrivals = [], [], []
        client_cpu_ms = 0.0
        for payload in payloads:
            cpu = _cpu_ms(pid)
            starts.append(time.monotonic())
            # The reference server answers the broadcast only after some seconds of fan-out.
            httpx.post(
                f"{url}/v1/stream/{name}",
                content=payload,
                headers={"content-type": "text/plain"},
                timeout=180,
            )
            these: list[float] = []
            for pipe in pipes:
                if not pipe.poll(180):
                    raise SystemExit("a client process did not report its arrivals")
                theirs, their_cpu_ms = pipe.recv()
                these += theirs
                client_cpu_ms += their_cpu_ms
            arrivals.append(these)
            time.sleep(SETTLE_S)
            cpu_ms.append(_cpu_ms(pid) - cpu)
        for pipe in pipes:
            pipe.send("hang up")
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    return {
        **_figures(starts, arrivals, facts, cpu_ms),
        "client_processes": float(processes),
        # Beside server_cpu_ms: on two cores, the clients' share of the CPU bounds the latencies too.
        "client_cpu_ms": client_cpu_ms / broadcasts,
    }


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
