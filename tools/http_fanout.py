"""The SSE fan-out workloads of :mod:`tools.http_bench`: N followers of one stream (or of the
store-wide feed) take broadcast appends one after another, in this process's event loop or
spread over client processes; and what they measure the server by (its CPU time from the
scheduler's per-thread counters, its threads and resident memory)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


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


class CpuClock:
    """The CPU time (user and system) a process's threads have used, to the nanosecond (the
    scheduler's per-thread ``schedstat``: ``/proc/PID/stat`` counts 10 ms ticks, as coarse as a
    broadcast's cost). A thread that ended since the last reading counts with the time it had
    then: the server's worker threads end only after idling."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._last: dict[str, float] = {}
        self._ended_ms = 0.0

    def ms(self) -> float:
        now: dict[str, float] = {}
        try:
            tasks = list(Path(f"/proc/{self._pid}/task").iterdir())
        except OSError:
            return float("nan")
        for task in tasks:
            try:
                now[task.name] = int((task / "schedstat").read_text().split()[0]) / 1e6
            except (OSError, IndexError, ValueError):
                pass  # the thread ended
        self._ended_ms += sum(value for tid, value in self._last.items() if tid not in now)
        self._last = now
        return self._ended_ms + sum(now.values())


def server_facts(pid: int) -> dict[str, float]:
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
    starts: list[float], arrivals: list[list[float]], facts: dict[str, float], costs_ms: list[float]
) -> dict[str, float]:
    """The latencies of every broadcast together; ``costs_ms``: the server's CPU time for each
    broadcast (from it to :data:`SETTLE_S` after its last arrival), which a loaded machine
    changes far less than the latencies (it is the server's cost of the fan-out)."""
    latencies = [
        (arrival - start) * 1000 for start, theirs in zip(starts, arrivals, strict=True) for arrival in theirs
    ]
    return {
        "broadcasts": float(len(starts)),
        "server_cpu_ms": sum(costs_ms) / len(costs_ms),
        "server_cpu_ms_min": min(costs_ms),
        "server_cpu_ms_max": max(costs_ms),
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
        facts = server_facts(pid)
        clock = CpuClock(pid)
        starts, costs_ms = [], []
        async with httpx.AsyncClient(timeout=180) as client:
            for payload, all_in in zip(broadcasts.payloads, broadcasts.all_in, strict=True):
                cpu = clock.ms()
                starts.append(time.monotonic())
                await post(client, payload)
                await asyncio.wait_for(all_in.wait(), 120)
                await asyncio.sleep(SETTLE_S)
                costs_ms.append(clock.ms() - cpu)
        hang_up.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        return _figures(starts, broadcasts.arrivals, facts, costs_ms)

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
        facts = server_facts(pid)
        clock = CpuClock(pid)
        starts, costs_ms, arrivals = [], [], []
        client_cpu_ms = 0.0
        for payload in payloads:
            cpu = clock.ms()
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
            costs_ms.append(clock.ms() - cpu)
        for pipe in pipes:
            pipe.send("hang up")
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    return {
        **_figures(starts, arrivals, facts, costs_ms),
        "client_processes": float(processes),
        # Beside server_cpu_ms: on two cores, the clients' share of the CPU bounds the latencies too.
        "client_cpu_ms": client_cpu_ms / broadcasts,
    }
