"""What a user would pick instead, driven to do the same work: the ``eventsourcing`` package's
SQLite recorder, ``simplebroker``, Redis Streams and NATS JetStream.

``open_peer`` raises ``Unavailable`` with a one-line reason when a package is not installed or
its server does not answer; the cases turn that into a "skipped" line, never a crash.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from pathlib import Path
from typing import Any

from .workloads import PAGE, dumps, payload

REDIS_ADDRESS = ("127.0.0.1", 6379)
NATS_URL = "nats://127.0.0.1:4222"


class Unavailable(Exception):
    """This peer cannot be measured here (the message is the one-line reason)."""


def _reachable(address: tuple[str, int]) -> None:
    try:
        with socket.create_connection(address, timeout=0.5):
            pass
    except OSError as exc:
        raise Unavailable(f"no server on {address[0]}:{address[1]} ({exc.strerror or exc})") from None


def _import(module: str, package: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise Unavailable(f"{package} is not installed (pip install '.[bench]')") from None


# eventsourcing --------------------------------------------------------------------------------


class EventSourcingRecorder:
    """``eventsourcing.sqlite.SQLiteAggregateRecorder``: one aggregate per session, the version
    tracked by the caller as an eventsourcing application does (the recorder's primary key
    enforces it). Its connections get the same ``synchronous`` level as ours."""

    label = "eventsourcing"

    def __init__(self, path: Path, synchronous: str, session: str = "bench") -> None:
        es_sqlite = _import("eventsourcing.sqlite", "eventsourcing")
        self._stored_event = _import("eventsourcing.persistence", "eventsourcing").StoredEvent
        self.datastore = es_sqlite.SQLiteDatastore(str(path), originator_id_type="text")
        pool = self.datastore.pool
        create = pool._create_connection
        level = {"normal": "NORMAL", "full": "FULL"}[synchronous]

        def create_with_level() -> Any:
            # eventsourcing leaves synchronous at SQLite's default (FULL); set it to the level
            # under comparison so both sides pay for the same durability.
            conn = create()
            conn._sqlite_conn.execute(f"PRAGMA synchronous={level}")
            return conn

        pool._create_connection = create_with_level
        self.recorder = es_sqlite.SQLiteAggregateRecorder(self.datastore, "stored_events")
        self.recorder.create_table()
        self.session = session
        self.version = 0
        self.counter = 0

    def append(self, n: int) -> None:
        stored, recorder, session = self._stored_event, self.recorder, self.session
        for i in range(self.counter, self.counter + n):
            self.version += 1
            recorder.insert_events(
                [stored(session, self.version, "message_sent", dumps(payload(i)).encode())]
            )
        self.counter += n

    def append_batch(self, n: int, size: int) -> None:
        stored, recorder, session = self._stored_event, self.recorder, self.session
        for start in range(self.counter, self.counter + n, size):
            batch = []
            for i in range(start, start + size):
                self.version += 1
                batch.append(stored(session, self.version, "message_sent", dumps(payload(i)).encode()))
            recorder.insert_events(batch)
        self.counter += n

    def read_all(self, session: str) -> int:
        cursor = 0
        count = 0
        select = self.recorder.select_events
        while True:
            page = [
                (e.originator_version, json.loads(e.state)) for e in select(session, gt=cursor, limit=PAGE)
            ]
            if not page:
                return count
            count += len(page)
            cursor = page[-1][0]

    def close(self) -> None:
        self.datastore.close()


# simplebroker ---------------------------------------------------------------------------------


class SimpleBroker:
    """A ``simplebroker`` queue per session, written with ``write`` and read by timestamp
    cursor with ``peek_many`` (reading without consuming, like a log)."""

    label = "simplebroker"

    def __init__(self, path: Path, synchronous: str, session: str = "bench") -> None:
        sb = _import("simplebroker", "simplebroker")
        self.config = sb.resolve_config(override={"BROKER_SYNC_MODE": synchronous.upper()})
        self.path = path
        self.queue = sb.Queue(session, db_path=str(path), persistent=True, config=self.config)
        self._sb = sb
        self.counter = 0

    def queue_for(self, session: str) -> Any:
        if session == self.queue.name:
            return self.queue
        return self._sb.Queue(session, db_path=str(self.path), persistent=True, config=self.config)

    def append(self, n: int) -> None:
        write = self.queue.write
        for i in range(self.counter, self.counter + n):
            write(dumps(payload(i)))
        self.counter += n

    def read_all(self, session: str) -> int:
        queue = self.queue_for(session)
        cursor = 0
        count = 0
        while True:
            page = [
                (json.loads(body), ts)
                for body, ts in queue.peek_many(PAGE, with_timestamps=True, after_timestamp=cursor)
            ]
            if not page:
                return count
            count += len(page)
            cursor = page[-1][1]

    def close(self) -> None:
        self.queue.close()


# Redis Streams --------------------------------------------------------------------------------


class RedisStreams:
    """XADD to one stream per session, XRANGE pages by exclusive id cursor (the server's own
    durability settings apply; they are reported beside the figures)."""

    label = "redis streams"

    def __init__(self, path: Path | None = None, synchronous: str = "normal", session: str = "bench") -> None:
        redis = _import("redis", "redis")
        _reachable(REDIS_ADDRESS)
        self.client = redis.Redis(host=REDIS_ADDRESS[0], port=REDIS_ADDRESS[1])
        try:
            self.client.ping()
        except Exception as exc:  # the server answered the socket but not as Redis
            raise Unavailable(f"Redis did not answer PING ({exc})") from None
        self.prefix = f"sqlitestream-bench-{secrets.token_hex(4)}:"
        self.key = self.prefix + session
        self.counter = 0

    def durability(self) -> str:
        config = {**self.client.config_get("appendonly"), **self.client.config_get("appendfsync")}
        if config.get("appendonly") != "yes":
            return "appendonly=no: not durable"
        return f"appendonly=yes, appendfsync={config.get('appendfsync')}"

    def append(self, n: int) -> None:
        xadd, key = self.client.xadd, self.key
        for i in range(self.counter, self.counter + n):
            xadd(key, {"d": dumps(payload(i))})
        self.counter += n

    def append_batch(self, n: int, size: int) -> None:
        for start in range(self.counter, self.counter + n, size):
            pipe = self.client.pipeline(transaction=True)
            for i in range(start, start + size):
                pipe.xadd(self.key, {"d": dumps(payload(i))})
            pipe.execute()
        self.counter += n

    def read_all(self, session: str) -> int:
        key = self.prefix + session
        cursor = "-"
        count = 0
        xrange = self.client.xrange
        while True:
            page = [
                (entry_id, json.loads(fields[b"d"]))
                for entry_id, fields in xrange(key, min=cursor, count=PAGE)
            ]
            if not page:
                return count
            count += len(page)
            cursor = "(" + page[-1][0].decode()

    def close(self) -> None:
        keys = list(self.client.scan_iter(match=self.prefix + "*"))
        if keys:
            self.client.delete(*keys)
        self.client.close()


# NATS JetStream -------------------------------------------------------------------------------


class JetStream:
    """A file-storage JetStream stream; publish waits for the server's ack; reads are pull
    consumer fetches of 100 (no-ack consumers, so the figure is delivery, not ack traffic)."""

    label = "nats jetstream"

    def __init__(self, path: Path | None = None, synchronous: str = "normal", session: str = "bench") -> None:
        nats = _import("nats", "nats-py")
        self._api = _import("nats.js.api", "nats-py")
        _reachable(("127.0.0.1", 4222))
        self.loop = asyncio.new_event_loop()
        self.stream = f"SQLSTREAMBENCH{secrets.token_hex(4).upper()}"
        self.subject_prefix = f"bench.{self.stream.lower()}."
        self.subject = self.subject_prefix + session
        self.counter = 0
        self.consumers = 0

        async def connect() -> tuple[Any, Any]:
            nc = await nats.connect(NATS_URL, connect_timeout=1, max_reconnect_attempts=0)
            js = nc.jetstream()
            await js.add_stream(
                name=self.stream, subjects=[self.subject_prefix + ">"], storage=self._api.StorageType.FILE
            )
            return nc, js

        try:
            self.nc, self.js = self.loop.run_until_complete(connect())
        except Exception as exc:
            self.loop.close()
            raise Unavailable(
                f"NATS JetStream not usable at {NATS_URL} ({type(exc).__name__}: {exc})"
            ) from None

    def append(self, n: int) -> None:
        async def run() -> None:
            publish, subject = self.js.publish, self.subject
            for i in range(self.counter, self.counter + n):
                await publish(subject, dumps(payload(i)).encode())

        self.loop.run_until_complete(run())
        self.counter += n

    def append_batch(self, n: int, size: int) -> None:
        async def run() -> None:
            publish, subject = self.js.publish, self.subject
            for start in range(self.counter, self.counter + n, size):
                await asyncio.gather(
                    *(publish(subject, dumps(payload(i)).encode()) for i in range(start, start + size))
                )

        self.loop.run_until_complete(run())
        self.counter += n

    def read_all(self, session: str) -> int:
        async def run() -> int:
            self.consumers += 1
            durable = f"reader{self.consumers}"
            config = self._api.ConsumerConfig(
                ack_policy=self._api.AckPolicy.NONE, deliver_policy=self._api.DeliverPolicy.ALL
            )
            sub = await self.js.pull_subscribe(
                self.subject_prefix + session, durable=durable, stream=self.stream, config=config
            )
            count = 0
            try:
                while count < self.counter:  # stop when caught up, not on a fetch timeout
                    try:
                        msgs = await sub.fetch(PAGE, timeout=1.0)
                    except TimeoutError:
                        return count
                    except Exception as exc:  # nats raises its own TimeoutError subclass
                        if "Timeout" in type(exc).__name__:
                            return count
                        raise
                    if not msgs:
                        return count
                    count += len([json.loads(m.data) for m in msgs])
                return count
            finally:
                await sub.unsubscribe()
                await self.js.delete_consumer(self.stream, durable)

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        async def run() -> None:
            try:
                await self.js.delete_stream(self.stream)
            finally:
                await self.nc.close()

        try:
            self.loop.run_until_complete(run())
        finally:
            self.loop.close()


PEERS = {
    "eventsourcing": EventSourcingRecorder,
    "simplebroker": SimpleBroker,
    "redis": RedisStreams,
    "jetstream": JetStream,
}


def open_peer(name: str, path: Path, synchronous: str, session: str = "bench") -> Any:
    """The peer, ready to use; ``Unavailable`` (one-line reason) if it cannot run here."""
    try:
        return PEERS[name](path, synchronous, session)
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
