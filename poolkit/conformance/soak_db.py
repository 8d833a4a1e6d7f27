"""A soak against a real database: tasks write through the pool while sessions get killed.

``python -m poolkit.conformance.soak_db --backend postgres --driver psycopg2`` runs
``--tasks`` tasks for ``--seconds``; each, in a loop, takes a connection, notes its server
session, inserts one row with a fresh id in a transaction and commits. Meanwhile a killer on
its own plain connection ends a random recently seen session every ``--kill-every`` seconds
(``pg_terminate_backend`` / ``KILL``) and a sampler counts the pool's sessions on the server.

Afterwards it compares: every row whose commit returned must be in the table (nothing lost),
every row in the table must be one whose commit was at least attempted (nothing invented),
no id twice (nothing duplicated: the table has no key to hide a retried insert), the server
never saw more of the pool's sessions than ``max_size``, none is left once the pool closed,
and no error reached a task but the driver's own and the pool's timeouts. It prints the
figures and exits 1 if any check failed.

The DSN comes from ``--dsn``, ``POOLKIT_POSTGRES_DSN`` / ``POOLKIT_MYSQL_DSN`` /
``POOLKIT_MSSQL_DSN``, else the local default the test suite uses (``DEFAULT_DSNS``).
``--adapter psycopg_pool`` soaks psycopg_pool instead (PostgreSQL, driver psycopg).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio

import poolkit
from poolkit._optional import unavailable

from ._defaults import DEFAULT_DSNS, env_dsn, find
from ._targets import BACKENDS, DRIVERS, Target, TargetError, build_target
from .adapters import DEFAULT_ADAPTERS, PoolAdapter, PoolHandle

__all__ = ["SoakResult", "main", "soak"]


@dataclass
class SoakResult:
    """What a soak did and saw."""

    backend: str
    driver: str
    adapter: str
    seconds: float
    tasks: int
    max_size: int
    committed: set[int] = field(default_factory=set)
    #: ids whose commit raised: they may or may not be in the table
    uncertain: set[int] = field(default_factory=set)
    rows: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    #: errors of a kind no task should ever see (a pool bug)
    unexpected: list[str] = field(default_factory=list)
    kills: int = 0
    #: the session each committed row was written in, and the sessions killed (in order)
    row_sessions: dict[int, Any] = field(default_factory=dict)
    victims: list[Any] = field(default_factory=list)
    peak_sessions: int = 0
    sessions_after_close: int = -1
    elapsed: float = 0.0

    @property
    def problems(self) -> list[str]:
        found = []
        present = set(self.rows)
        lost = self.committed - present
        if lost:
            example = sorted(lost)[:5]
            killed = {r: self.row_sessions.get(r) in self.victims for r in example}
            found.append(
                f"{len(lost)} committed rows lost (e.g. {example}; written in a session "
                f"that was killed: {killed})"
            )
        invented = present - self.committed - self.uncertain
        if invented:
            found.append(f"{len(invented)} rows nobody committed (e.g. {sorted(invented)[:5]})")
        if len(self.rows) != len(present):
            found.append(f"{len(self.rows) - len(present)} duplicated rows")
        if self.peak_sessions > self.max_size:
            found.append(f"{self.peak_sessions} sessions at once, max_size={self.max_size}")
        if self.sessions_after_close != 0:
            found.append(f"{self.sessions_after_close} sessions left after close")
        if self.unexpected:
            found.append(f"{len(self.unexpected)} unexpected errors: {self.unexpected[:3]}")
        if not self.committed:
            found.append("no commit succeeded at all")
        return found

    def report(self) -> str:
        rate = len(self.committed) / self.elapsed if self.elapsed else 0.0
        errors = ", ".join(f"{k} {n}" for k, n in self.errors.most_common()) or "none"
        lines = [
            f"soak {self.adapter} over {self.backend}/{self.driver}: {self.tasks} tasks, "
            f"max_size={self.max_size}, {self.elapsed:.1f} s",
            f"  commits returned   {len(self.committed)} ({rate:.0f}/s)",
            f"  commits that raised {len(self.uncertain)} (in table: "
            f"{len(self.uncertain & set(self.rows))})",
            f"  rows in table      {len(self.rows)} ({len(set(self.rows))} distinct)",
            f"  sessions killed    {self.kills}",
            f"  errors seen        {errors}",
            f"  peak sessions      {self.peak_sessions} (max_size {self.max_size}); "
            f"after close {self.sessions_after_close}",
        ]
        problems = self.problems
        lines.append("  verdict            " + ("; ".join(problems) if problems else "OK"))
        return "\n".join(lines)


class _Killer:
    """A plain connection of its own: kills sessions and counts the pool's."""

    def __init__(self, target: Target, count_sql: str) -> None:
        self.target = target
        self.count_sql = count_sql
        self.raw = target.connect()
        self.lock = threading.Lock()

    def _run(self, sql: str) -> list[Any]:
        with self.lock:
            cur = self.raw.cursor()
            cur.execute(sql)
            rows = list(cur.fetchall()) if cur.description is not None else []
            self.raw.commit()
            return rows

    def kill(self, session: Any) -> bool:
        try:
            self._run(self.target.dialect.kill(int(session)))
            return True
        except self.target.module.Error:  # already gone, say
            with self.lock:
                self.raw.rollback()
            return False

    def sessions(self) -> int:
        return int(self._run(self.count_sql)[0][0])

    def close(self) -> None:
        self.raw.close()


