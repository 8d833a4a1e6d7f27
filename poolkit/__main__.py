"""``python -m poolkit``: run poolkit's main job on an embedded default — no server needed.

Many tasks share a small pool over SQLite (a file in a temporary directory): each inserts
rows in transactions and reads them back, some transactions fail on purpose and must roll
back, some callers give up early. At the end the row count must equal exactly what was
committed, every connection must be back, and the pool's statistics are printed. Exit code
0 means every check held. ``--loop trio`` runs the same on trio; ``--dsn`` is not needed.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import anyio
import sniffio

from . import Pool, PoolTimeout, __version__


class _Rollback(Exception):
    """Raised inside a transaction on purpose."""


async def run_job(directory: Path, tasks: int, rounds: int, max_size: int) -> int:
    committed = 0
    failed_on_purpose = 0
    timeouts = 0
    path = directory / "poolkit-demo.db"
    async with Pool(
        sqlite3, str(path), connect_kwargs={"timeout": 30.0}, max_size=max_size
    ) as pool:
        async with pool.transaction() as conn:
            await conn.execute("CREATE TABLE events (task INTEGER, n INTEGER)")

        async def worker(task: int) -> None:
            nonlocal committed, failed_on_purpose, timeouts
            for n in range(rounds):
                try:
                    async with pool.transaction() as conn:
                        await conn.execute("INSERT INTO events VALUES (?, ?)", (task, n))
                        if n % 7 == 3:
                            raise _Rollback
                    committed += 1
                except _Rollback:
                    failed_on_purpose += 1
            # A caller that cannot wait: either it gets a connection at once or a PoolTimeout.
            try:
                async with pool.connection(timeout=1e-6) as conn:
                    await conn.execute("SELECT 1")
            except PoolTimeout:
                timeouts += 1

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
    loop = sniffio.current_async_library()
    print(f"poolkit {__version__}: SQLite {sqlite3.sqlite_version} on {loop}")
    print(f"  {tasks} tasks x {rounds} transactions over max_size={max_size}, {elapsed:.2f} s")
    print(f"  committed {committed}, rolled back on purpose {failed_on_purpose}, rows {rows}")
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
    with tempfile.TemporaryDirectory(prefix="poolkit-") as tmp:
        return anyio.run(
            run_job, Path(tmp), args.tasks, args.rounds, args.max_size, backend=args.loop
        )


if __name__ == "__main__":
    sys.exit(main())
