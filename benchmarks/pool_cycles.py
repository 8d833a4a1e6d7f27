"""Pool-only cost, no I/O: acquire+release cycles per second over the fake driver.

The fake driver answers with zero latency and the cycle runs no statement, so what is left is
the pool's own bookkeeping and hand-off. The second table shows how the cost of a cycle grows
with the number of callers queued behind a ``max_size=1`` pool: it must stay flat (a release
serves one waiter; it must not wake them all).

    python benchmarks/pool_cycles.py
"""

from __future__ import annotations

import argparse
import time

import anyio

from poolkit import Pool
from poolkit.fakes import FakeDriver, VirtualClock


async def cycles(pool: Pool, tasks: int, seconds: float) -> tuple[int, float]:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            conn = await pool.acquire()
            await anyio.lowlevel.checkpoint()  # held across a switch: the others queue
            pool.release(conn)
            done += 1

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(worker)
    return done, time.perf_counter() - started


async def main(seconds: float) -> None:
    driver = FakeDriver(backing="script", clock=VirtualClock())
    try:
        print("| callers | max_size | cycles/s | µs per cycle | waited |")
        print("|---|---|---|---|---|")
        for tasks, size in ((1, 1), (10, 10), (10, 1), (1_000, 1), (10_000, 1)):
            async with Pool(driver, min_size=size, max_size=size, timeout=None) as pool:
                n, elapsed = await cycles(pool, tasks, seconds)
                waited = pool.stats().waited / max(1, pool.stats().acquired)
            print(
                f"| {tasks} | {size} | {n / elapsed:,.0f} | {elapsed / n * 1e6:.1f}"
                f" | {waited:.0%} |"
            )
    finally:
        driver.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    anyio.run(main, args.seconds, backend=args.backend)
