"""Pool semantics under load: the size bound seen by the server, fairness, acquire timeouts,
connections coming back after an error.

Time bounds only tell "returned" from "hung"; no check measures speed.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from poolkit.conformance._targets import Target

from ._server import HANG, require, scalar, serves, until, watched
from ._support import rows

pytestmark = pytest.mark.anyio


def waiting(pool: Any) -> int | None:
    """Callers queued for a connection, where the pool under check tells (else None).

    The adapter interface has no such count; poolkit's ``stats()`` and psycopg_pool's
    ``get_stats()`` do.
    """
    native = getattr(pool, "native", None)
    stats = getattr(native, "stats", None)
    if callable(stats):
        return int(stats().waiting)
    get_stats = getattr(native, "get_stats", None)
    if callable(get_stats):
        return int(get_stats().get("requests_waiting", 0))
    return None


async def queued(pool: Any, count: int, what: str) -> None:
    """Until ``count`` callers wait for a connection (a pause where the pool cannot tell)."""
    if waiting(pool) is None:
        await anyio.sleep(0.2)
        return

    async def enough() -> bool:
        return waiting(pool) == count

    await until(enough, what)


async def test_server_never_sees_more_sessions_than_max_size(target: Target, adapter: Any) -> None:
    """Many tasks hammer a pool of 3 while a separate session counts the pool's sessions on
    the server: never more than max_size, and none left once the pool is closed."""
    require(target, "sessions")
    max_size, workers, rounds = 3, 16, 8
    samples: list[int] = []
    held = held_max = acquired = 0
    async with watched(target) as watch:
        async with adapter.pool(
            target, min_size=0, max_size=max_size, timeout=HANG, **watch.connect
        ) as pool:
            assert pool.max_size == max_size
            saturated = anyio.Event()
            release = anyio.Event()
            load_done = anyio.Event()

            async def holder() -> None:
                nonlocal held
                async with pool.connection() as conn:
                    await scalar(conn, 1)
                    held += 1
                    if held == max_size:
                        saturated.set()
                    await release.wait()
                    held -= 1

            async def sampler() -> None:
                while not load_done.is_set():
                    samples.append(await watch.sessions())
                    await anyio.sleep(0.002)

            async def worker(i: int) -> None:
                nonlocal held, held_max, acquired
                for r in range(rounds):
                    async with pool.connection() as conn:
                        held += 1
                        held_max = max(held_max, held)
                        acquired += 1
                        try:
                            await scalar(conn, i * rounds + r)
                            await anyio.sleep(0.003)  # room for the sampler to look
                        finally:
                            held -= 1

            with anyio.fail_after(HANG * 3):
                async with anyio.create_task_group() as tg:
                    for _ in range(max_size):
                        tg.start_soon(holder)
                    await saturated.wait()
                    # every connection handed out: the server has exactly max_size sessions
                    assert await watch.sessions() == max_size
                    tg.start_soon(sampler)
                    async with anyio.create_task_group() as load:
                        for i in range(workers):
                            load.start_soon(worker, i)
                        await queued(pool, workers, "the workers to queue")
                        release.set()
                    load_done.set()
            assert acquired == workers * rounds
            assert held_max <= max_size, f"{held_max} connections held at once"
            assert samples, "the sampler saw nothing"
            assert max(samples) <= max_size, f"the server saw {max(samples)} sessions: {samples}"
        # closed: the server sees none of its sessions (they may take a moment to end there)

        async def none_left() -> bool:
            return await watch.sessions() == 0

        await until(none_left, "the pool's sessions to end after close")


async def test_waiters_are_served_in_arrival_order(target: Target, adapter: Any) -> None:
    """With the only connection held, callers queue one after another; once it comes back
    they get it in the order they arrived."""
    n = 5
    order: list[int] = []
    async with adapter.pool(target, min_size=1, max_size=1, timeout=HANG) as pool:
        holding = anyio.Event()
        release = anyio.Event()

        async def holder() -> None:
            async with pool.connection() as conn:
                await scalar(conn, 1)
                holding.set()
                await release.wait()

        async def waiter(i: int) -> None:
            async with pool.connection() as conn:
                order.append(i)
                await scalar(conn, i)

        with anyio.fail_after(HANG * 2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(holder)
                await holding.wait()
                for i in range(n):
                    tg.start_soon(waiter, i)
                    await queued(pool, i + 1, f"waiter {i} to queue")
                assert order == [], "a waiter got the connection while it was held"
                release.set()
        assert order == list(range(n))


async def test_no_caller_starves(target: Target, adapter: Any) -> None:
    """Six tasks share a pool of two, each asking again as soon as it gave its connection
    back, 30 times: while one waits, the others are served only a bounded number of times
    (a fair queue lets each of the others ahead about once), however long anyone holds on."""
    tasks, rounds = 6, 30
    granted = 0  # connections handed out so far, to anyone
    overtaken: list[int] = []  # per wait: how many others were served meanwhile
    async with adapter.pool(target, min_size=2, max_size=2, timeout=HANG) as pool:

        async def worker(i: int) -> None:
            nonlocal granted
            for _ in range(rounds):
                asked = granted
                async with pool.connection() as conn:
                    overtaken.append(granted - asked)
                    granted += 1
                    await scalar(conn, i)

        with anyio.fail_after(HANG * 3):
            async with anyio.create_task_group() as tg:
                for i in range(tasks):
                    tg.start_soon(worker, i)
    assert granted == tasks * rounds
    # the others ahead in the queue, plus the hand-offs already on their way
    bound = 2 * (tasks - 1)
    assert max(overtaken) <= bound, f"a caller waited while {max(overtaken)} others were served"


@pytest.mark.requires("acquire_timeout")
async def test_acquire_times_out_when_the_pool_is_exhausted(target: Target, adapter: Any) -> None:
    """With every connection held, ``connection(timeout=0.2)`` raises the pool's timeout
    error after waiting; the timed-out request takes nothing, and the pool serves on."""
    async with adapter.pool(target, min_size=1, max_size=1, timeout=HANG) as pool:
        async with pool.connection() as held:
            await scalar(held, 1)
            for _ in range(2):
                start = anyio.current_time()
                with anyio.fail_after(HANG), pytest.raises(pool.timeout_error):
                    async with pool.connection(timeout=0.2):
                        pytest.fail("a second connection from a pool of one")
                # it waited for its timeout instead of failing at once
                assert anyio.current_time() - start >= 0.15
            # the holder's connection is untouched by the timed-out requests
            await scalar(held, 2)
        # the one connection is back for the next caller (not handed to a timed-out one)
        for i in range(3):
            with anyio.fail_after(HANG):
                async with pool.connection(timeout=HANG) as conn:
                    await scalar(conn, 10 + i)


async def test_connection_is_usable_after_an_error(target: Target, adapter: Any) -> None:
    """A connection that saw a driver error (one escaping the block, one handled inside it)
    comes back usable, and the failed work is not committed."""
    d = target.dialect
    with target.table(f"id {d.int_pk}, name {d.text}") as table:
        insert = f"INSERT INTO {table} (id, name) VALUES ({target.q(0)}, {target.q(1)})"
        async with adapter.pool(target, min_size=1, max_size=1, timeout=HANG) as pool:
            with anyio.fail_after(HANG):
                # 1. the error ends the caller's block
                with pytest.raises(target.module.Error):
                    async with pool.connection() as conn:
                        await conn.execute(insert, (1, "doomed"))
                        await conn.execute(f"SELECT nope FROM {table}_missing")
                # 2. the caller handles the error and goes on with the same connection
                async with pool.connection() as conn:
                    await conn.execute(insert, (2, "kept"))
                    await conn.commit()
                    with pytest.raises(target.module.Error):
                        await conn.execute(insert, (2, "duplicate"))
                    await conn.rollback()
                    await scalar(conn, 21)
                # 3. the next caller gets a clean, working connection
                async with pool.connection() as conn:
                    found = await rows(await conn.execute(f"SELECT id, name FROM {table}"))
                    assert found == [(2, "kept")]
                    await conn.rollback()
            await serves(pool, target)
        assert target.run(f"SELECT id, name FROM {table}") == [(2, "kept")]