async def soak(
    target: Target,
    adapter: PoolAdapter,
    *,
    seconds: float,
    tasks: int,
    max_size: int,
    kill_every: float,
    seed: int = 0,
) -> SoakResult:
    """Run the soak on ``target`` through a pool from ``adapter``; see the module doc."""
    result = SoakResult(target.backend, target.driver, adapter.name, seconds, tasks, max_size)
    rng = random.Random(seed)
    q0, q1 = target.q(0), target.q(1)
    table = f"pk_soak_{rng.getrandbits(40):010x}"
    expected: tuple[type[BaseException], ...] = (target.module.Error, poolkit.PoolError)
    with target.tagged() as (args, kwargs, count_sql):
        killer = _Killer(target, count_sql)
        seen: list[Any] = []  # recent session ids, for the killer to pick from
        ids = iter(range(1, 10**9))
        try:
            options = {"args": args, "kwargs": kwargs, "min_size": 1, "max_size": max_size}
            async with adapter.pool(target, timeout=10.0, **options) as handle:
                expected += (handle.timeout_error,)
                await _setup(handle, table)
                deadline = time.monotonic() + seconds
                started = time.monotonic()
                async with anyio.create_task_group() as tg:
                    for task in range(tasks):
                        tg.start_soon(
                            _writer,
                            handle,
                            target,
                            table,
                            task,
                            deadline,
                            ids,
                            seen,
                            result,
                            expected,
                            (q0, q1),
                        )
                    tg.start_soon(_kill_loop, killer, seen, rng, kill_every, deadline, result)
                    tg.start_soon(_sample_loop, killer, deadline, result)
                result.elapsed = time.monotonic() - started
                result.rows = await _read_back(handle, table)
            result.sessions_after_close = await _sessions_after_close(killer)
        finally:
            killer.close()
            with contextlib.suppress(Exception):  # normally dropped already, by _read_back
                target.run(f"DROP TABLE IF EXISTS {table}")
    return result


async def _setup(handle: PoolHandle, table: str) -> None:
    async with handle.connection() as conn:
        await conn.execute(f"CREATE TABLE {table} (id BIGINT NOT NULL, task INT NOT NULL)")
        await conn.commit()


async def _writer(
    handle: PoolHandle,
    target: Target,
    table: str,
    task: int,
    deadline: float,
    ids: Any,
    seen: list[Any],
    result: SoakResult,
    expected: tuple[type[BaseException], ...],
    marks: tuple[str, str],
) -> None:
    insert = f"INSERT INTO {table} (id, task) VALUES ({marks[0]}, {marks[1]})"
    session_sql = target.dialect.session_id
    while time.monotonic() < deadline:
        row = next(ids)
        committing = False
        try:
            async with handle.connection(timeout=10.0) as conn:
                cur = await conn.execute(session_sql)
                session = (await cur.fetchone())[0]
                seen.append(session)
                del seen[:-64]
                await conn.execute(insert, (row, task))
                committing = True
                await conn.commit()
                result.committed.add(row)
                result.row_sessions[row] = session
                committing = False
        except expected as exc:
            result.errors[type(exc).__name__] += 1
            if committing:
                result.uncertain.add(row)
        except Exception as exc:
            result.unexpected.append(f"{type(exc).__name__}: {target.redact(str(exc))}")
            if committing:
                result.uncertain.add(row)
            await anyio.sleep(0.01)


