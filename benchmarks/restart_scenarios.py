"""What happens in a run's process of the restart workload (:mod:`.restart`): the pools, the
settings, what a run measures, and the scenarios, with C callers (32) each:

- ``restart-burst``: the pool warm and idle (every connection used once), the server
  restarted (``pg_ctl restart -m fast``, until it accepts), then C concurrent callers of one
  ``SELECT 1`` each (acquire, query, release): the calls that fail.
- ``restart-sequential``: the same with the C calls one after another.
- ``crash-recovery``: C writer tasks insert rows in a loop (one transaction each, committed;
  the acknowledged ids recorded; after a failed write a writer pauses :data:`PAUSE`); after
  :attr:`Settings.steady` the postmaster gets ``kill -9``, the cluster is started again after
  :attr:`Settings.outage` (once what is left of the old server has gone): the time from "the
  server accepts connections again" (a plain psycopg2 connect, polled every 10 ms) to the
  first commit acknowledged after the restart, and until every writer had one; the errors
  writers saw; the acknowledged rows missing from the table afterwards (must be 0).
- ``close-frozen``: C callers of ``SELECT pg_sleep(30)`` (8 running, the rest waiting for a
  connection), the server frozen (SIGSTOP of the postmaster and every backend), then the
  pool's default ``close()``: how long it takes, the callers still blocked 2 s after it
  returned, the Python threads left over.
- ``close-connect-hang``: a pool with ``min_size = 0`` opened, the server frozen, C callers
  of ``SELECT 1`` (so the pool's connects hang), then ``close()``: the same measures.

Anything that does not end within :attr:`Settings.cap` (30 s) is cut off and reported as hung.
:func:`child` is a run's process: it runs one scenario with one pool on asyncio and sends its
:class:`RestartSample` back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from .cluster import Cluster
from .contenders import (
    ASYNCPG_RESET,
    POOLKIT_PG,
    PSYCOPG3,
    Opener,
    Session,
    asyncpg_opener,
    poolkit_opener,
    psycopg_pool_opener,
)
from .restart_samples import POOL_NAMES, SCENARIO_NAMES, RestartRun, RestartSample, Settings

#: how long a writer pauses after a failed write
PAUSE = 0.1
#: how long after close() returned the callers still blocked are counted
AFTER_CLOSE = 2.0
SLEEP_SQL = "SELECT pg_sleep(30)"


@dataclass(frozen=True)
class Contestant:
    """One pool of the workload: how it is opened, and how it is built (for the report)."""

    name: str
    needs: tuple[str, ...]
    #: its opener for a ``min_size`` (its ``max_size`` is the n the opener is given)
    opener: Callable[[int], Opener]
    #: whether a write must be committed (the driver does not run in autocommit)
    commits: bool
    #: how it is built, with ``{min}`` and ``{max}`` for its sizes
    built: str


POOLS: tuple[Contestant, ...] = (
    Contestant(
        POOLKIT_PG, ("psycopg2",),
        lambda m: poolkit_opener("psycopg2", autocommit=False, min_size=m), True,
        "`poolkit.Pool(psycopg2, dsn, min_size={min}, max_size={max})`",
    ),
    Contestant(
        PSYCOPG3, ("psycopg", "psycopg_pool"),
        lambda m: psycopg_pool_opener(autocommit=False, min_size=m), True,
        "`psycopg_pool.AsyncConnectionPool(dsn, min_size={min}, max_size={max})`",
    ),
    Contestant(
        ASYNCPG_RESET, ("asyncpg",), lambda m: asyncpg_opener(True, min_size=m), False,
        "`asyncpg.create_pool(url, min_size={min}, max_size={max})`",
    ),
)  # fmt: skip
assert tuple(p.name for p in POOLS) == POOL_NAMES


@dataclass(frozen=True)
class Scenario:
    name: str
    #: what it does, for the report
    description: str
    run: Callable[[Job], Coroutine[Any, Any, RestartSample]]


@dataclass(frozen=True)
class Job:
    """What a run's process is given (it must pickle)."""

    run: RestartRun
    settings: Settings
    cluster: Cluster

    @property
    def contestant(self) -> Contestant:
        return next(p for p in POOLS if p.name == self.run.pool)

    def sample(self, **measured: Any) -> RestartSample:
        return RestartSample(self.run.scenario, self.run.pool, self.run.round, **measured)


# ----- the scenarios --------------------------------------------------------------------------

clock = time.monotonic


