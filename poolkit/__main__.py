"""``python -m poolkit``: poolkit's demo on an embedded default — no server needed.

Many tasks share a small pool: each inserts rows in transactions, some transactions fail on
purpose and must roll back, some callers give up early. The job runs twice: over sqlite3 (a
file in a temporary directory), then over poolkit's fake driver with a seeded fault plan
(connections dropped mid-transaction, failing commits, jittered latency, a refused connect),
where the workers retry what failed. Each time the row count must equal exactly what was
committed and every connection must be back; the pool's statistics (and the faults injected)
are printed. Exit code 0 means every check held. ``--loop trio`` runs the same on trio.

The plan fires each kind of fault at least once in a run of any size (a refused connect, the
first insert dropped, the first commit of a worker failed), plus random ones on 3 % of
inserts and commits. A random rule that did not fire is a failure only when the run made
enough matching calls to expect it to (:data:`EXPECTED`); a short run says so instead.
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
from ._optional import unavailable
from .fakes import Drop, FakeDriver, FaultReport, Latency, Plan, Raise, Refuse

#: The faults of the second run: seeded, so every run injects the same ones per connection.
#: The first three fire in any run; the random ones in runs long enough (see EXPECTED).
FAULTS = Plan(
    Refuse(times=1),
    Drop(op="execute", sql="INSERT", nth=1),
    # the 2nd commit: the 1st is the CREATE TABLE's, which the job does not retry
    Raise("OperationalError", op="commit", nth=2, message="injected: commit failed"),
    Drop(op="execute", sql="INSERT", probability=0.03),
    Raise("OperationalError", op="commit", probability=0.03, message="injected: commit failed"),
    Latency(0.0005, jitter=0.0005, op="execute"),
    seed=2026,
)
#: A random rule that never fired fails the run when it was expected to fire this often
#: (matching calls x probability): the chance of no firing is then below e**-10.
EXPECTED = 10.0
#: Tries per transaction that an injected fault made fail, before the worker gives up.
ATTEMPTS = 5


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
        status |= _check_faults(report)
    finally:
        fake.close()
    return status


def _check_faults(report: FaultReport) -> int:
    """1 when a rule that should have fired did not: a deterministic one, or a random one
    given enough matching calls; a random one in a short run is only noted."""
    status = 0
    for unfired in report.unfired:
        rule, matched = unfired.rule, unfired.matched
        expected = matched * rule.probability
        if rule.probability == 1.0 or expected >= EXPECTED:
            print(f"  FAILED: fault rule #{unfired.index} never fired in {_n(matched, 'call')}")
            status = 1
        else:
            print(
                f"  note: fault rule #{unfired.index} fires at random on {rule.probability:.0%} "
                f"of matching calls and did not in {_n(matched, 'call')} ({expected:.2g} "
                "expected): too few to expect it, not a failure"
            )
    return status


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


async def _job(pool: Pool, driver: Any, tasks: int, rounds: int, max_size: int) -> int:
    committed = 0
    failed_on_purpose = 0
    retried = 0
    lost = 0
    timeouts = 0
    async with pool:
        async with pool.transaction() as conn:
            await conn.execute("CREATE TABLE events (task INTEGER, n INTEGER)")

        async def worker(task: int) -> None:
            nonlocal committed, failed_on_purpose, timeouts, retried, lost
            for n in range(rounds):
                for attempt in range(1, ATTEMPTS + 1):
                    try:
                        async with pool.transaction() as conn:
                            await conn.execute("INSERT INTO events VALUES (?, ?)", (task, n))
                            if n % 7 == 3:
                                raise _Rollback
                        committed += 1
                    except _Rollback:
                        failed_on_purpose += 1
                    except driver.Error:  # an injected fault: the transaction did not commit
                        if attempt < ATTEMPTS:
                            retried += 1
                            continue
                        lost += 1
                    break
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
            [(rows,)] = await conn.fetchall("SELECT count(*) FROM events")
    stats = pool.stats()

    problems = []
    if rows != committed:
        problems.append(f"{rows} rows in the table but {committed} transactions committed")
    if stats.in_use or stats.waiting:
        problems.append(f"connections still in use ({stats.in_use}) or waiting ({stats.waiting})")
    if stats.size > max_size:
        problems.append(f"pool size {stats.size} exceeded max_size {max_size}")
    print(
        f"  {_n(tasks, 'task')} x {_n(rounds, 'transaction')} over max_size={max_size}, "
        f"{elapsed:.2f} s"
    )
    print(f"  committed {committed}, rolled back on purpose {failed_on_purpose}, rows {rows}")
    if retried:
        print(f"  tries failed by injected faults (not committed, tried again): {retried}")
    if lost:
        print(f"  calls given up after injected faults (not committed): {lost}")
    print(f"  impatient callers that timed out: {timeouts}")
    max_wait_ms = stats.wait_time_max * 1e3
    print(f"  acquired {stats.acquired}, waited {stats.waited}, max wait {max_wait_ms:.1f} ms")
    print(f"  connections opened {stats.connections_opened}, closed {stats.connections_closed}")
    for problem in problems:
        print(f"  FAILED: {problem}")
    if not problems:
        print("  OK: every committed row is there, nothing leaked")
    return 1 if problems else 0


def _positive(text: str) -> int:
    """An argparse type: a whole number >= 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m poolkit", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--loop",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop to run on (default: asyncio; trio needs pip install trio)",
    )
    parser.add_argument(
        "--tasks", type=_positive, default=32, help="tasks sharing the pool (default: 32)"
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        default=20,
        help="transactions each task runs (default: 20)",
    )
    parser.add_argument(
        "--max-size",
        type=_positive,
        default=4,
        help="the pool's max_size: connections at most (default: 4)",
    )
    args = parser.parse_args(argv)
    if args.loop == "trio":
        why = unavailable("trio")
        if why is not None:
            parser.error(f"--loop trio: {why}")
    logging.basicConfig(level=logging.WARNING, format="  log %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="poolkit-") as tmp:
        return anyio.run(
            run_job, Path(tmp), args.tasks, args.rounds, args.max_size, backend=args.loop
        )


if __name__ == "__main__":
    sys.exit(main())
