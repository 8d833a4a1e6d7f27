"""Side-by-side throughput of poolkit and native async pools on the local PostgreSQL.

A first cut of issue 6's runner: every contender runs each workload at each concurrency N in
one process, in alternating order, after a warm-up, for several rounds; the table reports
the median throughput, p50/p99 latency, client CPU per query and the ratio to poolkit.

    python benchmarks/bench.py --quick          # about a minute
    python benchmarks/bench.py --seconds 3 --rounds 3

All contenders run in autocommit (asyncpg's mode), and asyncpg's pool with a no-op reset (its
default reset costs one round trip per release), as ``../shared/PERF-NOTES.md`` advises.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

DSN = os.environ.get("POOLKIT_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
URL = os.environ.get("POOLKIT_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

WORKLOADS = {
    "select1": "SELECT 1",
    "rows100": "SELECT g, 'row ' || g FROM generate_series(1, 100) g",
    "sleep1ms": "SELECT pg_sleep(0.001)",
}

Query = Callable[[str], Awaitable[Any]]


@dataclass
class Sample:
    queries: int
    seconds: float
    cpu: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.queries / self.seconds


# ----- contenders: each opens for N tasks and yields "run one query" ----------------------


@contextlib.asynccontextmanager
async def poolkit_psycopg2(n: int) -> AsyncIterator[Query]:
    import psycopg2

    import poolkit

    def autocommit(raw: Any) -> None:
        raw.autocommit = True

    async with poolkit.Pool(psycopg2, DSN, min_size=n, max_size=n, configure=autocommit) as pool:

        async def query(sql: str) -> Any:
            async with pool.connection() as conn:
                cur = await conn.execute(sql)
                return await cur.fetchall()

        yield query


@contextlib.asynccontextmanager
async def executor_psycopg2(n: int) -> AsyncIterator[Query]:
    """psycopg2 connections in a queue, calls through ``loop.run_in_executor``."""
    import psycopg2

    conns: asyncio.Queue[Any] = asyncio.Queue()
    for _ in range(n):
        raw = psycopg2.connect(DSN)
        raw.autocommit = True
        conns.put_nowait(raw)
    loop = asyncio.get_running_loop()

    def run(raw: Any, sql: str) -> Any:
        with raw.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    async def query(sql: str) -> Any:
        raw = await conns.get()
        try:
            return await loop.run_in_executor(None, run, raw, sql)
        finally:
            conns.put_nowait(raw)

    try:
        yield query
    finally:
        while not conns.empty():
            conns.get_nowait().close()


@contextlib.asynccontextmanager
async def asyncpg_pool(n: int) -> AsyncIterator[Query]:
    import asyncpg

    async def no_reset(conn: Any) -> None:
        return None

    pool = await asyncpg.create_pool(URL, min_size=n, max_size=n, reset=no_reset)
    try:

        async def query(sql: str) -> Any:
            async with pool.acquire() as conn:
                return await conn.fetch(sql)

        yield query
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def psycopg_pool_async(n: int) -> AsyncIterator[Query]:
    import psycopg_pool

    pool = psycopg_pool.AsyncConnectionPool(
        DSN, min_size=n, max_size=n, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    try:

        async def query(sql: str) -> Any:
            async with pool.connection() as conn:
                cur = await conn.execute(sql)
                return await cur.fetchall()

        yield query
    finally:
        await pool.close()


CONTENDERS: dict[str, Callable[[int], contextlib.AbstractAsyncContextManager[Query]]] = {
    "poolkit+psycopg2": poolkit_psycopg2,
    "psycopg2 run_in_executor": executor_psycopg2,
    "asyncpg Pool (no-op reset)": asyncpg_pool,
    "psycopg_pool (psycopg 3)": psycopg_pool_async,
}


# ----- measuring ----------------------------------------------------------------------------


async def measure(query: Query, sql: str, n: int, seconds: float, warmup: float) -> Sample:
    latencies: list[float] = []
    count = 0
    stop_at = 0.0
    measuring = False

    async def task() -> None:
        nonlocal count
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            await query(sql)
            if measuring:
                latencies.append(time.perf_counter() - t0)
                count += 1

    stop_at = time.perf_counter() + warmup
    await asyncio.gather(*(task() for _ in range(n)))
    measuring = True
    cpu0, t0 = time.process_time(), time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(*(task() for _ in range(n)))
    elapsed = time.perf_counter() - t0
    return Sample(count, elapsed, time.process_time() - cpu0, latencies)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(
    names: list[str], ns: list[int], workloads: list[str], seconds: float, rounds: int
) -> dict[tuple[str, str, int], list[Sample]]:
    results: dict[tuple[str, str, int], list[Sample]] = {}
    for n in ns:
        for workload in workloads:
            for r in range(rounds):
                order = names if r % 2 == 0 else list(reversed(names))  # alternate
                for name in order:
                    async with CONTENDERS[name](n) as query:
                        sample = await measure(query, WORKLOADS[workload], n, seconds, 0.2)
                    results.setdefault((name, workload, n), []).append(sample)
                    print(
                        f"  {workload:9} N={n:<3} round {r + 1}: {name:28} {sample.rate:8.0f} q/s",
                        flush=True,
                    )
    return results


def table(
    results: dict[tuple[str, str, int], list[Sample]],
    names: list[str],
    ns: list[int],
    workloads: list[str],
) -> str:
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    lines = [
        f"Machine: {machine}, {time.strftime('%Y-%m-%d')}. Medians over rounds;"
        " ratio = contender / poolkit+psycopg2.",
        "",
        "| workload | N | contender | q/s (median) | min-max | p50 ms | p99 ms | CPU µs/q"
        " | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workload in workloads:
        for n in ns:
            base = statistics.median(s.rate for s in results[(names[0], workload, n)])
            for name in names:
                samples = results[(name, workload, n)]
                rates = [s.rate for s in samples]
                lat = [x for s in samples for x in s.latencies]
                cpu = sum(s.cpu for s in samples) / max(1, sum(s.queries for s in samples))
                med = statistics.median(rates)
                lines.append(
                    f"| {workload} | {n} | {name} | {med:.0f} | {min(rates):.0f}-{max(rates):.0f}"
                    f" | {percentile(lat, 0.5) * 1e3:.2f} | {percentile(lat, 0.99) * 1e3:.2f}"
                    f" | {cpu * 1e6:.0f} | {med / base:.2f} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.5 s x 1 round; N = 1, 16")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", default="1,4,16,64")
    parser.add_argument("--workload", default=",".join(WORKLOADS))
    args = parser.parse_args()
    ns = [int(x) for x in args.n.split(",")]
    seconds, rounds = args.seconds, args.rounds
    if args.quick:
        ns, seconds, rounds = [1, 16], 0.5, 1
    workloads = args.workload.split(",")
    names = list(CONTENDERS)
    results = asyncio.run(run(names, ns, workloads, seconds, rounds))
    print()
    print(table(results, names, ns, workloads))


if __name__ == "__main__":
    main()