def _error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _threads() -> int:
    """Python threads, but the event loop's default executor's (``asyncio.to_thread``, which
    the benchmark itself uses to act on the cluster)."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_"))


@contextlib.asynccontextmanager
async def _open(job: Job, min_size: int | None = None) -> AsyncIterator[Session]:
    size = job.settings.size
    opener = job.contestant.opener(size if min_size is None else min_size)
    async with opener(job.cluster.server(), size) as session:
        yield session


async def _cut_off(tasks: Sequence[asyncio.Task[Any]], timeout: float) -> int:
    """Wait up to ``timeout`` for ``tasks``; cancel those left (and give them 5 s); how many
    were left."""
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5.0)
    return len(pending)


async def _warm(session: Session, n: int) -> None:
    """Every one of the pool's ``n`` connections used once, at the same time; then idle."""
    acquire, run = session.acquire, session.run
    assert acquire is not None and run is not None
    inside, everyone = 0, asyncio.Event()

    async def hold() -> None:
        nonlocal inside
        async with acquire() as conn:
            await run(conn, "SELECT 1")
            inside += 1
            if inside == n:
                everyone.set()
            await asyncio.wait_for(everyone.wait(), 30.0)

    await asyncio.gather(*(hold() for _ in range(n)))


async def _restart(job: Job, sequential: bool) -> RestartSample:
    s, cluster = job.settings, job.cluster
    async with _open(job) as session:
        await _warm(session, s.size)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(cluster.restart)
        await asyncio.to_thread(cluster.wait_accepting)
        failures: list[str] = []
        completed = 0

        async def call() -> None:
            nonlocal completed
            try:
                await session.query("SELECT 1")
            except Exception as exc:
                failures.append(_error(exc))
            completed += 1

        async def one_after_another() -> None:
            for _ in range(s.callers):
                await call()

        started = clock()
        if sequential:
            tasks = [asyncio.create_task(one_after_another())]
        else:
            tasks = [asyncio.create_task(call()) for _ in range(s.callers)]
        done, _ = await asyncio.wait(tasks, timeout=s.cap)
        took = clock() - started
        hung = len(done) < len(tasks)
        unfinished = s.callers - completed
        await _cut_off(tasks, 0)
    return job.sample(
        hung=hung,
        seconds=None if hung else took,
        calls=s.callers - unfinished,
        failed=len(failures),
        error=failures[0] if failures else "",
        note=f"{unfinished} calls unfinished at the {s.cap:g} s cap" if hung else "",
    )


async def restart_burst(job: Job) -> RestartSample:
    return await _restart(job, sequential=False)


async def restart_sequential(job: Job) -> RestartSample:
    return await _restart(job, sequential=True)


async def crash_recovery(job: Job) -> RestartSample:
    s, cluster = job.settings, job.cluster
    table = f"writes_{os.getpid()}"
    await asyncio.to_thread(
        cluster.execute, f"CREATE TABLE {table} (id bigint PRIMARY KEY, writer int NOT NULL)"
    )
    commits = job.contestant.commits
    acked: list[int] = []
    errors: list[str] = []
    #: writer -> the time of its first commit acknowledged after the restart was issued
    back: dict[int, float] = {}
    everyone_back = asyncio.Event()
    restarted = float("inf")
    running = True
    ids = itertools.count(1)
    async with _open(job) as session:
        acquire, run = session.acquire, session.run
        assert acquire is not None and run is not None

        async def write(sql: str) -> None:
            async with acquire() as conn:
                await run(conn, sql)
                if commits:
                    await conn.commit()

        async def writer(w: int) -> None:
            while running:
                i = next(ids)
                try:
                    await write(f"INSERT INTO {table} (id, writer) VALUES ({i}, {w}) RETURNING id")
                except Exception as exc:
                    errors.append(_error(exc))
                    await asyncio.sleep(PAUSE)
                    continue
                acked.append(i)
                now = clock()
                if now > restarted:
                    back.setdefault(w, now)
                    if len(back) == s.callers:
                        everyone_back.set()

        tasks = [asyncio.create_task(writer(w)) for w in range(s.callers)]
        await asyncio.sleep(s.steady)
        early = len(errors)
        crashed = clock()
        left = await asyncio.to_thread(cluster.crash)
        await asyncio.sleep(s.outage)
        await asyncio.to_thread(cluster.wait_gone, left)
        restarted = clock()
        await asyncio.to_thread(cluster.start, False)
        accepted = await asyncio.to_thread(cluster.wait_accepting, 60.0, 0.01)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(everyone_back.wait(), accepted + s.cap - clock())
        running = False
        stuck = await _cut_off(tasks, 10.0)
    present = {
        row[0] for row in await asyncio.to_thread(cluster.execute, f"SELECT id FROM {table}")
    }
    await asyncio.to_thread(cluster.execute, f"DROP TABLE {table}")
    notes = []
    if not back:
        notes.append(f"no commit within {s.cap:g} s of the server accepting again")
    elif len(back) < s.callers:
        notes.append(f"{s.callers - len(back)} writers had no commit within {s.cap:g} s")
    if stuck:
        notes.append(f"{stuck} writers still blocked 10 s after being told to stop")
    if early:
        notes.append(f"{early} errors before the crash")
    return job.sample(
        hung=not back or stuck > 0,
        seconds=min(back.values()) - accepted if back else None,
        calls=len(acked) + len(errors),
        failed=len(errors),
        acked=len(acked),
        lost=len(set(acked) - present),
        all_back=max(back.values()) - accepted if len(back) == s.callers else None,
        outage=accepted - crashed,
        error=errors[0] if errors else "",
        note="; ".join(notes),
    )


