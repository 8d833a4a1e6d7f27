"""Many processes at once: K fresh worker processes, each with a poolkit pool of its own,
started and stopped together.

:func:`run_fleet` spawns the processes (multiprocessing ``spawn``: nothing inherited from this
one). Each opens ``poolkit.Pool(psycopg2, dsn, min_size=M, max_size=M)`` in autocommit, which
returns once its M connections are open, and says it is ready. Once every process is, this one
sets a single window opening time on the monotonic clock (system-wide on Linux) and lets them
go: each runs C tasks that repeat one call without a break from the go, through the warm-up
and the window, until this process says stop, and counts what completes inside the window,
with its latency. Meanwhile this process calls ``during(pids, opens, closes)`` (the session
sampler and the CPU readings, taken while the load still runs, so no thread or server session
has gone yet); then it says stop and collects one :class:`ProcessResult` per process, once
each has closed its pool.

As with any ``spawn``, a script that calls :func:`run_fleet` needs the
``if __name__ == "__main__":`` guard (``python -m benchmarks`` has it by being a package's
``__main__``, which spawned processes do not run).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import Any, TypeVar

import anyio

from .contenders import poolkit_query
from .samples import Histogram, histogram

T = TypeVar("T")
#: How long a process may take to open its pool, and to close it after the window.
PATIENCE = 60.0


@dataclass(frozen=True)
class Workload:
    """One call a task repeats: ``sql`` alone in autocommit, or inside ``pool.transaction()``
    (BEGIN, the statement, COMMIT)."""

    name: str
    sql: str
    transaction: bool
    description: str


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("select1", "SELECT 1", False, "`SELECT 1` in autocommit (one round trip)"),
        Workload(
            "txn",
            "SELECT 1",
            True,
            "a 1-row select in a transaction: BEGIN, `SELECT 1`, COMMIT (three round trips)",
        ),
        Workload(
            "sleep1ms",
            "SELECT pg_sleep(0.001)",
            False,
            "`SELECT pg_sleep(0.001)` in autocommit (~1 ms holding a server session)",
        ),
    )
}


@dataclass(frozen=True)
class ProcessPlan:
    """What every process of a fleet does (sent to it, so it must pickle)."""

    dsn: str
    size: int
    tasks: int
    workload: Workload
    seconds: float
    #: set on every connection, so the sampler tells this run's sessions from others'
    application_name: str


@dataclass(frozen=True)
class ProcessResult:
    """One process's window: calls completed, their latencies, and the calls that failed
    (at any time, warm-up included) with the first error."""

    pid: int
    ops: int
    errors: int
    error: str
    hist: Histogram


class FleetError(Exception):
    """A worker process failed, or did not answer in time (message says which and why)."""


def _autocommit(raw: Any) -> None:
    raw.autocommit = True


async def _serve(
    plan: ProcessPlan, index: int, out: Any, go: Event, stop: Event, opens: Any
) -> ProcessResult:
    import psycopg2

    import poolkit

    pool = poolkit.Pool(
        psycopg2,
        plan.dsn,
        connect_kwargs={"application_name": plan.application_name},
        min_size=plan.size,
        max_size=plan.size,
        configure=_autocommit,
    )
    latencies: list[float] = []
    errors, first_error = 0, ""
    sql = plan.workload.sql

    async def call() -> None:
        if plan.workload.transaction:
            async with pool.transaction() as conn:
                await conn.fetchall(sql)
        else:
            await poolkit_query(pool, sql)

    async with pool:
        out.put(("ready", index, os.getpid()))
        if not await anyio.to_thread.run_sync(go.wait, PATIENCE):
            raise FleetError(f"no start signal within {PATIENCE:g} s")
        start = float(opens.value)
        end = start + plan.seconds
        clock = time.monotonic
        running = True

        async def task() -> None:
            nonlocal errors, first_error
            while running:
                t0 = clock()
                try:
                    await call()
                except Exception as exc:
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}".strip()
                    await anyio.sleep(0.01)  # a failing server is not a busy loop
                    continue
                t1 = clock()
                if start <= t1 < end:
                    latencies.append(t1 - t0)

        async with anyio.create_task_group() as tg:
            for _ in range(plan.tasks):
                tg.start_soon(task)
            stopped = await anyio.to_thread.run_sync(stop.wait, end - clock() + PATIENCE)
            running = False
        if not stopped:
            raise FleetError(f"no stop signal within {PATIENCE:g} s of the window's close")
    return ProcessResult(os.getpid(), len(latencies), errors, first_error, histogram(latencies))


def _worker(plan: ProcessPlan, index: int, out: Any, go: Event, stop: Event, opens: Any) -> None:
    """A worker process's entry point: one message with its result, or with its error."""
    try:
        result = anyio.run(_serve, plan, index, out, go, stop, opens)
    except BaseException as exc:
        out.put(("error", index, f"{type(exc).__name__}: {exc}".strip()))
    else:
        out.put(("done", index, result))


def _collect(out: Any, kind: str, processes: list[Any], deadline: float) -> dict[int, Any]:
    """One ``kind`` message from each process, by index; a failure or silence raises."""
    got: dict[int, Any] = {}
    while len(got) < len(processes):
        try:
            what, index, payload = out.get(timeout=0.2)
        except queue.Empty:
            what, index, payload = "", -1, None
        if what == "error":
            raise FleetError(f"process {index}: {payload}")
        if what == kind:
            got[index] = payload
        elif not what:
            gone = [i for i, p in enumerate(processes) if i not in got and p.exitcode is not None]
            if gone:
                raise FleetError(f"process {gone[0]} exited ({processes[gone[0]].exitcode})")
            if time.monotonic() > deadline:
                raise FleetError(f"{len(processes) - len(got)} process(es) silent ({kind})")
    return got


def run_fleet(
    plan: ProcessPlan,
    processes: int,
    warmup: float,
    during: Callable[[list[int], float, float], T],
) -> tuple[list[ProcessResult], T]:
    """Run ``processes`` worker processes on ``plan``; returns their results and what
    ``during(pids, opens, closes)`` returned (it runs here while they measure)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    go, stop = ctx.Event(), ctx.Event()
    opens = ctx.Value("d", 0.0, lock=False)
    workers = [
        ctx.Process(target=_worker, args=(plan, i, out, go, stop, opens), daemon=True)
        for i in range(processes)
    ]
    started: list[Any] = []
    finished = False
    try:
        for p in workers:
            p.start()
            started.append(p)
        ready = _collect(out, "ready", workers, time.monotonic() + PATIENCE)
        opens.value = start = time.monotonic() + warmup
        go.set()
        try:
            seen = during([ready[i] for i in range(processes)], start, start + plan.seconds)
        finally:
            stop.set()
        done = _collect(out, "done", workers, start + plan.seconds + PATIENCE)
        finished = True
    finally:
        for p in started:
            if not finished and p.is_alive():
                p.terminate()
            p.join(PATIENCE if finished else 5.0)
            if p.is_alive():
                p.kill()
                p.join()
        with contextlib.suppress(Exception):
            out.close()
    return [done[i] for i in range(processes)], seen