async def _kill_loop(
    killer: _Killer,
    seen: list[Any],
    rng: random.Random,
    every: float,
    deadline: float,
    result: SoakResult,
) -> None:
    while time.monotonic() + every < deadline:
        await anyio.sleep(every)
        if seen:
            victim = rng.choice(seen)
            if await anyio.to_thread.run_sync(killer.kill, victim):
                result.kills += 1
                result.victims.append(victim)


async def _sample_loop(killer: _Killer, deadline: float, result: SoakResult) -> None:
    while time.monotonic() < deadline:
        count = await anyio.to_thread.run_sync(killer.sessions)
        result.peak_sessions = max(result.peak_sessions, count)
        await anyio.sleep(0.05)


async def _read_back(handle: PoolHandle, table: str) -> list[int]:
    for attempt in range(5):  # the last kill may have hit the connection we get
        try:
            async with handle.connection(timeout=10.0) as conn:
                cur = await conn.execute(f"SELECT id FROM {table}")
                rows = await cur.fetchall()
                await conn.execute(f"DROP TABLE {table}")
                await conn.commit()
                return [int(r[0]) for r in rows]
        except Exception:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


async def _sessions_after_close(killer: _Killer) -> int:
    count = -1
    with anyio.move_on_after(5.0):  # a killed session can take a moment to leave the view
        while True:
            count = await anyio.to_thread.run_sync(killer.sessions)
            if count == 0:
                break
            await anyio.sleep(0.05)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m poolkit.conformance.soak_db",
        description="Write through a pool into a real database while sessions get killed.",
    )
    # Not postgres-pgbouncer: the killer ends sessions seen in earlier transactions, and there
    # a client's server session changes between transactions (it may be the killer's own).
    servers = [b for b in BACKENDS if b not in ("sqlite", "postgres-pgbouncer")]
    parser.add_argument("--backend", choices=servers, default="postgres")
    parser.add_argument("--driver", default=None, help="default: psycopg2 / pymysql / pyodbc")
    parser.add_argument(
        "--dsn",
        default=None,
        help="where the database is (default: POOLKIT_<BACKEND>_DSN, else the local default: "
        + "; ".join(f"{b} {d}" for b, d in DEFAULT_DSNS.items())
        + ")",
    )
    parser.add_argument("--adapter", default="poolkit", help="poolkit or psycopg_pool")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--max-size", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=0.25, help="seconds between kills")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--anyio-backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args(argv)
    if args.anyio_backend == "trio" and (why := unavailable("trio")) is not None:
        parser.error(f"--anyio-backend trio: {why}")
    driver = args.driver or DRIVERS[args.backend][0]
    found = find(args.backend, args.dsn)
    if found.dsn is None:
        env = env_dsn(args.backend)
        print(f"soak_db: no DSN for {args.backend} ({found.why}): pass --dsn or set {env}")
        return 2
    dsn = found.dsn
    adapters = {a.name: a for a in DEFAULT_ADAPTERS}
    adapter = adapters.get(args.adapter)
    if adapter is None:
        print(f"soak_db: unknown adapter {args.adapter!r}; known: {', '.join(adapters)}")
        return 2
    why = adapter.supports(args.backend, driver)
    if why is not None:
        print(f"soak_db: {adapter.name} cannot drive {args.backend}/{driver}: {why}")
        return 2
    for name in ("poolkit", "psycopg.pool"):  # reconnects are the point here
        logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            target = build_target(args.backend, driver, dsn, "dsn", tmp)
        except TargetError as exc:
            print(f"soak_db: {exc}")
            return 2

        async def run() -> SoakResult:
            return await soak(
                target,
                adapter,
                seconds=args.seconds,
                tasks=args.tasks,
                max_size=args.max_size,
                kill_every=args.kill_every,
                seed=args.seed,
            )

        result = anyio.run(run, backend=args.anyio_backend)
    print(result.report())
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