def _until_running(cluster: Cluster, sql: str, n: int, timeout: float = 15.0) -> None:
    """Until ``n`` sessions run ``sql`` on the server."""
    count = (
        "SELECT count(*) FROM pg_stat_activity"
        f" WHERE state = 'active' AND query = '{sql.replace(chr(39), chr(39) * 2)}'"
    )
    deadline = clock() + timeout
    while int(cluster.execute(count)[0][0]) < n:
        if clock() > deadline:
            raise TimeoutError(f"fewer than {n} sessions running {sql!r} after {timeout:g} s")
        time.sleep(0.02)


async def _close(job: Job, connects_hang: bool) -> RestartSample:
    s, cluster = job.settings, job.cluster
    before = _threads()
    sql = "SELECT 1" if connects_hang else SLEEP_SQL
    outcomes: list[str] = []  # per caller that returned: its error, or ""
    async with _open(job, 0 if connects_hang else None) as session:

        async def caller() -> None:
            try:
                await session.query(sql)
            except Exception as exc:
                outcomes.append(_error(exc))
            else:
                outcomes.append("")

        if connects_hang:
            await asyncio.to_thread(cluster.freeze)
            tasks = [asyncio.create_task(caller()) for _ in range(s.callers)]
            await asyncio.sleep(1.0)
        else:
            tasks = [asyncio.create_task(caller()) for _ in range(s.callers)]
            await asyncio.to_thread(_until_running, cluster, sql, min(s.size, s.callers))
            await asyncio.to_thread(cluster.freeze)
        started = clock()
        closing = asyncio.create_task(session.pool.close())
        await asyncio.wait({closing}, timeout=s.cap)
        took = clock() - started if closing.done() else None
        if took is not None:
            await asyncio.sleep(AFTER_CLOSE)
        blocked = sum(not t.done() for t in tasks)
        threads = _threads() - before
        notes = []
        raised = closing.exception() if closing.done() and not closing.cancelled() else None
        if raised is not None:
            notes.append(f"close() raised {_error(raised)}")
        # clean up: thaw, cut close() off, end every session, let the callers go
        await asyncio.to_thread(cluster.thaw)
        if await _cut_off([closing], 0):
            notes.append(f"close() cut off at {s.cap:g} s")
        await asyncio.to_thread(cluster.end_sessions)
        stuck = await _cut_off(tasks, 10.0)
        if stuck:
            notes.append(f"{stuck} callers still blocked 10 s after the server was thawed")
    await asyncio.sleep(1.0)
    errors = [e for e in outcomes if e]
    return job.sample(
        hung=took is None,
        seconds=took,
        calls=len(outcomes),
        failed=len(errors),
        blocked=blocked,
        threads=threads,
        threads_left=_threads() - before,
        error=errors[0] if errors else "",
        note="; ".join(notes),
    )


async def close_frozen(job: Job) -> RestartSample:
    return await _close(job, connects_hang=False)


async def close_connect_hang(job: Job) -> RestartSample:
    return await _close(job, connects_hang=True)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "restart-burst",
            "pool warm and idle, server restarted (`pg_ctl restart -m fast`), then {callers}"
            " concurrent callers of one `SELECT 1` each",
            restart_burst,
        ),
        Scenario(
            "restart-sequential",
            "the same, the {callers} calls one after another",
            restart_sequential,
        ),
        Scenario(
            "crash-recovery",
            "{callers} writers insert in a loop (a transaction each); `kill -9` of the"
            " postmaster, started again after {outage:g} s",
            crash_recovery,
        ),
        Scenario(
            "close-frozen",
            "{callers} callers of `SELECT pg_sleep(30)` ({size} running), server frozen"
            " (SIGSTOP), then the pool's default `close()`",
            close_frozen,
        ),
        Scenario(
            "close-connect-hang",
            "pool of min_size 0 opened, server frozen, {callers} callers of `SELECT 1` (the"
            " pool's connects hang), then `close()`",
            close_connect_hang,
        ),
    )
}
assert tuple(SCENARIOS) == SCENARIO_NAMES


def child(job: Job, pipe: Any) -> None:
    """A run's process: one message, ("done", sample) or ("error", why). The pools' logs
    (reconnect attempts, discarded connections) are not shown."""
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        sample = asyncio.run(SCENARIOS[job.run.scenario].run(job))
    except BaseException as exc:
        pipe.send(("error", _error(exc)))
    else:
        pipe.send(("done", sample))
    finally:
        with contextlib.suppress(Exception):
            job.cluster.thaw()
