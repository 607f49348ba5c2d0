"""``python -m tools.pg_restart (--cluster VERSION/NAME | --temporary) [--dsn URL] [--restarts N]
[--events N] [--mode fast|immediate|alternate] [--deadline-s S]``: restart the PostgreSQL server
while HTTP writers and followers run against two ``sqlitestream serve`` nodes on it (and a
writer through the Python API), then check that nothing acknowledged was lost or stored twice
and that every follower resumed from its offsets and received exactly the store's events
(``tools/outage.py``). Exit status 1 when anything is wrong.

- ``--cluster 15/main`` restarts the machine's server with ``pg_ctlcluster`` (what CI does, after
  the test suite: the suite's PostgreSQL tests run in parallel and must never see a restart);
  ``--dsn`` (default ``$SQLITESTREAM_PG_DSN``) reaches it. The store lives in a fresh schema,
  dropped at the end.
- ``--temporary`` makes a throwaway cluster of its own (``initdb`` in a temporary directory, as
  the ``postgres`` user when run as root, on a free port) and restarts that with ``pg_ctl``: for
  a machine whose server others are using.

``--mode`` is pg_ctl's shutdown mode: ``fast`` (a clean shutdown, open transactions rolled back),
``immediate`` (the server stops without a checkpoint and recovers from its WAL on start, as
after a crash), ``alternate`` (fast, then immediate, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.outage import Workload, free_port, nodes, problems

_POSTGRES_USER = "postgres"


def _as_postgres(command: list[str]) -> list[str]:
    """``command`` run as the postgres user when we are root (initdb and pg_ctl refuse root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", _POSTGRES_USER, "--", *command]
    return command


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found is not None:
        return found
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (directory / name).exists():
            return str(directory / name)
    raise SystemExit(f"{name} is not installed (PostgreSQL's server binaries are needed)")


def _wait_ready(host: str, port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while subprocess.run([_bin("pg_isready"), "-q", "-h", host, "-p", str(port)], check=False).returncode:
        if time.monotonic() > deadline:
            raise SystemExit(f"PostgreSQL on {host}:{port} is not ready after {timeout_s:.0f} s")
        time.sleep(0.1)


@contextmanager
def temporary_cluster() -> Iterator[tuple[str, Callable[[str], None]]]:
    """A cluster of our own: its DSN and a function restarting it in a given mode."""
    directory = Path(tempfile.mkdtemp(prefix="sqlitestream-pg-restart-"))
    data = directory / "data"
    port = free_port()
    if os.geteuid() == 0:
        shutil.chown(directory, _POSTGRES_USER)
    subprocess.run(
        _as_postgres([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1"
    pg_ctl = [_bin("pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-o", options, "-w"]
    subprocess.run(_as_postgres([*pg_ctl, "start"]), check=True, stdout=subprocess.DEVNULL)

    def restart(mode: str) -> None:
        subprocess.run(_as_postgres([*pg_ctl, "-m", mode, "restart"]), check=True, stdout=subprocess.DEVNULL)
        _wait_ready("127.0.0.1", port)

    try:
        _wait_ready("127.0.0.1", port)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", restart
    finally:
        subprocess.run(
            _as_postgres([*pg_ctl, "-m", "immediate", "stop"]), check=False, stdout=subprocess.DEVNULL
        )
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def system_cluster(cluster: str, dsn: str) -> Iterator[tuple[str, Callable[[str], None]]]:
    version, _, name = cluster.partition("/")
    if not version or not name:
        raise SystemExit(f"--cluster takes VERSION/NAME (as pg_lsclusters shows), got {cluster!r}")
    host, port = _host_and_port(dsn)

    def restart(mode: str) -> None:
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", "-m", mode, version, name, "restart"]
        subprocess.run(command, check=True)
        _wait_ready(host, port)

    yield dsn, restart


def _host_and_port(dsn: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def _drop_schema(dsn: str, schema: str) -> None:
    from tools.conformance import drop_schema

    drop_schema(dsn, schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--cluster", help="restart this cluster of the machine (VERSION/NAME, e.g. 15/main)")
    where.add_argument(
        "--temporary", action="store_true", help="make, restart and remove a cluster of our own"
    )
    parser.add_argument(
        "--dsn", default=os.environ.get("SQLITESTREAM_PG_DSN"), help="with --cluster: its URL"
    )
    parser.add_argument("--restarts", type=int, default=3, help="server restarts during the run")
    parser.add_argument("--events", type=int, default=200, help="appends per writer (three writers)")
    parser.add_argument("--mode", choices=("fast", "immediate", "alternate"), default="alternate")
    parser.add_argument("--deadline-s", type=float, default=300, help="give up after this long")
    args = parser.parse_args(argv)
    if args.restarts < 1 or args.events < args.restarts + 1:
        parser.error("--restarts must be >= 1 and --events > --restarts")
    if args.cluster and not args.dsn:
        parser.error("--cluster needs --dsn (or SQLITESTREAM_PG_DSN)")
    server = temporary_cluster() if args.temporary else system_cluster(args.cluster, args.dsn)
    with server as (dsn, restart):
        schema = f"sqlitestream_pg_restart_{secrets.token_hex(4)}"
        location = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
        restarts: list[dict[str, object]] = []
        try:
            with nodes(location, 2) as (a, b):
                workload = Workload(location, [a.url, b.url], events=args.events, deadline_s=args.deadline_s)
                workload.start()
                total = args.events * len(workload.writers)
                for number in range(1, args.restarts + 1):
                    if not workload.wait_for_acknowledged(number * total // (args.restarts + 1)):
                        print(f"the writers stalled before restart {number}: {workload.summary()}")
                        return 1
                    mode = args.mode if args.mode != "alternate" else ("fast", "immediate")[(number - 1) % 2]
                    before = workload.acknowledged
                    started = time.monotonic()
                    restart(mode)
                    took = time.monotonic() - started
                    restarts.append({"mode": mode, "acknowledged_before": before, "seconds": round(took, 2)})
                    print(f"restart {number} ({mode}) after {before} acknowledged appends: {took:.1f} s")
                workload.join()
            found = problems(location, workload)
        finally:
            try:
                _drop_schema(dsn, schema)
            except Exception as exc:
                print(f"could not drop the schema {schema}: {exc}", file=sys.stderr)
    print(json.dumps({"restarts": restarts, **workload.summary()}, indent=2))
    if found:
        for problem in found:
            print(f"PROBLEM: {problem}")
        return 1
    print(
        f"ok: {args.restarts} restarts; {workload.acknowledged} acknowledged appends, each stored once, "
        f"in order; {len(workload.followers)} followers resumed and received exactly the store's events"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
