"""``python -m poolkit``: run poolkit's main job on an embedded default — no server needed.

Many tasks share a small pool: each inserts rows in transactions, some transactions fail on
purpose and must roll back, some callers give up early. The job runs twice: over sqlite3 (a
file in a temporary directory), then over poolkit's fake driver with a seeded fault plan
(connections dropped mid-transaction, failing commits, jittered latency, a refused connect),
where the workers retry what failed. Each time the row count must equal exactly what was
committed and every connection must be back; the pool's statistics (and the faults injected)
are printed. Exit code 0 means every check held. ``--loop trio`` runs the same on trio.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import sniffio

from . import Pool, PoolTimeout, __version__
from ._backoff import Backoff
from .fakes import Drop, FakeDriver, Latency, Plan, Raise, Refuse

#: The faults of the second run: seeded, so every run injects the same ones per connection.
FAULTS = Plan(
    Refuse(times=1),
    Drop(op="execute", sql="INSERT", probability=0.03),
    Raise("OperationalError", op="commit", probability=0.03, message="injected: commit failed"),
    Latency(0.0005, jitter=0.0005, op="execute"),
    seed=2026,
)


class _Rollback(Exception):
    """Raised inside a transaction on purpose."""


async def run_job(directory: Path, tasks: int, rounds: int, max_size: int) -> int:
    path = directory / "poolkit-demo.db"
    plain = Pool(sqlite3, str(path), connect_kwargs={"timeout": 30.0}, max_size=max_size)
    print(f"poolkit {__version__} on {sniffio.current_async_library()}")
    print(f"sqlite3 (SQLite {sqlite3.sqlite_version}):")
    status = await _job(plain, sqlite3, tasks, rounds, max_size)
    fake = FakeDriver(FAULTS)
    try:
        faulty = Pool(fake, max_size=max_size, backoff=Backoff(initial=0.01, maximum=0.05))
        print(f"fake driver with faults {FAULTS!r}:")
        status |= await _job(faulty, fake, tasks, rounds, max_size)
        report = fake.report()
        print(f"  faults injected: {report.fired}")
        for rule in report.rules:
            print(f"    {rule}")
        if report.unfired:
            print("  FAILED: some fault rules never fired")
            status = 1
    finally:
        fake.close()
    return status


async def _job(pool: Pool, driver: Any, tasks: int, rounds: int, max_size: int) -> int:
    committed = 0
    failed_on_purpose = 0
    lost = 0
    timeouts = 0
    async with pool:
        async with pool.transaction() as conn:
            await conn.execute("CREATE TABLE events (task INTEGER, n INTEGER)")

        async def worker(task: int) -> None:
            nonlocal committed, failed_on_purpose, timeouts, lost
            for n in range(rounds):
                try:
                    async with pool.transaction() as conn:
                        await conn.execute("INSERT INTO events VALUES (?, ?)", (task, n))
                        if n % 7 == 3:
                            raise _Rollback
                    committed += 1
                except _Rollback:
                    failed_on_purpose += 1
                except driver.Error:  # an injected fault: the transaction did not commit
                    lost += 1
            # A caller that cannot wait: either it gets a connection at once or a PoolTimeout.
            try:
                async with pool.connection(timeout=1e-6) as conn:
                    await conn.execute("SELECT 1")
            except PoolTimeout:
                timeouts += 1
            except driver.Error:
                lost += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for task in range(tasks):
                tg.start_soon(worker, task)
        elapsed = time.perf_counter() - started

        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM events")
            (rows,) = await cur.fetchone()
    stats = pool.stats()

    problems = []
    if rows != committed:
        problems.append(f"{rows} rows in the table but {committed} transactions committed")
    if stats.in_use or stats.waiting:
        problems.append(f"connections still in use ({stats.in_use}) or waiting ({stats.waiting})")
    if stats.size > max_size:
        problems.append(f"pool size {stats.size} exceeded max_size {max_size}")
    print(f"  {tasks} tasks x {rounds} transactions over max_size={max_size}, {elapsed:.2f} s")
    print(f"  committed {committed}, rolled back on purpose {failed_on_purpose}, rows {rows}")
    if lost:
        print(f"  transactions lost to injected faults (not committed): {lost}")
    print(f"  impatient callers that timed out: {timeouts}")
    max_wait_ms = stats.wait_time_max * 1e3
    print(f"  acquired {stats.acquired}, waited {stats.waited}, max wait {max_wait_ms:.1f} ms")
    print(f"  connections opened {stats.connections_opened}, closed {stats.connections_closed}")
    for problem in problems:
        print(f"  FAILED: {problem}")
    if not problems:
        print("  OK: every committed row is there, nothing leaked")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m poolkit", description=__doc__.split("\n")[0])
    parser.add_argument("--loop", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--max-size", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="  log %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="poolkit-") as tmp:
        return anyio.run(
            run_job, Path(tmp), args.tasks, args.rounds, args.max_size, backend=args.loop
        )


if __name__ == "__main__":
    sys.exit(main())
